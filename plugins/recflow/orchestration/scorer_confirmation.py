"""``batch_scoring.confirm_streaming_scorer``: a probe through Kafka, then a deferrable wait for its answer.

Why the Kafka provider's ``AwaitMessageTrigger``: waiting for the scorer (it may still be loading the
new champion) used to hold a worker slot for up to five minutes in a polling loop. Here the task sends
one probe request with the provider's producer hook and defers to the trigger on the results topic
(what the provider's ``AwaitMessageSensor`` does, after the probe): the triggerer waits, no worker slot
is held. The provider's modules import confluent-kafka, so they are imported when the task runs, never
when the DAG is parsed (``tests/dags/test_dag_integrity.py``). The trigger consumes on the ``recflow_kafka_probe``
Connection (``kafka_default``'s address and security with a group of its own,
:data:`recflow.config.kafka.PROBE_CONSUMER`), which this task first commits to the end of the results
topic, so the trigger reads from the probe on and never scans old answers (``batch_scoring`` runs one at
a time, so no two probes share the group).

An answer from the previous champion (the scorer had not swapped yet) fails the try; the retry sends a
new probe. Skipped when no scorer is deployed and for a pinned ``version``, as before.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from recflow.config.kafka import PROBE_CONN_ID, PROBE_CONSUMER, client_config
from recflow.orchestration.connections import KAFKA_CONN_ID, kafka_settings, s3_settings

log = logging.getLogger(__name__)


def probe_answer(message: Any, *, request_id: str, version: str) -> dict[str, Any] | None:
    """The trigger's apply function: the probe's answer as a small event, None for any other message."""
    if message.key() != request_id.encode():
        return None
    answer: dict[str, Any] = json.loads(message.value() or b"{}")
    return {
        "request_id": request_id,
        "wanted": version,
        "model_version": answer.get("model_version"),
        "error": answer.get("error"),
        "timing": answer.get("timing"),
    }


def start_group_at_end(kafka: Any, topic: str, group: dict[str, str], *, timeout_s: float = 60.0) -> None:
    """Commit ``group`` at the end of ``topic``, so a trigger consuming as that group reads only what follows.

    A trigger of an earlier try that was not cleaned up stays a member until its session times out (45 s);
    meanwhile the broker refuses the commit (``UNKNOWN_MEMBER_ID``, ``REBALANCE_IN_PROGRESS``): retried.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(client_config(kafka, {**group, "enable.auto.commit": False}))
    deadline = time.monotonic() + timeout_s
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in partitions]  # fmt: skip
        while True:
            try:
                consumer.commit(offsets=ends, asynchronous=False)
                return
            except KafkaException as exc:
                code = exc.args[0].code() if exc.args else None
                waiting = code in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS)
                if not waiting or time.monotonic() > deadline:
                    raise
                log.info("group %s still has a member (%s); retrying the commit", group["group.id"], exc)
                time.sleep(2)
    finally:
        consumer.close()


class ConfirmStreamingScorer(BaseOperator):
    """Send a probe request, then defer until the scorer answers it from the champion (``timeout_s``)."""

    def __init__(self, *, timeout_s: float = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_s = timeout_s

    def execute(self, context: Any) -> Any:
        from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook
        from airflow.providers.apache.kafka.triggers.await_message import AwaitMessageTrigger

        from recflow.registry import ModelRegistry, resolve_serving_version  # deferred: pulls in botocore
        from recflow.streaming.probe import PROBE_USER, scorer_members  # deferred: pulls in pandas and pyarrow

        params = context["params"]
        if params.get("version"):
            raise AirflowSkipException(
                f"scored with the pinned version {params['version']}; the scorer serves the champion"
            )
        kafka = kafka_settings()
        if scorer_members(kafka) == 0:
            raise AirflowSkipException("no streaming scorer is running (consumer group recflow-scorer is empty)")
        version = resolve_serving_version(ModelRegistry.from_settings(s3_settings("scorer"))).version
        start_group_at_end(kafka, kafka.score_results_topic, PROBE_CONSUMER)
        request_id = f"airflow-probe-{uuid.uuid4().hex[:12]}"
        producer = KafkaProducerHook(kafka_config_id=KAFKA_CONN_ID).get_producer()
        probe = {"request_id": request_id, "user_id": PROBE_USER, "k": 1}
        producer.produce(kafka.score_requests_topic, key=request_id.encode(), value=json.dumps(probe).encode())
        if producer.flush(30):
            raise AirflowException(f"the probe {request_id} was not acknowledged by Kafka in 30 s")
        log.info("probe %s sent; waiting (deferred) for an answer from %s", request_id, version)
        trigger = AwaitMessageTrigger(
            topics=[kafka.score_results_topic],
            apply_function=f"{__name__}.probe_answer",
            apply_function_kwargs={"request_id": request_id, "version": version},
            kafka_config_id=PROBE_CONN_ID,
            poll_timeout=1,
            poll_interval=0,  # the trigger sleeps this long after every other message: the topic is busy
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout_s))

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        if not isinstance(event, dict) or event.get("error") or event.get("model_version") != event.get("wanted"):
            raise AirflowException(
                f"the scorer answered the probe {event}: not from the champion yet (a retry probes again)"
            )
        log.info("the streaming scorer serves %s: %s", event["wanted"], event)
        return {"version": event["wanted"], "request_id": event["request_id"], "timing": event.get("timing")}
