"""The seen table's retention setting, the fingerprint of its inputs on a local lake, and which of a
day's builds a reader takes or a writer deletes (no Spark: the pure parts of ``batch.seen_snapshot``)."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from recflow.batch.job import run_batch_scoring
from recflow.batch.layout import ScoringRequest
from recflow.batch.seen_snapshot import (
    RETENTION_ENV,
    SEEN_RETENTION_DAYS,
    UNMARKED_GRACE_SECONDS,
    Inputs,
    Window,
    build_started,
    pick_build,
    retention_days,
    stale_builds,
)
from recflow.data.commits import GRACE_ENV
from recflow.data.local_lake import LocalLake

DAY = date(2026, 11, 10)


def test_retention_comes_from_the_environment_and_a_bad_value_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RETENTION_ENV, raising=False)
    assert retention_days() == SEEN_RETENTION_DAYS == 120
    monkeypatch.setenv(RETENTION_ENV, " 30 ")
    assert retention_days() == 30
    monkeypatch.setenv(RETENTION_ENV, "")
    assert retention_days() == SEEN_RETENTION_DAYS
    for bad, words in (("ninety", "whole number"), ("1.5", "whole number"), ("0", "at least 1"), ("-3", "at least 1")):
        monkeypatch.setenv(RETENTION_ENV, bad)
        with pytest.raises(ValueError, match=words) as err:
            retention_days()
        assert RETENTION_ENV in str(err.value) and repr(bad) in str(err.value)


def test_the_job_refuses_a_bad_retention_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(RETENTION_ENV, "a week")
    request = ScoringRequest(day=DAY, version="v", k=3, active_days=3)
    with pytest.raises(ValueError, match=RETENTION_ENV):  # no Spark session needed to get there
        run_batch_scoring(None, artifact_dir=tmp_path / "no-artifact", request=request, lake_root=tmp_path)  # type: ignore[arg-type]


def _stage(lake: LocalLake, rows: list[str]) -> Path:
    folder = lake.staging()
    pd.DataFrame({"user_id": rows, "item_id": rows}).to_parquet(folder / "part-0.parquet", index=False)
    return folder


def test_the_fingerprint_follows_the_committed_contents_not_the_attempts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(GRACE_ENV, "0")  # superseded attempts are deleted at once
    lake = LocalLake(tmp_path / "lake")
    window = Window(DAY, retention_days=3)
    for d in range(3):
        lake.publish(_stage(lake, ["a", "b"]), f"interactions/event_date={DAY - timedelta(days=d)}")
    first = Inputs(lake.root).digest(window)
    attempts = tmp_path / "lake" / "_attempts" / "interactions" / f"event_date={DAY}"
    before = sorted(p.name for p in attempts.iterdir())
    lake.publish(_stage(lake, ["a", "b"]), f"interactions/event_date={DAY}")  # the same rows again
    after = sorted(p.name for p in attempts.iterdir())
    assert after != before, "the re-run made a new attempt and cleaned the old one"
    assert Inputs(lake.root).digest(window) == first, "same committed contents, same fingerprint"
    lake.publish(_stage(lake, ["a", "c"]), f"interactions/event_date={DAY - timedelta(days=1)}")
    assert Inputs(lake.root).digest(window) != first, "a re-ingested day changes it"
    assert Inputs(lake.root).digest(Window(DAY, retention_days=2)) != Inputs(lake.root).digest(window)


def test_a_plain_folder_partition_is_fingerprinted_by_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "lake" / "interactions" / f"event_date={DAY}"
    folder.mkdir(parents=True)
    pd.DataFrame({"user_id": ["a"]}).to_parquet(folder / "part-0.parquet")
    window = Window(DAY, retention_days=1)
    first = Inputs(str(tmp_path / "lake")).digest(window)
    assert Inputs(str(tmp_path / "lake")).digest(window) == first
    pd.DataFrame({"user_id": ["b", "c"]}).to_parquet(folder / "part-0.parquet")
    os.utime(folder / "part-0.parquet", ns=(1, 1))  # even with a different time, size or time moves
    assert Inputs(str(tmp_path / "lake")).digest(window) != first


def _marker(day: date = DAY, retention: int = 5, inputs: str = "d1") -> dict[str, object]:
    return {"day": str(day), "retention_days": retention, "inputs": inputs}


def test_a_reader_takes_only_a_marked_build_of_these_inputs_and_the_same_one_every_time() -> None:
    window = Window(DAY, retention_days=5)
    markers = {
        "build-20261110T010000Z-aaaa": _marker(inputs="old"),  # built before a day was re-ingested
        "build-20261110T020000Z-bbbb": _marker(),
        "build-20261110T020001Z-cccc": _marker(),  # a run that raced the one above: same inputs
        "build-20261110T030000Z-dddd": None,  # still being written
        "build-20261110T040000Z-eeee": _marker(retention=7),
        "build-20261110T050000Z-ffff": _marker(day=DAY - timedelta(days=1)),
    }
    assert pick_build(markers, window, "d1") == "build-20261110T020001Z-cccc"
    assert pick_build(markers, window, "new") is None
    assert pick_build({}, window, "d1") is None


def test_a_writer_deletes_superseded_builds_after_the_grace_and_never_one_in_progress() -> None:
    t0 = build_started("build-20261110T000000Z-aaaa")
    assert t0 is not None and build_started("build-junk") is None and build_started("other") is None
    markers = {
        "build-20261110T000000Z-aaaa": _marker(inputs="old"),
        "build-20261110T000000Z-bbbb": None,  # a build in progress (or left by a crash)
        "build-20261110T060000Z-keep": _marker(),
        "build-junk": _marker(),
    }
    keep = "build-20261110T060000Z-keep"
    assert stale_builds(markers, keep, now=t0 + 60, grace=3600) == []
    assert stale_builds(markers, keep, now=t0 + 7200, grace=3600) == ["build-20261110T000000Z-aaaa"]
    # a grace of 0 (tests, impatient operators) still never deletes an unmarked build under its writer
    assert stale_builds(markers, keep, now=t0 + 7200, grace=0) == ["build-20261110T000000Z-aaaa"]
    late = t0 + UNMARKED_GRACE_SECONDS + 1
    assert stale_builds(markers, keep, now=late, grace=0) == [
        "build-20261110T000000Z-aaaa",
        "build-20261110T000000Z-bbbb",
    ]
