"""RECFLOW_FAULTS: parsed strictly, applied only at the named point; actions on services are in
tests/integration/test_faults.py (they stop the real servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.services.faults import Fault, InjectedFault, hit, parse


def test_entries_are_parsed_with_aliases() -> None:
    assert parse("lake.publish.before_commit=stop:s3; scorer.dead_letter=kill:broker,") == [
        Fault("lake.publish.before_commit", "stop", "s3"),
        Fault("scorer.dead_letter", "kill", "kafka"),
    ]
    assert parse("") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lake.publish.before_commit", "is not point=action:target"),
        ("lake.publish.after_commit=stop:s3", "unknown point"),
        ("scorer.fetch=explode:s3", "unknown action"),
    ],
)
def test_a_malformed_spec_is_an_error(spec: str, message: str) -> None:
    with pytest.raises(InjectedFault, match=message):
        parse(spec)


def test_a_point_fires_only_its_own_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=raise:registry gone")
    hit("lake.publish.before_commit")  # another point: nothing happens
    with pytest.raises(InjectedFault, match=r"fault injected at scorer\.fetch: registry gone"):
        hit("scorer.fetch")
    with pytest.raises(InjectedFault, match="unknown fault point"):
        hit("scorer.typo")


def test_stopping_a_service_that_is_not_running_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=stop:s3")
    hit("scorer.fetch")
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=stop:nosuch")
    with pytest.raises(InjectedFault, match="no local service named 'nosuch'"):
        hit("scorer.fetch")


def test_a_count_limits_how_often_an_entry_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse("scorer.fetch=raise:x*2") == [Fault("scorer.fetch", "raise", "x", 2)]
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=raise:only twice*2")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            hit("scorer.fetch")
    hit("scorer.fetch")  # the third time it no longer fires
