"""Tell someone when a night fails: one alert per failed task.

Why: recflow promotes and scores unattended; without an alert, a failed night is found by whoever
notices stale recommendations. Each alert is one JSON document with the DAG, the task, the run, the
cause in one line and the task's log URL (``docs/runbook.md`` says what each kind means and what to do).

Where it goes: the Kafka topic ``recflow.alerts`` (:attr:`recflow.config.kafka.KafkaSettings.alerts_topic`)
through the ``kafka_default`` Connection, so it works wherever the pipeline's events do; or, when
``RECFLOW_ALERT_WEBHOOK`` is set, an HTTP POST of the same JSON to that URL (Slack/Teams/Alertmanager
bridges take it).

Exactly once per failed task: :data:`ON_FAILURE` is the tasks' ``on_failure_callback``, which Airflow
runs when a task *finally* fails (a retry runs ``on_retry_callback`` instead), and the Kafka producer is
idempotent and waits for the broker's acknowledgement, so a send is neither lost silently (a failed
delivery raises, and Airflow logs the callback's error) nor duplicated by the client's own retries. The
alert's ``key`` (DAG/run/task/map index/try) lets a consumer drop a duplicate a re-run callback sends.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from recflow.config.kafka import client_config
from recflow.orchestration.connections import kafka_settings

log = logging.getLogger(__name__)

WEBHOOK_ENV = "RECFLOW_ALERT_WEBHOOK"
#: An alert's cause is one line of at most this many characters (the log has the rest).
MAX_CAUSE_CHARS = 300


def one_line(exc: BaseException | str | None) -> str:
    """``Type: first line of the message``, cut to :data:`MAX_CAUSE_CHARS` (``unknown`` without one)."""
    if exc is None:
        return "unknown (no exception in the context: killed, timed out or failed outside the task)"
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), text.strip())
    return first if len(first) <= MAX_CAUSE_CHARS else first[: MAX_CAUSE_CHARS - 3] + "..."


def task_failure_alert(context: Mapping[str, Any]) -> dict[str, Any]:
    """The alert for a failed task, from its Airflow context."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else int(map_index)
    try_number = int(getattr(ti, "try_number", 0) or 0)
    return {
        "kind": "task_failed",
        "key": f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{map_index}/{try_number}",
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": map_index,
        "try_number": try_number,
        "cause": one_line(context.get("exception")),
        "log_url": ti.log_url,
        "at": datetime.now(UTC).isoformat(),
    }


def send_alert(alert: Mapping[str, Any]) -> None:
    """Deliver ``alert`` to the webhook (``RECFLOW_ALERT_WEBHOOK``) or the Kafka alerts topic; raise if it fails."""
    body = json.dumps(alert, sort_keys=True).encode()
    webhook = os.environ.get(WEBHOOK_ENV)
    if webhook:
        request = urllib.request.Request(
            webhook, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"alert webhook answered HTTP {resp.status}")
        return
    _produce(body, str(alert.get("key", "")))


def _produce(body: bytes, key: str) -> None:
    from confluent_kafka import KafkaException, Producer

    kafka = kafka_settings()
    producer = Producer({**client_config(kafka), "enable.idempotence": True, "acks": "all"})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer.produce(kafka.alerts_topic, value=body, key=key.encode(), on_delivery=delivered)
    left = producer.flush(15)
    if left or errors:
        raise KafkaException(f"alert not delivered to {kafka.alerts_topic}: {errors or f'{left} still queued'}")


class FailureAlert(BaseNotifier):
    """``on_failure_callback`` of every recflow task: one alert per failed task (module docstring)."""

    def notify(self, context: Any) -> None:
        alert = task_failure_alert(context)
        send_alert(alert)
        log.info("alert sent: %s", alert["key"])


#: The callback every recflow task gets through ``DEFAULT_ARGS``.
ON_FAILURE = FailureAlert()
