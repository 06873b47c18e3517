"""The pieces of the Kafka-provider tasks that run inside the triggerer or after it: apply functions and
the completion of the deferred confirmation (the whole path runs on the real broker in
``tests/integration/test_kafka_provider_dag.py``)."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest

from recflow.orchestration.context import event_day
from recflow.orchestration.landing_events import LANDED_INTERACTIONS, PROVIDER_TRIGGER, landing_event
from recflow.orchestration.scorer_confirmation import ConfirmStreamingScorer, probe_answer


class Message:
    def __init__(self, value: bytes | None, key: bytes | None = None) -> None:
        self._value, self._key = value, key

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b'{"day": "2026-11-09"}', {"day": "2026-11-09"}),
        (b'{"day": "2026-11-09", "path": "landing/date=2026-11-09/x.csv"}', {"day": "2026-11-09"}),
        (b'{"day": "2026-13-01"}', None),
        (b'{"path": "no day"}', None),
        (b"[1]", None),
        (b"not json", None),
        (None, None),
    ],
)
def test_a_landing_message_fires_only_with_a_valid_day(value: bytes | None, expected: Any) -> None:
    assert landing_event(Message(value)) == expected


def test_the_watcher_serializes_to_the_providers_trigger() -> None:
    [watcher] = LANDED_INTERACTIONS.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == PROVIDER_TRIGGER
    assert kwargs["topics"] == ["recflow.landing-events"] and kwargs["kafka_config_id"] == "kafka_default"
    assert kwargs["apply_function"] == "recflow.orchestration.landing_events.landing_event"


def test_a_watchers_event_names_the_day_in_its_payload() -> None:
    stored = SimpleNamespace(extra={"from_trigger": True, "payload": {"day": "2026-11-09"}})
    assert event_day({"triggering_asset_events": {LANDED_INTERACTIONS: [stored]}}) == date(2026, 11, 9)


def test_the_probe_answer_is_the_one_with_the_probes_key() -> None:
    answer = json.dumps({"model_version": "v2", "error": None, "timing": {"scoring_ms": 1}}).encode()
    assert probe_answer(Message(answer, b"other"), request_id="p1", version="v2") is None
    event = probe_answer(Message(answer, b"p1"), request_id="p1", version="v2")
    assert event == {"request_id": "p1", "wanted": "v2", "model_version": "v2", "error": None,
                     "timing": {"scoring_ms": 1}}  # fmt: skip


def test_an_answer_from_the_previous_champion_fails_the_try_so_a_retry_probes_again() -> None:
    task = ConfirmStreamingScorer(task_id="confirm_streaming_scorer")
    stale = {"request_id": "p1", "wanted": "v2", "model_version": "v1", "error": None, "timing": None}
    with pytest.raises(Exception, match="not from the champion yet"):
        task.execute_complete({}, stale)
    assert task.execute_complete({}, {**stale, "model_version": "v2"})["version"] == "v2"
