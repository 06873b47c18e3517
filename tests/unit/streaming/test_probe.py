"""``scorer_members`` rides out a group coordinator that is not ready yet (a freshly started broker).

A real broker answers NOT_COORDINATOR only for a moment after start-up, which a test cannot time, so
the admin client is replaced here (an error path a real server cannot be made to produce on demand).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException

from recflow.config.kafka import KafkaSettings
from recflow.streaming import probe


class _Group:
    state = ConsumerGroupState.STABLE
    members = ("a", "b")


class _Admin:
    def __init__(self, errors: list[int]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> dict[str, Future[Any]]:
        self.calls += 1
        future: Future[Any] = Future()
        if self.errors:
            future.set_exception(KafkaException(KafkaError(self.errors.pop(0))))
        else:
            future.set_result(_Group())
        return {groups[0]: future}


def _with_admin(monkeypatch: pytest.MonkeyPatch, admin: _Admin) -> None:
    import confluent_kafka.admin

    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", lambda config: admin)
    monkeypatch.setattr(probe.time, "sleep", lambda s: None)


def test_coordinator_not_ready_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _Admin([KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
    _with_admin(monkeypatch, admin)
    assert probe.scorer_members(KafkaSettings(bootstrap_servers="127.0.0.1:9"), timeout_s=10) == 2
    assert admin.calls == 3


def test_other_errors_are_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _Admin([KafkaError.GROUP_AUTHORIZATION_FAILED])
    _with_admin(monkeypatch, admin)
    with pytest.raises(KafkaException, match="GROUP_AUTHORIZATION_FAILED"):
        probe.scorer_members(KafkaSettings(bootstrap_servers="127.0.0.1:9"), timeout_s=10)
    assert admin.calls == 1


def test_a_coordinator_that_never_gets_ready_fails_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    admin = _Admin([KafkaError.NOT_COORDINATOR] * 1000)
    _with_admin(monkeypatch, admin)
    with pytest.raises(KafkaException, match="NOT_COORDINATOR"):
        probe.scorer_members(KafkaSettings(bootstrap_servers="127.0.0.1:9"), timeout_s=0.5)
    assert 1 <= admin.calls < 1000
