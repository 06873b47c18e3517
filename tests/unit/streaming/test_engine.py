"""The engine's delivery bookkeeping: offsets are committed only once answers are acknowledged.

A real broker acknowledges at once, so the order "produce, acknowledge, commit" cannot be observed
against it, nor can a refused delivery be provoked: these fakes hold deliveries back or fail them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recflow.config.kafka import KafkaSettings
from recflow.models.artifact import load_recommender
from recflow.models.synthetic import random_als
from recflow.streaming.engine import EngineConfig, Scorer
from recflow.streaming.follower import ChampionFollower, ServingModel
from recflow.streaming.metrics import ScorerMetrics


class FakeMessage:
    def __init__(self, value: bytes | None, offset: int, key: bytes | None = None) -> None:
        self._value, self._offset, self._key = value, offset, key

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


class DeliveredMessage:
    """What a delivery report carries (topic, key, value; librdkafka's reports have no headers)."""

    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._topic, self._key, self._value = topic, key, value

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


class FakeProducer:
    """Keeps delivery callbacks until the test releases them, optionally with an error."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, Any]] = []
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        self.produced.append((topic, key, value))
        self.waiting.append((DeliveredMessage(topic, key, value), on_delivery))

    def deliver(self, error: Any = None) -> None:
        waiting, self.waiting = self.waiting, []
        for msg, callback in waiting:
            callback(error, msg)

    def poll(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.waiting)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])


@pytest.fixture
def scorer(tmp_path: Path) -> Scorer:
    random_als(tmp_path / "m", n_users=20, n_items=10, rank=4, seen_per_user=2)
    follower = ChampionFollower(registry=None, cache_root=tmp_path)  # type: ignore[arg-type]
    follower.current = ServingModel("v1", load_recommender(tmp_path / "m"), tmp_path / "m")
    engine = Scorer(KafkaSettings("unused:1"), follower, ScorerMetrics(), config=EngineConfig(commit_interval_s=0))
    engine.attach(FakeProducer(), FakeConsumer())
    return engine


def test_offsets_are_committed_only_after_every_answer_is_acknowledged(scorer: Scorer) -> None:
    good = b'{"request_id": "r1", "user_id": "u1", "k": 3}'
    scorer._handle([FakeMessage(good, 10, b"k1"), FakeMessage(b"{bad", 11, b"k2")])
    scorer._housekeeping()
    assert scorer.consumer.commits == []  # answer, error answer and dead letter are all still in flight
    topics = [t for t, _, _ in scorer.outbox.producer.produced]
    assert topics.count("recflow.score-results") == 2 and topics.count("recflow.score-requests-dlq") == 1
    scorer.outbox.producer.deliver()
    scorer._housekeeping()
    assert scorer.consumer.commits == [[(0, 12)]]


def test_a_failed_delivery_is_retried_then_stops_the_scorer_without_committing(scorer: Scorer) -> None:
    scorer._handle([FakeMessage(b'{"request_id": "r1", "user_id": "u1"}', 5, b"k")])
    for _ in range(scorer.config.delivery_attempts):
        scorer.outbox.producer.deliver(error="broker said no")
        scorer._housekeeping()
    assert scorer.outbox.fatal is not None and "after 5 attempts" in scorer.outbox.fatal
    assert len(scorer.outbox.producer.produced) == scorer.config.delivery_attempts  # the same answer, re-sent
    assert scorer.consumer.commits == []


class RefusingProducer(FakeProducer):
    """Refuses dead letters at once, as librdkafka does for a record over ``message.max.bytes``."""

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any) -> None:
        if topic.endswith("-dlq"):
            from confluent_kafka import KafkaError, KafkaException

            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        super().produce(topic, value, key, headers, on_delivery)


def test_an_unwritable_dead_letter_holds_its_offsets_back_alerts_and_never_stops_the_scorer(scorer: Scorer) -> None:
    scorer.outbox.producer = RefusingProducer()
    scorer.outbox.stuck_retry_s = 0
    scorer._handle([FakeMessage(b"{bad", 7, b"k-bad")])
    for _ in range(scorer.config.delivery_attempts + 2):
        scorer.outbox.producer.deliver()  # the error answer is delivered; the dead letter never gets out
        scorer._housekeeping()
    assert scorer.outbox.fatal is None, "a dead letter must never stop the scorer"
    assert scorer.outbox.stuck == 1 and "MSG_SIZE_TOO_LARGE" in (scorer.outbox.last_stuck_error or "")
    assert scorer.metrics.stuck_dead_letters._value.get() == 1
    assert "cannot be written" in (scorer.status()["alert"] or "")
    assert scorer.consumer.commits == []  # nothing past the dead letter is committed
    scorer.outbox.producer = FakeProducer()  # the dead-letter topic takes it at last
    scorer._housekeeping()
    scorer.outbox.producer.deliver()
    scorer._housekeeping()
    assert scorer.outbox.stuck == 0 and scorer.status()["alert"] is None
    assert scorer.consumer.commits == [[(0, 8)]]


def test_a_dead_letter_too_large_to_write_whole_goes_by_reference(scorer: Scorer) -> None:
    huge = b'{"request_id": "r", "user_id": "u1", "pad": "' + b"x" * (5 << 20) + b'"}'
    scorer._handle([FakeMessage(huge, 3, b"k-huge")])
    dead = [(k, v) for t, k, v in scorer.outbox.producer.produced if t.endswith("-dlq")]
    assert dead == [(b"k-huge", None)]


def test_an_answer_carries_propensities_and_its_eligible_offers(tmp_path: Path, offered_model: Path) -> None:
    """The scorer's answer path end to end (engine, replies, encoder) with a calibrated model and a catalog."""
    import json

    follower = ChampionFollower(registry=None, cache_root=tmp_path)  # type: ignore[arg-type]
    follower.current = ServingModel("v1", load_recommender(offered_model), offered_model)
    engine = Scorer(KafkaSettings("unused:1"), follower, ScorerMetrics(), config=EngineConfig(commit_interval_s=0))
    engine.attach(FakeProducer(), FakeConsumer())
    engine._handle([FakeMessage(b'{"request_id": "r1", "user_id": "u1", "k": 8}', 0, b"k")])
    (_, _, value), *_ = engine.outbox.producer.produced
    answer = json.loads(value or b"")
    assert len(answer["propensities"]) == len(answer["items"]) == 8
    assert all(0 <= p <= 1 for p in answer["propensities"])
    by_item = dict(zip(answer["items"], answer["propensities"], strict=True))
    expected = [i for i in answer["items"] if int(1000 * by_item[i]) >= (0, 1000, 500)[int(i[1:]) % 3]]
    assert [o["item_id"] for o in answer["offers"]] == expected and expected
    first = answer["offers"][0]
    assert first["offer"] == f"offer {first['item_id'][1:]}" and first["propensity"] == by_item[first["item_id"]]
    assert len(answer["catalog_digest"]) == 64
