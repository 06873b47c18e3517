"""Check, after a promotion, that the streaming scorer serves the new champion: ask it, through Kafka.

Why a probe request and not the status file: the scorer may run on other hosts; an answer says which
version produced it, end to end through the same topics callers use. A scorer group with no members
means no scorer is deployed (the demo, a test run): the caller decides whether that is an error.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.client import listen_from_end
from recflow.streaming.engine import DEFAULT_GROUP
from recflow.streaming.events import encode, kafka_producer

PROBE_USER = "recflow-probe"


class ScorerNotServing(RuntimeError):
    """The scorer did not answer with the expected version in time."""


def scorer_members(kafka: KafkaSettings, group: str = DEFAULT_GROUP, timeout_s: float = 10.0) -> int:
    """How many processes are in the scorer's consumer group (0: no scorer is running).

    A broker that has just started (or moved the group's coordinator) answers ``NOT_COORDINATOR`` or
    ``COORDINATOR_LOAD_IN_PROGRESS`` for a while: those retriable errors are retried with backoff until
    ``timeout_s``; anything else, or still failing then, is raised.
    """
    from confluent_kafka import ConsumerGroupState, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(kafka))
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout_s)
            break
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not _coordinator_not_ready(error) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    if description.state in (ConsumerGroupState.DEAD, ConsumerGroupState.EMPTY):
        return 0
    return len(description.members)


def _coordinator_not_ready(error: object) -> bool:
    """Whether a group request failed only because the group's coordinator is not ready yet."""
    from confluent_kafka import KafkaError

    if not isinstance(error, KafkaError):
        return False
    waiting = (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    )
    return error.code() in waiting or error.retriable()


def probe_version(
    kafka: KafkaSettings, version: str, *, timeout_s: float = 120.0, interval_s: float = 2.0
) -> dict[str, Any]:
    """Send probe requests until an answer comes from ``version``; returns that answer.

    Answers from the previous version while the scorer is still loading are expected and retried.
    """
    from confluent_kafka import Consumer

    consumer = Consumer(client_config(kafka, {"group.id": f"recflow-probe-{uuid.uuid4().hex[:8]}"}))
    listen_from_end(consumer, kafka.score_results_topic)
    producer = kafka_producer(kafka)
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    try:
        while time.monotonic() < deadline:
            request_id = f"probe-{uuid.uuid4().hex[:12]}"
            body = {"request_id": request_id, "user_id": PROBE_USER, "k": 1, "sent_at_ms": int(time.time() * 1000)}
            producer.produce(kafka.score_requests_topic, key=request_id.encode(), value=encode(body))
            producer.flush(10)
            wait_until = time.monotonic() + interval_s
            while time.monotonic() < wait_until:
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None or msg.key() != request_id.encode():
                    continue
                answer: dict[str, Any] = json.loads(msg.value() or b"{}")
                if answer.get("model_version") == version and not answer.get("error"):
                    return answer
                seen.append(str(answer.get("model_version")))
    finally:
        consumer.close()
    raise ScorerNotServing(
        f"the scorer did not answer from {version} within {timeout_s:.0f} s (answers came from {seen[-3:]})"
    )
