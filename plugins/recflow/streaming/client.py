"""Callers' side of the scorer: send requests at a steady rate or in a burst and match the answers.

Latency is measured on the client from just before a request is produced to when its answer is
consumed (the scorer's work, Kafka both ways and any queueing). Answers are matched on the Kafka key,
which the scorer echoes (every request here is keyed by its ``request_id``); a second answer for the
same request is counted as a duplicate, never as a new answer (at-least-once delivery).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.events import encode, kafka_producer

#: librdkafka logs (e.g. "connection refused" during a broker outage) go to Python logging, not stderr.
_LIBRDKAFKA = logging.getLogger("recflow.streaming.client.librdkafka")


@dataclass
class Answer:
    """One answer as received; parsed on first use, so the listener keeps up at tens of thousands/s."""

    received: float
    raw: bytes
    _doc: dict[str, Any] | None = None

    @property
    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            parsed = json.loads(self.raw or b"{}")
            self._doc = parsed if isinstance(parsed, dict) else {}
        return self._doc


@dataclass
class LoadReport:
    """What came back for one run."""

    sent: int
    #: requests whose first answer carries items (errors are counted apart, never as answered)
    answered: int
    errors: int
    duplicates: int
    lost: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    sustained_rps: float
    offered_rps: float | None
    model_versions: tuple[str, ...]
    sources: dict[str, int] = field(default_factory=dict)

    @property
    def answered_share(self) -> float:
        return self.answered / self.sent if self.sent else 0.0


def listen_from_end(consumer: Any, topic: str) -> None:
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


class AnswerListener:
    """Collects answers from the results topic on a background thread, keyed by the request's key.

    Answers are kept as ``(received, raw)`` tuples in plain dicts, which the garbage collector stops
    tracking: one object per answer (a dataclass, a list) made every oldest-generation collection walk
    them all, and at 300,000 answers those pauses (100-480 ms, measured) were counted as latency.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        from confluent_kafka import Consumer

        self.kafka = kafka
        self._first: dict[bytes, tuple[float, bytes]] = {}
        self._more: dict[bytes, list[tuple[float, bytes]]] = {}
        self._consumer = Consumer(
            {
                **client_config(kafka),
                "group.id": f"recflow-client-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "socket.nagle.disable": True,  # a latency-sensitive caller, like the scorer's own clients
                "logger": _LIBRDKAFKA,
            }
        )
        listen_from_end(self._consumer, kafka.score_results_topic)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="recflow-answer-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll-then-drain: consume(n, timeout) would wait the whole timeout for n messages, and that
            # wait would be counted as the scorer's latency
            first = self._consumer.poll(0.05)
            if first is None:
                continue
            batch = [first, *self._consumer.consume(1000, 0)]
            received = time.perf_counter()  # one clock read per batch: they were all consumed just now
            with self._lock:
                for msg in batch:
                    key = msg.key()
                    if msg.error() is not None or key is None:
                        continue
                    answer = (received, msg.value() or b"")
                    if key in self._first:
                        self._more.setdefault(key, []).append(answer)
                    else:
                        self._first[key] = answer

    def answers(self, key: bytes) -> list[Answer]:
        """Every answer received for ``key``, first first (empty when none came)."""
        with self._lock:
            first = self._first.get(key)
            more = list(self._more.get(key, ()))
        return [] if first is None else [Answer(*first), *(Answer(*a) for a in more)]

    def count(self, keys: Sequence[bytes] | set[bytes]) -> int:
        with self._lock:
            return sum(1 for k in keys if k in self._first)

    def wait_for(self, keys: set[bytes], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count(keys) >= len(keys):
                return True
            time.sleep(0.05)
        return self.count(keys) >= len(keys)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def warm_producer(kafka: KafkaSettings, user: str, run: str) -> Any:
    """A producer that has connected and acquired its idempotent-producer id.

    Why: a new producer holds its first records for ~0.5 s while it fetches metadata and its producer
    id; a caller keeps its producer, so that start-up is not the scorer's latency. The warm-up is a real
    request (``<run>-warmup``), answered like any other.
    """
    producer = kafka_producer(kafka, **{"message.timeout.ms": 0, "socket.nagle.disable": True, "logger": _LIBRDKAFKA})
    body = {"request_id": f"{run}-warmup", "user_id": user, "k": 1, "sent_at_ms": int(time.time() * 1000)}
    producer.produce(kafka.score_requests_topic, key=f"{run}-warmup".encode(), value=encode(body))
    producer.flush(60)
    return producer


def send_requests(
    kafka: KafkaSettings,
    users: Sequence[str],
    *,
    n: int,
    rate: float | None = None,
    k: int = 10,
    seed: int = 0,
    run: str | None = None,
    producer: Any = None,
) -> dict[bytes, float]:
    """Produce ``n`` keyed requests, ``rate`` per second (None: as fast as possible); returns send times.

    The payloads are built before the clock starts, as a caller holds its request before sending it:
    the loop only produces, so at tens of thousands of requests a second the sender is not what limits
    the rate. The request's own timestamp is its Kafka record timestamp (``timing.record_timestamp_ms``
    in the answer), stamped by the producer when ``produce`` is called.
    """
    if not users:
        raise ValueError("send_requests needs at least one user id")
    run = run or uuid.uuid4().hex[:8]
    picks = np.random.default_rng(seed).choice(np.asarray(users, dtype=object), size=n)
    keys = [f"{run}-{i}".encode() for i in range(n)]
    values = [encode({"request_id": f"{run}-{i}", "user_id": str(user), "k": k}) for i, user in enumerate(picks)]
    if producer is None:
        producer = warm_producer(kafka, users[0], run)
    produce, topic, clock = producer.produce, kafka.score_requests_topic, time.perf_counter
    sent: dict[bytes, float] = {}
    began = clock()
    for i in range(n):
        if rate is not None:
            wait = began + i / rate - clock()
            if wait > 0.0005:
                time.sleep(wait)
        key = keys[i]
        sent[key] = clock()
        while True:
            try:
                produce(topic, values[i], key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 256 == 0:
            producer.poll(0)  # serves librdkafka's events; there are no delivery callbacks to run
    producer.flush(60)
    return sent


def report(
    sent: dict[bytes, float],
    listener: AnswerListener,
    *,
    offered_rps: float | None = None,
    window: tuple[float, float] | None = None,
) -> LoadReport:
    """Match answers to what was sent: first answer per request, duplicates counted, errors apart."""
    latencies: list[float] = []
    errors = duplicates = 0
    versions: set[str] = set()
    sources: dict[str, int] = {}
    received: list[float] = []
    got = {key: listener.answers(key) for key in sent}
    for key, answers in got.items():
        if not answers:
            continue
        duplicates += len(answers) - 1
        first = answers[0]
        source = str(first.doc.get("source"))
        sources[source] = sources.get(source, 0) + 1
        if first.doc.get("error"):
            errors += 1
            continue
        latencies.append((first.received - sent[key]) * 1000)
        received.append(first.received)
        if first.doc.get("model_version"):
            versions.add(str(first.doc["model_version"]))
    values = np.asarray(latencies, dtype=float)
    answered = len(latencies)
    span = (max(received) - min(sent.values())) if received else 0.0
    return LoadReport(
        sent=len(sent),
        answered=answered,
        errors=errors,
        duplicates=duplicates,
        lost=len(sent) - answered - errors,
        p50_ms=float(np.percentile(values, 50)) if len(values) else None,
        p99_ms=float(np.percentile(values, 99)) if len(values) else None,
        max_ms=float(values.max()) if len(values) else None,
        sustained_rps=(len(received) / span) if span > 0 else 0.0,
        offered_rps=offered_rps,
        model_versions=tuple(sorted(versions)),
        sources=sources,
    )


def send_burst(
    kafka: KafkaSettings, users: Sequence[str], *, n: int, k: int = 10, timeout_s: float = 60.0, seed: int = 0
) -> LoadReport:
    """Send ``n`` requests at once and wait up to ``timeout_s`` for their answers."""
    listener = AnswerListener(kafka)
    try:
        sent = send_requests(kafka, users, n=n, k=k, seed=seed)
        listener.wait_for(set(sent), timeout_s)
        return report(sent, listener)
    finally:
        listener.close()
