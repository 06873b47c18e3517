"""What one poll's records turn into: an answer per valid request, a dead letter per record that has none.

:func:`read_poll` parses the records and notes the offsets they advance; :func:`score_poll` scores the
valid requests in one call (request by request only when that fails, to find the culprit); :class:`Replies`
encodes answers and dead letters and queues them in the :class:`~recflow.streaming.outbox.Outbox`. A
rejected record that can be identified (a key or a readable ``request_id``) gets an error answer too, so
its caller is not left waiting. Nothing here raises on a bad record: every record gets one outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recflow.config.kafka import KafkaSettings
from recflow.services import faults
from recflow.streaming.answers import Scored, score_requests
from recflow.streaming.follower import ServingModel
from recflow.streaming.metrics import ScorerMetrics
from recflow.streaming.outbox import InFlight, Outbox
from recflow.streaming.protocol import (
    Reason,
    Rejection,
    Request,
    dlq_headers,
    encode_answer,
    encode_error_answer,
    parse_request,
)

log = logging.getLogger(__name__)


@dataclass
class Poll:
    """One poll's records, parsed: requests to score, records that cannot be, and the offsets they advance."""

    requests: list[Request] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    #: partition -> the offset to commit once the poll is answered (the last record's + 1)
    offsets: dict[int, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.requests) + len(self.rejections)


def read_poll(messages: Sequence[Any]) -> Poll:
    """Parse every record of a poll; consumer errors (not records) are logged and skipped."""
    poll = Poll()
    for msg in messages:
        if msg.error() is not None:
            log.warning("consumer: %s", msg.error())
            continue
        partition, offset = msg.partition(), msg.offset()
        poll.offsets[partition] = max(poll.offsets.get(partition, -1), offset + 1)
        try:
            parsed = parse_request(
                msg.value(), msg.key(), partition=partition, offset=offset, timestamp_ms=msg.timestamp()[1]
            )
        except Exception as exc:  # parse_request never raises by design; a bug must still not stop us
            parsed = Rejection(Reason.INTERNAL_ERROR, repr(exc), None, msg.key(), msg.value(), partition, offset)
        if isinstance(parsed, Request):
            poll.requests.append(parsed)
        else:
            poll.rejections.append(parsed)
    return poll


def score_poll(model: ServingModel, requests: list[Request]) -> tuple[list[tuple[Request, Scored]], list[Rejection]]:
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
            failed.append(rejected(request, Reason.SCORING_FAILED, repr(exc)))
    return answered, failed


def rejected(request: Request, reason: Reason, detail: str) -> Rejection:
    """A valid request that still got no answer (scoring or encoding failed), as a dead letter."""
    return Rejection(reason, detail, request.request_id, request.key, request.raw, request.partition, request.offset)


class Replies:
    """Encodes a poll's answers and dead letters, queues them in the outbox and counts them in the metrics."""

    def __init__(self, kafka: KafkaSettings, outbox: Outbox, metrics: ScorerMetrics) -> None:
        self.kafka = kafka
        self.outbox = outbox
        self.metrics = metrics

    def answer(
        self,
        batch: InFlight,
        model: ServingModel,
        answered: list[tuple[Request, Scored]],
        timing: dict[str, Any],
    ) -> tuple[int, list[Rejection]]:
        """Queue an answer per scored request; returns how many, and the requests whose answer failed to encode.

        Latency is from the request record's timestamp to ``timing["answered_at_ms"]``.
        """
        by_source: dict[str, int] = {}
        unencodable: list[Rejection] = []
        now = timing["answered_at_ms"]
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
                unencodable.append(rejected(request, Reason.INTERNAL_ERROR, f"could not encode the answer: {exc!r}"))
                continue
            self.outbox.send(batch, self.kafka.score_results_topic, request.key, value)
            by_source[body.source] = by_source.get(body.source, 0) + 1
            self.metrics.latency.observe(max(now - request.timestamp_ms, 0) / 1000)
        for source, count in by_source.items():
            self.metrics.answers.labels(source=source).inc(count)
        return sum(by_source.values()), unencodable

    def dead_letter(self, batch: InFlight, rejection: Rejection, model: ServingModel, timing: dict[str, Any]) -> None:
        """Queue the record, byte for byte, on the dead-letter topic; an identifiable caller gets an error answer."""
        faults.hit("scorer.dead_letter")
        headers = dlq_headers(rejection, source_topic=self.kafka.score_requests_topic, model_version=model.version)
        self.outbox.send(batch, self.kafka.score_requests_dlq_topic, rejection.key, rejection.value, headers, attempt=1)
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
            self.outbox.send(batch, self.kafka.score_results_topic, rejection.key, value)
            self.metrics.answers.labels(source="error").inc()
