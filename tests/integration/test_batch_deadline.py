"""The nightly batch's deadline, run by ``dag.test()``: a missed night alerts once on Kafka, a met one never.

The watch (``batch_deadline``) asks Airflow through the Task SDK whether the night's ``batch_scoring``
run succeeded. The successful night is a ``batch_scoring`` run recorded in this session's metadata DB
(what the scheduler leaves after a good night), so no Spark job is needed to replay either case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from recflow.config.kafka import client_config
from recflow.config.settings import Settings
from recflow.orchestration.deadline import BATCH_DAG_ID, nightly_logical_date
from recflow.streaming.client import listen_from_end

ROOT = Path(__file__).resolve().parents[2]


def _watch() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "batch_deadline.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("batch_deadline")


def _record_successful_night(logical: datetime) -> None:
    """A ``batch_scoring`` run of ``logical`` in state success, as the scheduler records one."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with create_session() as session:
        session.add(DagRun(dag_id=BATCH_DAG_ID, run_id=f"scheduled__{logical.isoformat()}-{uuid.uuid4().hex[:6]}",
                           logical_date=logical, run_after=logical + timedelta(days=1), state=DagRunState.SUCCESS,
                           run_type=DagRunType.SCHEDULED, data_interval=(logical, logical + timedelta(days=1)),
                           triggered_by=DagRunTriggeredByType.TIMETABLE))  # fmt: skip


@pytest.fixture
def alerts(live_services: Settings) -> Iterator[Consumer]:
    """``recflow.alerts`` from its current end."""
    kafka = live_services.kafka
    consumer = Consumer({**client_config(kafka), "group.id": f"it-deadline-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})  # fmt: skip
    listen_from_end(consumer, kafka.alerts_topic)
    yield consumer
    consumer.close()


def _deadline_alerts(consumer: Consumer, night: datetime, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    key = f"{BATCH_DAG_ID}/{night.isoformat()}/deadline"
    found = []
    for msg in consumer.consume(num_messages=1000, timeout=timeout_s):
        value = msg.value()
        if msg.error() is None and value is not None and json.loads(value).get("key") == key:
            found.append(json.loads(value))
    return found


def _xcom(run: Any) -> dict[str, Any]:
    [ti] = run.get_task_instances()
    assert str(ti.state) == "success", ti.state
    value = ti.xcom_pull(task_ids="check_batch_deadline")
    assert isinstance(value, dict), value
    return value


def test_a_missed_night_sends_one_deadline_alert(alerts: Consumer, airflow_db: None) -> None:
    # a night no other test records, after the DAG's start_date (no task instance exists before it)
    deadline = datetime(2027, 3, 13, 7, tzinfo=UTC)
    run = _watch().test(logical_date=deadline)
    assert run.state == "success"  # the watch did its job: the alert is the outcome, not a failed task
    night = nightly_logical_date(deadline)
    [alert] = _deadline_alerts(alerts, night)
    assert alert["kind"] == "deadline_missed" and alert["state"] == "missing"
    assert alert["deadline"] == deadline.isoformat() and alert["watch_run_id"] == run.run_id
    assert _xcom(run) == {"met": False, "logical_date": night.isoformat(), "state": "missing"}


def test_a_night_that_succeeded_sends_none(alerts: Consumer, airflow_db: None) -> None:
    deadline = datetime(2027, 3, 14, 7, tzinfo=UTC)
    night = nightly_logical_date(deadline)
    _record_successful_night(night)
    run = _watch().test(logical_date=deadline)
    assert run.state == "success"
    assert _xcom(run) == {"met": True, "logical_date": night.isoformat()}
    assert _deadline_alerts(alerts, night, timeout_s=5.0) == []
