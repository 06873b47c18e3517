"""The serving loop: consume a poll's batch, score it in one call, produce answers, commit when delivered.

The loop is this module's; what it calls each has a module of its own: :mod:`.replies` (a poll's records
in, answers and dead letters out), :mod:`.outbox` (deliveries, retries, back-pressure), :mod:`.offsets`
(what may be committed, and when) and :mod:`.follower` (the next model, loaded off the loop).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recflow.config.kafka import KafkaSettings
from recflow.streaming.follower import ChampionFollower
from recflow.streaming.metrics import ScorerMetrics
from recflow.streaming.offsets import OffsetLedger, consumer_lag, scorer_consumer, start_new_group_at_end
from recflow.streaming.outbox import DeliveryFailed, Outbox, scorer_producer
from recflow.streaming.replies import Replies, read_poll, score_poll

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


class Scorer:
    """One consumer-group member: ``run`` until ``stop`` is set (SIGTERM sets it).

    ``run`` raises :class:`~recflow.streaming.outbox.DeliveryFailed` when a record could not be delivered.
    """

    # Set by ``attach``: they wrap the Kafka clients, which ``run`` creates.
    outbox: Outbox
    offsets: OffsetLedger
    replies: Replies

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
        metrics.watch_load_failures(follower.load_failures)
        self.config = config or EngineConfig()
        self.status_path = status_path
        self.clock_ms = clock_ms
        self.started_at = time.time()
        self.lag: int | None = None
        #: The serving loop's longest pause for a swap (the hand-over itself; loading is elsewhere).
        self.max_swap_pause_ms = 0.0
        self.assigned: list[int] = []
        self.counts = {"requests": 0, "answers": 0, "dlq": 0, "swaps": 0}
        self._last_status = 0.0
        self.consumer: Any = None

    # ------------------------------------------------------------------ clients
    def _clients(self) -> None:
        """Connect: the producer behind the outbox, the consumer behind the offset ledger."""
        producer = scorer_producer(self.kafka, linger_ms=self.config.linger_ms, max_queued=self.config.max_queued)
        consumer = scorer_consumer(
            self.kafka, group_id=self.config.group_id, on_stats=self._on_stats, extra=self.config.extra_consumer
        )
        self.attach(producer, consumer)

    def attach(self, producer: Any, consumer: Any) -> None:
        """Serve through these clients (``run`` makes real ones; tests hand in fakes)."""
        self.consumer = consumer
        self.outbox = Outbox(producer, attempts=self.config.delivery_attempts, max_queued=self.config.max_queued)
        self.offsets = OffsetLedger(consumer, self.kafka.score_requests_topic, interval_s=self.config.commit_interval_s)
        self.replies = Replies(self.kafka, self.outbox, self.metrics)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        start_new_group_at_end(consumer, partitions, self.config.group_id)
        self.assigned = sorted(tp.partition for tp in partitions)
        log.info("assigned partitions %s of %s", self.assigned, self.kafka.score_requests_topic)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Hand partitions over with everything delivered committed; the rest is replayed by the new owner."""
        self.outbox.flush(10)
        self._commit(force=True)
        self.offsets.forget()
        self.assigned = []

    def _on_stats(self, raw: str) -> None:
        lag = consumer_lag(raw, self.kafka.score_requests_topic)
        if lag is not None:
            self.lag = lag
            self.metrics.consumer_lag.set(lag)

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
            while not stop.is_set() and self.outbox.fatal is None:
                self._maybe_swap()
                first = self.consumer.poll(self.config.idle_poll_s)
                if first is not None:
                    batch = [first, *self.consumer.consume(self.config.max_batch - 1, 0)]
                    self._handle(batch)
                self._housekeeping()
        finally:
            self._shutdown()
        if self.outbox.fatal is not None:
            raise DeliveryFailed(self.outbox.fatal)

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
        """Answer one poll: parse, score in one call, queue answers then dead letters, track the offsets."""
        received = self.clock_ms()
        model = self.follower.current
        assert model is not None
        poll = read_poll(messages)
        if not poll.offsets:
            return
        self.counts["requests"] += poll.size
        self.metrics.requests.inc(poll.size)
        began = time.perf_counter()
        answered, failed = score_poll(model, poll.requests)
        scoring_ms = round((time.perf_counter() - began) * 1000, 3)
        timing = {
            "received_at_ms": received,
            "scoring_ms": scoring_ms,
            "batch_size": len(messages),
            "answered_at_ms": self.clock_ms(),
        }
        batch = self.outbox.open(poll.offsets)
        self.offsets.track(batch)
        sent, unencodable = self.replies.answer(batch, model, answered, timing)
        self.counts["answers"] += sent
        for rejection in [*poll.rejections, *failed, *unencodable]:
            self.replies.dead_letter(batch, rejection, model, timing)
            self.counts["dlq"] += 1

    def _housekeeping(self) -> None:
        self.outbox.pump()
        self._commit()
        self._write_status()

    def _commit(self, *, force: bool = False) -> None:
        """Commit up to the oldest batch that still waits for a delivery; nothing more once one failed for good."""
        if self.outbox.fatal is None:
            self.offsets.settle()
        self.offsets.commit(force=force)

    def _shutdown(self) -> None:
        if self.consumer is not None:
            self.outbox.drain(30, on_retry=self._housekeeping)
            self._commit(force=True)
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
            "model_load_failures": dict(self.follower.load_failures),
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
