"""Size limits checked when the scorer starts: every record the request topic accepts must have a dead letter.

A request record the broker accepted is at most the request topic's ``max.message.bytes`` as sent (the
compressed batch, when the caller compressed). Whole, its dead letter is that record plus our headers, so
the dead-letter topic's ``max.message.bytes`` and the scorer producer's limit must both be at least that
plus :data:`HEADER_ALLOWANCE`. A record that decompresses beyond the producer's limit is dead-lettered by
reference (:func:`recflow.streaming.protocol.dead_letter_record`), which always fits.

Why refuse to start rather than warn: a dead letter the broker refuses is held back forever (the outbox
re-sends it and commits nothing past it), so a mismatch found at the first large record would stall the
partition in the middle of the night; found at start, it stops a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.protocol import MAX_DEAD_LETTER_BYTES

#: Room for the dead letter's headers (reason, detail <= 2,000 bytes, source, request id, version) and framing.
HEADER_ALLOWANCE = 16 * 1024
#: The broker's default ``message.max.bytes``, for a topic that does not set its own.
BROKER_DEFAULT = 1048588


class SizeMismatch(RuntimeError):
    """The dead-letter path cannot take every record the request topic accepts."""


@dataclass(frozen=True)
class TopicLimits:
    """``max.message.bytes`` of the request and dead-letter topics."""

    requests: int
    dead_letters: int


def check_limits(limits: TopicLimits, *, producer_max: int = MAX_DEAD_LETTER_BYTES) -> None:
    """Raise :class:`SizeMismatch` naming what to change when a request record could have no dead letter."""
    needed = limits.requests + HEADER_ALLOWANCE
    problems = []
    if limits.dead_letters < needed:
        problems.append(
            f"the dead-letter topic's max.message.bytes is {limits.dead_letters}, below the request topic's "
            f"{limits.requests} + {HEADER_ALLOWANCE} for headers: raise it to at least {needed}"
        )
    if producer_max < needed:
        problems.append(
            f"the scorer writes dead letters of up to {producer_max} bytes whole, below the request topic's "
            f"{limits.requests} + {HEADER_ALLOWANCE}: lower the request topic's max.message.bytes"
        )
    if problems:
        raise SizeMismatch("; ".join(problems))


def topic_limits(kafka: KafkaSettings, timeout_s: float = 60.0) -> TopicLimits:
    """Read both topics' ``max.message.bytes`` from the broker (waiting up to ``timeout_s`` for it)."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient(client_config(kafka))
    names = (kafka.score_requests_topic, kafka.score_requests_dlq_topic)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name) for name in names])
    found: dict[str, int] = {}
    for resource, future in futures.items():
        entry = future.result(timeout=timeout_s).get("max.message.bytes")
        found[resource.name] = int(entry.value) if entry is not None and entry.value else BROKER_DEFAULT
    return TopicLimits(requests=found[names[0]], dead_letters=found[names[1]])
