"""Answers and dead letters on their way to the broker: produced, confirmed by delivery reports, retried.

At-least-once needs to know when everything a batch of requests caused has been acknowledged: only then
may the batch's input offsets be committed (:mod:`.offsets`). Each batch is an :class:`InFlight` that
counts its pending deliveries; the :class:`Outbox` produces its records, re-sends a failed delivery up to
``attempts`` times in all, and when an answer keeps failing sets ``fatal``, which stops the loop before
those offsets are committed.

A dead letter that keeps failing does not stop the loop: a record that cannot be written to the
dead-letter topic would fail the same way after every restart, so stopping would only stop serving
everyone else. It is re-sent every ``stuck_retry_s`` for as long as it takes, counted in ``stuck`` (a
metric and an alert in the engine), and its batch stays pending, so no offset past it is committed: a
restart replays it. The same holds for a record the producer refuses at once (``produce`` raising, e.g.
``MSG_SIZE_TOO_LARGE``): that is a failed delivery, never an exception out of the loop.

The producer never times a record out (``message.timeout.ms=0``): a broker outage of any length only
fills the queue, and a full queue makes the loop wait (back-pressure).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.protocol import Headers

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """An answer or dead letter could not be delivered after every attempt; offsets stay uncommitted."""


@dataclass(eq=False)
class InFlight:
    """Offsets a batch will let us commit once all of its ``pending`` deliveries are confirmed.

    ``on_delivery`` is the one delivery callback every answer of the batch shares. Why not one
    ``partial`` per message: under load the producer queue holds hundreds of thousands of answers, and
    a Python object per queued answer survived into the oldest GC generation, whose collections then
    paused the loop for 70-270 ms each (measured at 20k req/s).
    """

    offsets: dict[int, int]
    pending: int = 0
    on_delivery: Callable[[Any, Any], None] | None = None


#: A record to produce again: its batch, topic, key, value, headers, the attempt it will be, and not before
#: when (``time.monotonic()``).
_Retry = tuple[InFlight, str, bytes | None, bytes | None, Headers | None, int, float]


def scorer_producer(kafka: KafkaSettings, *, linger_ms: float, max_queued: int) -> Any:
    """The scorer's idempotent producer: acknowledged by all in-sync replicas, never giving up on a record."""
    from confluent_kafka import Producer

    return Producer(
        {
            **client_config(kafka),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            "socket.nagle.disable": True,  # an answer is one small write: never wait for the broker's ACK first
            "message.timeout.ms": 0,  # never give up on an answer: outages of any length
            "message.max.bytes": 4 << 20,  # a dead letter carries the caller's value (<= 1 MiB) and headers
            "queue.buffering.max.messages": max_queued + 10_000,
            "logger": logging.getLogger("recflow.streaming.librdkafka"),
        }
    )


class Outbox:
    """Produces each batch's records and keeps count of what is still unconfirmed."""

    def __init__(
        self,
        producer: Any,
        *,
        attempts: int,
        max_queued: int,
        dead_letter_topic: str | None = None,
        stuck_retry_s: float = 5.0,
    ) -> None:
        self.producer = producer
        self.attempts = attempts
        self.max_queued = max_queued
        self.dead_letter_topic = dead_letter_topic
        self.stuck_retry_s = stuck_retry_s
        #: Why serving must stop: an answer that could not be delivered after every attempt.
        self.fatal: str | None = None
        #: Dead letters that failed every attempt and are still being re-sent (their offsets held back).
        self.stuck = 0
        self.last_stuck_error: str | None = None
        self._retry: list[_Retry] = []

    def open(self, offsets: dict[int, int]) -> InFlight:
        """A new batch that will release ``offsets`` (partition -> next offset) once all it sends is confirmed."""
        batch = InFlight(offsets)
        batch.on_delivery = partial(self._on_answer_delivery, batch)
        return batch

    def send(
        self,
        batch: InFlight,
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
        if attempt is None or attempt == 1:  # a new record; a re-sent one is still counted as pending
            batch.pending += 1
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
                return
            except BufferError:  # the local queue is full (e.g. the broker is down): wait for room
                self.producer.poll(0.1)
            except Exception as exc:  # refused at once (KafkaException: too large, ...): a failed delivery
                self._on_delivery(batch, topic, key, value, headers, attempt or 1, exc, None)
                return

    # A failed record stays pending in its batch (so nothing past it is committed) until it is delivered.
    def _on_answer_delivery(self, batch: InFlight, err: Any, msg: Any) -> None:
        if err is None:
            batch.pending -= 1
            return
        self._on_delivery(batch, msg.topic(), msg.key(), msg.value(), None, 1, err, msg)

    def _on_delivery(
        self,
        batch: InFlight,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        attempt: int,
        err: Any,
        msg: Any,
    ) -> None:
        if err is None:
            batch.pending -= 1
            if attempt > self.attempts:  # a stuck dead letter got through at last
                self.stuck -= 1
                log.warning("a dead letter to %s was delivered after %d attempts", topic, attempt)
            return
        log.warning("delivery to %s failed (attempt %d): %s", topic, attempt, err)
        if attempt < self.attempts:
            self._retry.append((batch, topic, key, value, headers, attempt + 1, 0.0))
        elif topic != self.dead_letter_topic:
            self.fatal = f"could not deliver to {topic} after {attempt} attempts: {err}"
        else:
            if attempt == self.attempts:
                self.stuck += 1
                log.error(
                    "ALERT: a dead letter to %s failed %d attempts (%s); re-sending every %.0f s, offsets held back",
                    topic, attempt, err, self.stuck_retry_s,
                )  # fmt: skip
            self.last_stuck_error = f"{err}"
            self._retry.append((batch, topic, key, value, headers, attempt + 1, time.monotonic() + self.stuck_retry_s))

    def pump(self) -> None:
        """Run the delivery reports that arrived, re-send failed records, wait while the queue is too long.

        The wait is the back-pressure: the loop does not read requests faster than answers can leave.
        """
        self.producer.poll(0)
        if self._retry:
            now = time.monotonic()
            retry, self._retry = [r for r in self._retry if r[6] <= now], [r for r in self._retry if r[6] > now]
            for batch, topic, key, value, headers, attempt, _ in retry:
                self.send(batch, topic, key, value, headers, attempt)
        while len(self.producer) > self.max_queued and self.fatal is None:
            self.producer.poll(0.1)

    def drain(self, timeout_s: float, on_retry: Callable[[], None]) -> None:
        """Wait up to ``timeout_s`` for the queue to empty (shutdown); ``on_retry`` runs when a record failed.

        ``on_retry`` is the loop's housekeeping: it re-sends through :meth:`pump` and commits what was
        delivered meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        while len(self.producer) and time.monotonic() < deadline:
            self.producer.poll(0.1)
            if self._retry:
                on_retry()

    def flush(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for every queued record's delivery report (partitions are being revoked)."""
        self.producer.flush(timeout_s)
