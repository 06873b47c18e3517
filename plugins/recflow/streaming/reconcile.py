"""Count requests against answers and dead letters: every request record must be accounted for.

Matching is by the request record's (partition, offset), which every answer (``request`` field) and
dead letter (``recflow.source.*`` headers) carries, so even a record with no readable ``request_id``
is matched exactly. A record answered more than once is a duplicate (at-least-once), not an error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.protocol import header_map


@dataclass(frozen=True)
class Reconciliation:
    requests: int
    answered: int
    dead_lettered: int
    duplicates: int
    lost: int
    lost_sample: tuple[tuple[int, int], ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read(kafka: KafkaSettings, topic: str, since_ms: int, until_ms: int | None) -> list[Any]:
    """Every record of ``topic`` from ``since_ms`` to the current end (or ``until_ms``, by timestamp)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **client_config(kafka),
            "group.id": f"recflow-reconcile-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        todo = {tp.partition: ends[tp.partition] for tp in starts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in starts if tp.partition in todo])
        records: list[Any] = []
        idle_since = time.monotonic()
        while todo and time.monotonic() - idle_since < 30:
            batch = consumer.consume(5000, 1.0)
            if batch:
                idle_since = time.monotonic()
            for msg in batch:
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is not None or partition is None or offset is None or partition not in todo:
                    continue
                if offset < todo[partition] and (until_ms is None or msg.timestamp()[1] <= until_ms):
                    records.append(msg)
                if offset + 1 >= todo[partition]:
                    del todo[partition]
        return records
    finally:
        consumer.close()


def reconcile(kafka: KafkaSettings, *, since_ms: int, until_ms: int | None = None) -> Reconciliation:
    """Account for every request record produced between ``since_ms`` and ``until_ms`` (epoch ms).

    Answers and dead letters are read from ``since_ms`` to the end of their topics: call this once the
    scorer has caught up (lag 0), else the tail is reported as lost.
    """
    requests = {(m.partition(), m.offset()) for m in _read(kafka, kafka.score_requests_topic, since_ms, until_ms)}
    answered: Counter[tuple[int, int]] = Counter()
    for msg in _read(kafka, kafka.score_results_topic, since_ms, None):
        try:
            where = json.loads(msg.value() or b"{}").get("request") or {}
            answered[(int(where["partition"]), int(where["offset"]))] += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    dead: Counter[tuple[int, int]] = Counter()
    for msg in _read(kafka, kafka.score_requests_dlq_topic, since_ms, None):
        headers = header_map(msg.headers())
        try:
            dead[(int(headers["recflow.source.partition"]), int(headers["recflow.source.offset"]))] += 1
        except (KeyError, ValueError):
            continue
    accounted = {r for r in requests if r in answered or r in dead}
    lost = sorted(requests - accounted)
    # An invalid but identifiable request has a dead letter AND an error answer: that is one outcome.
    duplicates = sum(max(answered[r], dead[r]) - 1 for r in accounted)
    return Reconciliation(
        requests=len(requests),
        answered=sum(1 for r in requests if r in answered and r not in dead),
        dead_lettered=sum(1 for r in requests if r in dead),
        duplicates=duplicates,
        lost=len(lost),
        lost_sample=tuple(lost[:10]),
    )
