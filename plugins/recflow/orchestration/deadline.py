"""The nightly batch's deadline: an alert when the night's ``batch_scoring`` run has not succeeded in time.

Why a watch of its own and not Airflow's ``DeadlineAlert``: in Airflow 3.3.2, ``dag.test()`` (and so
``airflow dags test``) runs the loop on a DAG it serialized in memory
(``DagSerialization.deserialize_dag(DagSerialization.serialize_dag(self))`` in
``airflow/sdk/definitions/dag.py``), whose ``deadline`` is still the list of *encoded alert dicts*; only
``SerializedDagModel.write_dag`` replaces them by the UUIDs of ``deadline_alert`` rows, and only in the
copy it stores. When the run succeeds, ``DagRun.update_state`` (``airflow/models/dagrun.py``, "If there
were any Deadlines for it which were not breached, they are no longer needed") calls
``DeadlineAlertModel.get_by_id(alert_id)`` for each of them, and ``get_by_id`` is handed a dict. Every
reference and callback form takes that path, so no ``DeadlineAlert`` survives a successful
``airflow dags test`` of the DAG that carries it; the real scheduler reads the stored copy and is fine.

This watch works the same under both: ``batch_deadline`` runs at the deadline (the batch's cron time plus
:data:`BATCH_DEADLINE`) and asks Airflow (``get_dr_count`` through the Task SDK, no database access)
whether the night's scheduled ``batch_scoring`` run succeeded. If not, it sends one ``deadline_missed``
alert to the same target as the failure alerts (:func:`recflow.orchestration.alerts.send_alert`: Kafka
``recflow.alerts`` or the webhook). The alert's ``key`` names the night, so a consumer drops the
duplicate a retried watch may send.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.orchestration.alerts import send_alert
from recflow.orchestration.context import interval_end

log = logging.getLogger(__name__)

BATCH_DAG_ID = "batch_scoring"
#: The nightly batch's trigger time (UTC): its scheduled run covers the day that ends then.
BATCH_HOUR = 4
BATCH_CRON = f"0 {BATCH_HOUR} * * *"
#: How long after its trigger time the night's scores must be published.
BATCH_DEADLINE = timedelta(hours=3)
#: The watch runs at the deadline.
WATCH_CRON = f"0 {BATCH_HOUR + int(BATCH_DEADLINE.total_seconds() // 3600)} * * *"
#: The batch's data interval (``defaults.daily``): its scheduled run's logical date is the interval's start.
BATCH_INTERVAL = timedelta(days=1)
#: States a late night's run may be in, named in the alert.
OPEN_STATES = ("queued", "running", "failed")


def nightly_logical_date(deadline: datetime) -> datetime:
    """The logical date of the scheduled ``batch_scoring`` run whose deadline is ``deadline``.

    The night's run triggers at ``deadline - BATCH_DEADLINE`` and covers the day before it; Airflow names
    a run by its data interval's start.
    """
    return deadline - BATCH_DEADLINE - BATCH_INTERVAL


def deadline_alert(*, logical_date: datetime, deadline: datetime, state: str, run_id: str) -> dict[str, Any]:
    """The ``deadline_missed`` alert for the night of ``logical_date`` (``state``: what the run is now)."""
    return {
        "kind": "deadline_missed",
        "key": f"{BATCH_DAG_ID}/{logical_date.isoformat()}/deadline",
        "dag_id": BATCH_DAG_ID,
        "logical_date": logical_date.isoformat(),
        "deadline": deadline.isoformat(),
        "state": state,
        "cause": f"{BATCH_DAG_ID} for {logical_date.date()} had not succeeded by {deadline.isoformat()} ({state})",
        "watch_run_id": run_id,
        "at": datetime.now(UTC).isoformat(),
    }


@task
def check_batch_deadline() -> dict[str, Any]:
    """Alert once when the night's ``batch_scoring`` run has not succeeded by this watch run's interval end."""
    context = get_current_context()
    ti = context["ti"]
    deadline = interval_end(context)
    logical = nightly_logical_date(deadline)
    if ti.get_dr_count(dag_id=BATCH_DAG_ID, logical_dates=[logical], states=["success"]):
        log.info("%s for %s succeeded before its deadline %s", BATCH_DAG_ID, logical.isoformat(), deadline)
        return {"met": True, "logical_date": logical.isoformat()}
    found = [s for s in OPEN_STATES if ti.get_dr_count(dag_id=BATCH_DAG_ID, logical_dates=[logical], states=[s])]
    state = found[0] if found else "missing"
    alert = deadline_alert(logical_date=logical, deadline=deadline, state=state, run_id=ti.run_id)
    send_alert(alert)
    log.warning("deadline missed, alert sent: %s", alert["cause"])
    return {"met": False, "logical_date": logical.isoformat(), "state": state}
