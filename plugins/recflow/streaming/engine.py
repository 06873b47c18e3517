"""The serving loop: consume a poll's batch, score it in one call, produce answers, commit when delivered.

Delivery guarantee: **at-least-once, with ``request_id`` idempotency on the caller's side.** Input offsets
are committed only after the broker acknowledged every answer and dead letter of the records below them
(delivery callbacks, never a bare ``flush``); a crash replays the uncommitted tail, so an answer may come
twice and callers keep the first per ``request_id`` (or per key). Nothing is lost: the producer never
times a message out (``message.timeout.ms=0``), a failed delivery is retried and, if it keeps failing,
stops the process before its offsets are committed.

Why poll-then-drain: ``consume(num_messages, timeout)`` waits the whole timeout unless the batch fills,
which would add the timeout to every request at low rates. The loop blocks in ``poll`` for the first
record, then takes what has already arrived with ``consume(max_batch - 1, 0)``: one record alone is
answered at once, and under load each batch grows to whatever queued meanwhile.

Why ``gc.freeze()`` at start and after a swap: the libraries, the clients and the model are some 10^5
objects that live as long as the process; every collection of the oldest generation walked all of them
and paused the loop 20-100 ms at 1k req/s (measured). Frozen, collections only see per-batch objects.
(Objects of a replaced model are still freed by reference counting; only cyclic garbage among them
would stay, and models are not cyclic.)

Broker outages of any length: librdkafka reconnects on its own; the loop only keeps polling, answers
wait in the producer queue, commits that fail are superseded by the next one (they are cumulative).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from recflow.config.kafka import KafkaSettings
from recflow.streaming.answers import score_requests
from recflow.streaming.follower import ChampionFollower, ServingModel
from recflow.streaming.metrics import ScorerMetrics
from recflow.streaming.protocol import (
    Headers,
    Reason,
    Rejection,
    Request,
    dlq_headers,
    encode_answer,
    encode_error_answer,
    parse_request,
)

log = logging.getLogger(__name__)

DEFAULT_GROUP = "recflow-scorer"


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the loop; the defaults favour latency at low rates and batch naturally under load."""

    group_id: str = DEFAULT_GROUP
    max_batch: int = 5000
    idle_poll_s: float = 0.1
    linger_ms: float = 1.0
    commit_interval_s: float = 0.05
    status_interval_s: float = 1.0
    max_queued: int = 200_000
    delivery_attempts: int = 5
    extra_consumer: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class _Batch:
    """Offsets a batch will let us commit once all of its ``pending`` deliveries are confirmed.

    ``on_delivery`` is the one delivery callback every answer of the batch shares. Why not one
    ``partial`` per message: under load the producer queue holds hundreds of thousands of answers, and
    a Python object per queued answer survived into the oldest GC generation, whose collections then
    paused the loop for 70-270 ms each (measured at 20k req/s).
    """

    offsets: dict[int, int]
    pending: int = 0
    on_delivery: Callable[[Any, Any], None] | None = None


class DeliveryFailed(RuntimeError):
    """An answer or dead letter could not be delivered after every attempt; offsets stay uncommitted."""


class Scorer:
    """One consumer-group member: ``run`` until ``stop`` is set (SIGTERM sets it)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        follower: ChampionFollower,
        metrics: ScorerMetrics,
        *,
        config: EngineConfig | None = None,
        status_path: Path | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.kafka = kafka
        self.follower = follower
        self.metrics = metrics
        self.config = config or EngineConfig()
        self.status_path = status_path
        self.clock_ms = clock_ms
        self.started_at = time.time()
        self.lag: int | None = None
        #: The serving loop's longest pause for a swap (the hand-over itself; loading is elsewhere).
        self.max_swap_pause_ms = 0.0
        self.assigned: list[int] = []
        self.counts = {"requests": 0, "answers": 0, "dlq": 0, "swaps": 0}
        self._in_flight: deque[_Batch] = deque()
        self._retry: list[tuple[_Batch, str, bytes | None, bytes | None, Headers | None, int]] = []
        self._fatal: str | None = None
        self._last_commit = 0.0
        self._last_status = 0.0
        self._done: dict[int, int] = {}
        self.consumer: Any = None
        self.producer: Any = None

    # ------------------------------------------------------------------ clients
    def _clients(self) -> None:
        from confluent_kafka import Consumer, Producer

        from recflow.config.kafka import client_config as kafka_client_config

        librdkafka_log = logging.getLogger("recflow.streaming.librdkafka")
        self.producer = Producer(
            {
                **kafka_client_config(self.kafka),
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": self.config.linger_ms,
                "message.timeout.ms": 0,  # never give up on an answer: outages of any length
                "message.max.bytes": 4 << 20,  # a dead letter carries the caller's value (<= 1 MiB) and headers
                "queue.buffering.max.messages": self.config.max_queued + 10_000,
                "logger": librdkafka_log,
            }
        )
        self.consumer = Consumer(
            {
                **kafka_client_config(self.kafka),
                "group.id": self.config.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                "statistics.interval.ms": 2000,
                "stats_cb": self._on_stats,
                "error_cb": lambda err: log.warning("kafka: %s", err),
                "on_commit": self._on_commit,
                "logger": librdkafka_log,
                **self.config.extra_consumer,
            }
        )

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        """Start a brand-new group at the end of the topic, and commit that start at once.

        Why commit it: a scorer killed before its first commit would otherwise restart at the *new*
        end and skip what arrived in between. Groups with committed offsets resume from them.
        """
        try:
            committed = consumer.committed(partitions, timeout=30)
            fresh = [tp for tp in committed if tp.offset < 0]
            for tp in fresh:
                _, tp.offset = consumer.get_watermark_offsets(tp, timeout=30)
            if fresh:
                consumer.commit(offsets=fresh, asynchronous=False)
                log.info(
                    "new consumer group %s starts at %s", self.config.group_id, [(t.partition, t.offset) for t in fresh]
                )
            consumer.assign(committed)
        except Exception:  # broker gone mid-rebalance: fall back to committed offsets or auto.offset.reset
            log.exception("could not resolve start offsets; assigning with the group's committed offsets")
            consumer.assign(partitions)
        self.assigned = sorted(tp.partition for tp in partitions)
        log.info("assigned partitions %s of %s", self.assigned, self.kafka.score_requests_topic)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Hand partitions over with everything delivered committed; the rest is replayed by the new owner."""
        self.producer.flush(10)
        self._advance_commits(force=True)
        self._in_flight.clear()
        self._done.clear()
        self.assigned = []

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
            parts = stats["topics"][self.kafka.score_requests_topic]["partitions"]
            lags = [p["consumer_lag"] for pid, p in parts.items() if pid != "-1" and p["consumer_lag"] >= 0]
            self.lag = sum(lags) if lags else self.lag
            if self.lag is not None:
                self.metrics.consumer_lag.set(self.lag)
        except (KeyError, ValueError, TypeError):
            pass

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        if err is not None:
            log.warning("offset commit failed (the next one supersedes it): %s", err)

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; needs ``follower.current`` (the caller loads the first model)."""
        if self.follower.current is None:
            raise RuntimeError("no model loaded: load the champion before serving")
        self._clients()
        gc.collect()
        gc.freeze()
        self.metrics.set_model(self.follower.current.version)
        self.consumer.subscribe([self.kafka.score_requests_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not stop.is_set() and self._fatal is None:
                self._maybe_swap()
                first = self.consumer.poll(self.config.idle_poll_s)
                if first is not None:
                    batch = [first, *self.consumer.consume(self.config.max_batch - 1, 0)]
                    self._handle(batch)
                self._housekeeping()
        finally:
            self._shutdown()
        if self._fatal is not None:
            raise DeliveryFailed(self._fatal)

    def _maybe_swap(self) -> None:
        began = time.perf_counter()
        model = self.follower.take_pending()
        if model is not None:
            gc.freeze()  # the new model's objects too (no collect: that would pause serving)
            self.counts["swaps"] += 1
            self.metrics.swaps.inc()
            self.metrics.set_model(model.version)
            pause_ms = (time.perf_counter() - began) * 1000
            self.max_swap_pause_ms = max(self.max_swap_pause_ms, round(pause_ms, 3))
            log.info("swapped to %s between two batches in %.2f ms", model.version, pause_ms)
            self._write_status(force=True)

    def _handle(self, messages: Sequence[Any]) -> None:
        received = self.clock_ms()
        model = self.follower.current
        assert model is not None
        batch = _Batch(offsets={})
        batch.on_delivery = partial(self._on_answer_delivery, batch)
        requests: list[Request] = []
        rejections: list[Rejection] = []
        for msg in messages:
            if msg.error() is not None:
                log.warning("consumer: %s", msg.error())
                continue
            partition, offset = msg.partition(), msg.offset()
            batch.offsets[partition] = max(batch.offsets.get(partition, -1), offset + 1)
            try:
                parsed = parse_request(
                    msg.value(), msg.key(), partition=partition, offset=offset, timestamp_ms=msg.timestamp()[1]
                )
            except Exception as exc:  # parse_request never raises by design; a bug must still not stop us
                parsed = Rejection(Reason.INTERNAL_ERROR, repr(exc), None, msg.key(), msg.value(), partition, offset)
            if isinstance(parsed, Request):
                requests.append(parsed)
            else:
                rejections.append(parsed)
        if not batch.offsets:
            return
        self.counts["requests"] += len(requests) + len(rejections)
        self.metrics.requests.inc(len(requests) + len(rejections))
        began = time.perf_counter()
        answered, failed = self._score(model, requests)
        rejections += failed
        scoring_ms = round((time.perf_counter() - began) * 1000, 3)
        now = self.clock_ms()
        timing = {
            "received_at_ms": received,
            "scoring_ms": scoring_ms,
            "batch_size": len(messages),
            "answered_at_ms": now,
        }
        self._in_flight.append(batch)
        by_source: dict[str, int] = {}
        topic = self.kafka.score_results_topic
        for request, body in answered:
            try:
                value = encode_answer(
                    request,
                    items=body.items,
                    scores=body.scores,
                    source=body.source,
                    model_version=model.version,
                    timing=timing,
                )
            except Exception as exc:
                rejections.append(_rejected(request, Reason.INTERNAL_ERROR, f"could not encode the answer: {exc!r}"))
                continue
            self._produce(batch, topic, request.key, value)
            by_source[body.source] = by_source.get(body.source, 0) + 1
            self.metrics.latency.observe(max(now - request.timestamp_ms, 0) / 1000)
        for source, count in by_source.items():
            self.metrics.answers.labels(source=source).inc(count)
        self.counts["answers"] += sum(by_source.values())
        for rejection in rejections:
            self._reject(batch, rejection, model, timing)

    def _score(self, model: ServingModel, requests: list[Request]) -> tuple[list[tuple[Request, Any]], list[Rejection]]:
        """Score the whole batch in one call; if that fails, find the failing requests one by one."""
        if not requests:
            return [], []
        try:
            return list(zip(requests, score_requests(model.recommender, requests), strict=True)), []
        except Exception:
            log.exception("scoring a batch of %d failed; retrying request by request", len(requests))
        answered, failed = [], []
        for request in requests:
            try:
                answered.append((request, score_requests(model.recommender, [request])[0]))
            except Exception as exc:
                failed.append(_rejected(request, Reason.SCORING_FAILED, repr(exc)))
        return answered, failed

    def _reject(self, batch: _Batch, rejection: Rejection, model: ServingModel, timing: dict[str, Any]) -> None:
        headers = dlq_headers(rejection, source_topic=self.kafka.score_requests_topic, model_version=model.version)
        self._produce(batch, self.kafka.score_requests_dlq_topic, rejection.key, rejection.value, headers, attempt=1)
        self.counts["dlq"] += 1
        self.metrics.dlq.labels(reason=str(rejection.reason)).inc()
        log.info(
            "dead letter %s at %s[%d]@%d: %s",
            rejection.reason,
            self.kafka.score_requests_topic,
            rejection.partition,
            rejection.offset,
            rejection.detail[:200],
        )
        if rejection.identifiable:
            value = encode_error_answer(rejection, model_version=model.version, timing=timing)
            self._produce(batch, self.kafka.score_results_topic, rejection.key, value)
            self.metrics.answers.labels(source="error").inc()

    # ------------------------------------------------------------------ delivery and commits
    def _produce(
        self,
        batch: _Batch,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        attempt: int | None = None,
    ) -> None:
        """Queue one record; ``attempt`` set (retries, dead letters): a callback of its own.

        First-attempt answers share the batch's callback, which recovers topic, key and value from the
        delivery report. Dead letters keep their own, because delivery reports carry no headers.
        """
        if attempt is None:
            callback = batch.on_delivery
        else:
            callback = partial(self._on_delivery, batch, topic, key, value, headers, attempt)
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
                break
            except BufferError:  # the local queue is full (e.g. the broker is down): wait for room
                self.producer.poll(0.1)
        batch.pending += 1

    def _on_answer_delivery(self, batch: _Batch, err: Any, msg: Any) -> None:
        if err is None:
            batch.pending -= 1
            return
        self._on_delivery(batch, msg.topic(), msg.key(), msg.value(), None, 1, err, msg)

    def _on_delivery(
        self,
        batch: _Batch,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        attempt: int,
        err: Any,
        msg: Any,
    ) -> None:
        batch.pending -= 1
        if err is None:
            return
        log.warning("delivery to %s failed (attempt %d): %s", topic, attempt, err)
        if attempt >= self.config.delivery_attempts:
            self._fatal = f"could not deliver to {topic} after {attempt} attempts: {err}"
            return
        self._retry.append((batch, topic, key, value, headers, attempt + 1))

    def _housekeeping(self) -> None:
        self.producer.poll(0)
        if self._retry:
            retry, self._retry = self._retry, []
            for batch, topic, key, value, headers, attempt in retry:
                self._produce(batch, topic, key, value, headers, attempt)
        while len(self.producer) > self.config.max_queued and self._fatal is None:
            self.producer.poll(0.1)  # back-pressure: do not read faster than answers can leave
        self._advance_commits()
        self._write_status()

    def _advance_commits(self, *, force: bool = False) -> None:
        """Commit up to the oldest batch that still waits for a delivery (offsets are cumulative)."""
        from confluent_kafka import TopicPartition

        while self._in_flight and self._in_flight[0].pending == 0 and self._fatal is None:
            for partition, offset in self._in_flight.popleft().offsets.items():
                self._done[partition] = max(self._done.get(partition, -1), offset)
        now = time.monotonic()
        if not self._done or (not force and now - self._last_commit < self.config.commit_interval_s):
            return
        topic = self.kafka.score_requests_topic
        offsets = [TopicPartition(topic, p, o) for p, o in self._done.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not force)
            self._done = {}
        except Exception as exc:  # broker down: keep them, the next commit carries them
            log.warning("commit failed, will retry: %s", exc)
        self._last_commit = now

    def _shutdown(self) -> None:
        if self.producer is not None:
            deadline = time.monotonic() + 30
            while len(self.producer) and time.monotonic() < deadline:
                self.producer.poll(0.1)
                if self._retry:
                    self._housekeeping()
            self._advance_commits(force=True)
        if self.consumer is not None:
            self.consumer.close()
        self._write_status(force=True, running=False)

    # ------------------------------------------------------------------ status
    def status(self, *, running: bool = True) -> dict[str, Any]:
        model = self.follower.current
        return {
            "pid": os.getpid(),
            "running": running,
            "model_version": model.version if model else None,
            "model_digest": model.digest if model else None,
            "lag": self.lag,
            "assigned_partitions": self.assigned,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "updated_at": time.time(),
            "last_model_error": self.follower.last_error,
            "ignored_model_events": self.follower.ignored_events,
            "last_ignored_model_event": self.follower.last_ignored_event,
            "max_swap_pause_ms": self.max_swap_pause_ms,
            **self.counts,
        }

    def _write_status(self, *, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        if self.status_path is None or (not force and now - self._last_status < self.config.status_interval_s):
            return
        self._last_status = now
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(running=running)))
        tmp.replace(self.status_path)


def _rejected(request: Request, reason: Reason, detail: str) -> Rejection:
    return Rejection(reason, detail, request.request_id, request.key, request.raw, request.partition, request.offset)
