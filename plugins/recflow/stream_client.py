"""Send a burst of score requests to the streaming scorer and measure answers and latency.

Latency is measured end to end on the client: from just before a request is produced to when its
answer is consumed, so it includes Kafka both ways and the micro-batch wait.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recflow.config import KafkaSettings
from recflow.events import encode, kafka_producer, score_request


@dataclass(frozen=True)
class BurstReport:
    """What came back for one burst."""

    sent: int
    answered: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    model_versions: tuple[str, ...]

    @property
    def answered_share(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


def send_burst(
    kafka: KafkaSettings, users: Sequence[str], *, n: int, k: int = 10, timeout_s: float = 60.0, seed: int = 0
) -> BurstReport:
    """Send ``n`` requests for users drawn (seeded) from ``users`` and wait up to ``timeout_s`` for answers."""
    from confluent_kafka import Consumer, KafkaError

    if not users:
        raise ValueError("send_burst needs at least one user id")
    run = uuid.uuid4().hex[:8]
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"recflow-burst-{run}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    _listen_from_end(consumer, kafka.score_results_topic)
    picks = np.random.default_rng(seed).choice(np.asarray(users, dtype=object), size=n)
    producer = kafka_producer(kafka)
    sent_at: dict[str, float] = {}
    for i, user in enumerate(picks):
        request_id = f"{run}-{i}"
        sent_at[request_id] = time.perf_counter()
        message = score_request(request_id=request_id, user_id=str(user), k=k, sent_at_ms=int(time.time() * 1000))
        producer.produce(kafka.score_requests_topic, key=request_id.encode(), value=encode(message))
        producer.poll(0)
    producer.flush(30)
    latencies: dict[str, float] = {}
    errors = 0
    versions: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(latencies) + errors < n and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consuming {kafka.score_results_topic}: {error}")
            answer = json.loads(msg.value() or b"{}")
            request_id = answer.get("request_id")
            if request_id not in sent_at or request_id in latencies:
                continue
            if answer.get("error"):
                errors += 1
                continue
            latencies[request_id] = (time.perf_counter() - sent_at[request_id]) * 1000
            if answer.get("model_version"):
                versions.add(answer["model_version"])
    finally:
        consumer.close()
    values = np.fromiter(latencies.values(), dtype=float)
    return BurstReport(
        sent=n,
        answered=len(latencies),
        errors=errors,
        p50_ms=float(np.percentile(values, 50)) if len(values) else None,
        p99_ms=float(np.percentile(values, 99)) if len(values) else None,
        model_versions=tuple(sorted(versions)),
    )


def _listen_from_end(consumer: Any, topic: str) -> None:
    """Assign every partition of ``topic`` at its current end, before any request is sent.

    Why not subscribe with ``auto.offset.reset=latest``: that offset is resolved lazily, so answers
    arriving before the first fetch would be skipped and counted as lost.
    """
    from confluent_kafka import TopicPartition

    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist: run `recflow services up`")
    assignment = []
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        assignment.append(TopicPartition(topic, p, high))
    consumer.assign(assignment)
