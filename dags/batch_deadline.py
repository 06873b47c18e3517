"""
### Batch deadline

The nightly `batch_scoring` run must have published its scores three hours after it triggers. At that
deadline this DAG asks Airflow whether the night's run succeeded and, if not, sends one
`deadline_missed` alert to the alert target (Kafka `recflow.alerts`, or `RECFLOW_ALERT_WEBHOOK`).
`docs/runbook.md` says what to do about it. Why a DAG and not Airflow's `DeadlineAlert`:
`recflow.orchestration.deadline`.

CLI: `airflow dags test batch_deadline 2026-11-10T07:00:00+00:00` checks the night of 2026-11-09.
"""

from __future__ import annotations

from airflow.sdk import dag

from recflow.orchestration.deadline import WATCH_CRON, check_batch_deadline
from recflow.orchestration.defaults import DEFAULT_ARGS, START_DATE, daily


@dag(
    dag_id="batch_deadline",
    schedule=daily(WATCH_CRON),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recflow", "scoring"],
    doc_md=__doc__,
)
def batch_deadline() -> None:
    check_batch_deadline()


batch_deadline()
