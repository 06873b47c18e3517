"""The offset ledger commits in poll order, only what is delivered, and keeps offsets a failed commit held."""

from __future__ import annotations

import json
from typing import Any

from recflow.streaming.offsets import OffsetLedger, consumer_lag
from recflow.streaming.outbox import InFlight


class FlakyConsumer:
    """Records commits; refuses the first ``failures`` of them, as a consumer does while the broker is down."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("broker down")
        self.commits.append(sorted((tp.partition, tp.offset) for tp in offsets))


def test_a_later_batch_delivered_first_waits_for_the_earlier_one() -> None:
    consumer = FlakyConsumer()
    ledger = OffsetLedger(consumer, "requests", interval_s=0)
    first, second = InFlight({0: 5}, pending=1), InFlight({0: 9, 1: 3}, pending=1)
    ledger.track(first)
    ledger.track(second)
    second.pending = 0
    ledger.settle()
    ledger.commit()
    assert consumer.commits == []
    first.pending = 0
    ledger.settle()
    ledger.commit()
    assert consumer.commits == [[(0, 9), (1, 3)]]


def test_offsets_of_a_failed_commit_go_with_the_next_one() -> None:
    consumer = FlakyConsumer(failures=1)
    ledger = OffsetLedger(consumer, "requests", interval_s=0)
    ledger.track(InFlight({0: 5}))
    ledger.settle()
    ledger.commit()
    ledger.track(InFlight({1: 2}))
    ledger.settle()
    ledger.commit()
    assert consumer.commits == [[(0, 5), (1, 2)]]


class AssignedConsumer(FlakyConsumer):
    """A consumer that owns partitions 0 and 1 of ``requests``."""

    def assignment(self) -> list[Any]:
        from confluent_kafka import TopicPartition

        return [TopicPartition("requests", 0), TopicPartition("requests", 1)]


def test_an_asynchronous_commit_that_failed_is_sent_again_though_no_new_batch_comes() -> None:
    from confluent_kafka import KafkaError, TopicPartition

    consumer = AssignedConsumer()
    ledger = OffsetLedger(consumer, "requests", interval_s=0)
    ledger.track(InFlight({0: 5, 1: 2}))
    ledger.settle()
    ledger.commit()
    assert consumer.commits == [[(0, 5), (1, 2)]]
    lost = [TopicPartition("requests", 0, 5), TopicPartition("requests", 1, 2), TopicPartition("requests", 7, 9)]
    ledger.commit_ended(KafkaError(KafkaError._FAIL), lost)  # e.g. COORDINATOR_LOAD_IN_PROGRESS
    ledger.commit()
    assert consumer.commits[-1] == [(0, 5), (1, 2)]  # partition 7 is not ours: not committed
    ledger.commit_ended(None, lost)  # a commit that succeeded gives nothing back
    ledger.commit()
    assert len(consumer.commits) == 2


def test_revoked_partitions_leave_nothing_to_commit() -> None:
    consumer = FlakyConsumer()
    ledger = OffsetLedger(consumer, "requests", interval_s=0)
    ledger.track(InFlight({0: 5}))
    ledger.settle()
    ledger.forget()
    ledger.commit(force=True)
    assert consumer.commits == []


def test_lag_is_summed_over_the_topic_partitions_librdkafka_reports() -> None:
    parts = {"0": {"consumer_lag": 4}, "1": {"consumer_lag": 3}, "-1": {"consumer_lag": 100}}
    stats = json.dumps({"topics": {"requests": {"partitions": parts}}})
    assert consumer_lag(stats, "requests") == 7
    unknown = json.dumps({"topics": {"requests": {"partitions": {"0": {"consumer_lag": -1}}}}})
    assert consumer_lag(unknown, "requests") is None
    assert consumer_lag("{}", "requests") is None
