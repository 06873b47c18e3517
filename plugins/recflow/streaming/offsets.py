"""Which request offsets the scorer commits, and when: the consumer half of at-least-once.

Offsets are stored by hand (no auto-commit, no auto-store). A batch's offsets become committable once the
outbox confirmed every delivery it caused, in poll order: up to the oldest batch still waiting. Commits
are cumulative, so one that fails (broker down) is superseded by the next; they are sent at most every
``interval_s`` unless forced (a revoke, the shutdown). A brand-new consumer group starts at the end of the
topic and commits that start at once (:func:`start_new_group_at_end`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.outbox import InFlight

log = logging.getLogger(__name__)


def scorer_consumer(
    kafka: KafkaSettings,
    *,
    group_id: str,
    on_stats: Callable[[str], None],
    on_commit: Callable[[Any, list[Any]], None],
    extra: dict[str, Any],
) -> Any:
    """The scorer's consumer: offsets stored and committed by :class:`OffsetLedger` only; ``extra`` wins.

    ``on_commit`` hears how each asynchronous commit ended (:meth:`OffsetLedger.commit_ended`).
    """
    from confluent_kafka import Consumer

    return Consumer(
        {
            **client_config(kafka),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            # Nagle's algorithm held small fetch and commit requests back until the broker's delayed ACK
            # (tens of ms): off, as for every client on the answer path
            "socket.nagle.disable": True,
            "statistics.interval.ms": 2000,
            "stats_cb": on_stats,
            "error_cb": lambda err: log.warning("kafka: %s", err),
            "on_commit": on_commit,
            "logger": logging.getLogger("recflow.streaming.librdkafka"),
            **extra,
        }
    )


def start_new_group_at_end(consumer: Any, partitions: list[Any], group_id: str) -> None:
    """Assign ``partitions``; a brand-new group starts at the end of the topic, and commits that start at once.

    Why commit it: a scorer killed before its first commit would otherwise restart at the *new* end and
    skip what arrived in between. Groups with committed offsets resume from them.
    """
    try:
        committed = consumer.committed(partitions, timeout=30)
        fresh = [tp for tp in committed if tp.offset < 0]
        for tp in fresh:
            _, tp.offset = consumer.get_watermark_offsets(tp, timeout=30)
        if fresh:
            consumer.commit(offsets=fresh, asynchronous=False)
            log.info("new consumer group %s starts at %s", group_id, [(t.partition, t.offset) for t in fresh])
        consumer.assign(committed)
    except Exception:  # broker gone mid-rebalance: fall back to committed offsets or auto.offset.reset
        log.exception("could not resolve start offsets; assigning with the group's committed offsets")
        consumer.assign(partitions)


def consumer_lag(raw_stats: str, topic: str) -> int | None:
    """Records of ``topic`` not yet read, from librdkafka's statistics JSON; None when it does not say."""
    try:
        parts = json.loads(raw_stats)["topics"][topic]["partitions"]
        lags = [p["consumer_lag"] for pid, p in parts.items() if pid != "-1" and p["consumer_lag"] >= 0]
    except (KeyError, ValueError, TypeError):
        return None
    return sum(lags) if lags else None


class OffsetLedger:
    """The batches whose offsets wait for their deliveries, and the offsets ready to commit."""

    def __init__(self, consumer: Any, topic: str, *, interval_s: float) -> None:
        self.consumer = consumer
        self.topic = topic
        self.interval_s = interval_s
        self._in_flight: deque[InFlight] = deque()
        self._done: dict[int, int] = {}
        self._last_commit = 0.0

    def track(self, batch: InFlight) -> None:
        """Follow a batch just polled (batches are settled in the order they are tracked)."""
        self._in_flight.append(batch)

    def settle(self) -> None:
        """Make the offsets of delivered batches committable, up to the oldest batch still waiting."""
        while self._in_flight and self._in_flight[0].pending == 0:
            for partition, offset in self._in_flight.popleft().offsets.items():
                self._done[partition] = max(self._done.get(partition, -1), offset)

    def commit(self, *, force: bool = False) -> None:
        """Commit what is committable: asynchronously every ``interval_s``, synchronously when forced."""
        from confluent_kafka import TopicPartition

        now = time.monotonic()
        if not self._done or (not force and now - self._last_commit < self.interval_s):
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in self._done.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not force)
            self._done = {}
        except Exception as exc:  # broker down: keep them, the next commit carries them
            log.warning("commit failed, will retry: %s", exc)
        self._last_commit = now

    def commit_ended(self, err: Any, partitions: list[Any]) -> None:
        """An asynchronous commit that failed gives its offsets back, so the next tick commits them again.

        Why: an idle scorer polls no new batch, so a commit lost to a broker restart
        (``COORDINATOR_LOAD_IN_PROGRESS``) would otherwise never be retried and the group's lag never reach 0.
        Only partitions still assigned come back: a revoked one belongs to its new owner.
        """
        if err is None:
            return
        log.warning("offset commit failed, retrying at the next tick: %s", err)
        owned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.topic}
        for tp in partitions:
            if tp.topic == self.topic and tp.partition in owned and tp.offset >= 0:
                self._done[tp.partition] = max(self._done.get(tp.partition, -1), tp.offset)

    def forget(self) -> None:
        """Drop every batch and offset (partitions revoked: the new owner replays what was not committed)."""
        self._in_flight.clear()
        self._done.clear()
