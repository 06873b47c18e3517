"""A forced task failure sends exactly one alert, with its cause and log URL, to the real Kafka broker.

The task fails on both of its tries (one retry): the retry must not alert, the final failure must,
once. The webhook target is checked against a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from confluent_kafka import Consumer

from recflow.config.kafka import client_config
from recflow.config.settings import Settings
from recflow.orchestration.alerts import WEBHOOK_ENV, send_alert
from recflow.streaming.client import listen_from_end

CAUSE = "forced failure for the alert test"


DAG_FILE = """
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from recflow.orchestration.defaults import DEFAULT_ARGS


@dag(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 11, 1, tzinfo=UTC), catchup=False,
     default_args={**DEFAULT_ARGS, "retries": 1, "retry_delay": timedelta(0)})
def failing():
    @task
    def breaks():
        raise RuntimeError(CAUSE + "\\nsecond line, only in the log")

    breaks()


failing()
"""


def _failing_dag(dag_id: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A DAG file with recflow's task defaults and one task that always fails (one retry).

    ``dag.test()`` runs only DAGs of a bundle it can serialize: the file's folder becomes the
    ``dags-folder`` bundle for this test.
    """
    from airflow.dag_processing.dagbag import DagBag

    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
              "kwargs": {"path": str(folder)}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    path = folder / f"{dag_id}.py"
    path.write_text(f"DAG_ID = {dag_id!r}\nCAUSE = {CAUSE!r}\n" + DAG_FILE)
    dag = DagBag(dag_folder=str(path)).get_dag(dag_id)
    assert dag is not None, f"{path} did not load"
    return dag


def _alerts_after(consumer: Consumer, dag_id: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for msg in consumer.consume(num_messages=1000, timeout=timeout_s):
        if msg.error() is None:
            alert = json.loads(msg.value())
            if alert.get("dag_id") == dag_id:
                found.append(alert)
    return found


@pytest.fixture
def alerts_consumer(live_services: Settings) -> Iterator[Consumer]:
    """Reads ``recflow.alerts`` from its current end (what a test sends after this point)."""
    kafka = live_services.kafka
    consumer = Consumer({**client_config(kafka), "group.id": f"it-alerts-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})  # fmt: skip
    listen_from_end(consumer, kafka.alerts_topic)
    yield consumer
    consumer.close()


def test_a_failed_task_sends_exactly_one_alert_with_its_cause(
    alerts_consumer: Consumer, airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag_id = f"it_alert_{uuid.uuid4().hex[:8]}"
    run = _failing_dag(dag_id, tmp_path, monkeypatch).test(logical_date=datetime(2026, 11, 10, tzinfo=UTC))
    assert run.state == "failed"
    alerts = _alerts_after(alerts_consumer, dag_id)
    assert len(alerts) == 1, alerts  # the first try's failure is a retry: no alert
    [alert] = alerts
    assert alert["kind"] == "task_failed" and alert["task_id"] == "breaks" and alert["run_id"] == run.run_id
    assert alert["cause"] == f"RuntimeError: {CAUSE}" and alert["try_number"] == 2
    assert alert["log_url"].endswith(f"/dags/{dag_id}/runs/{quote(run.run_id)}/tasks/breaks?try_number=2")
    assert alert["key"] == f"{dag_id}/{run.run_id}/breaks/-1/2"


def test_the_webhook_target_gets_the_same_document(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/alerts")
        send_alert({"kind": "task_failed", "key": "d/r/t/-1/1", "cause": CAUSE})
    finally:
        server.shutdown()
    assert received == [{"kind": "task_failed", "key": "d/r/t/-1/1", "cause": CAUSE}]
