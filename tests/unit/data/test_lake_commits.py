"""The local lake's one-step commit: attempts under their own prefix, one symlink flip, nothing half-done.

Faults are injected at the real point (``RECFLOW_FAULTS=lake.publish.before_commit=raise:...``): the
publish stops after its attempt is written and checked, before the commit, as a crashed task would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from recflow.data.commits import ATTEMPTS, COMMITS, PublishError
from recflow.data.lake import LocalLake
from recflow.services.faults import InjectedFault

PART = "interactions/event_date=2026-11-03"


def _staged(lake: LocalLake, rows: list[str], extra: dict[str, str] | None = None) -> Path:
    folder = lake.staging()
    pd.DataFrame({"user_id": rows}).to_parquet(folder / "part-0.parquet", index=False)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def _read(lake: LocalLake, part: str = PART) -> list[str]:
    return list(pd.read_parquet(Path(lake.root) / part)["user_id"])


def test_a_publish_is_an_attempt_made_visible_by_one_link(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    lake.publish(_staged(lake, ["a", "b"]), PART)
    partition = Path(lake.root) / PART
    assert partition.is_symlink() and os.readlink(partition) == f"../{COMMITS}/{PART}/{PART}"
    pointer = Path(lake.root) / COMMITS / PART
    assert pointer.is_symlink() and pointer.resolve().parent == Path(lake.root) / ATTEMPTS / PART
    assert _read(lake) == ["a", "b"] and lake.partition_rows(PART) == 2
    assert sorted(lake.files(PART)) == ["part-0.parquet"]


def test_a_failure_before_the_commit_keeps_the_previous_partition_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = LocalLake(tmp_path / "lake")
    lake.publish(_staged(lake, ["a", "b"], {"_notes.json": "{}"}), PART)
    before = lake.files(PART)
    monkeypatch.setenv("RECFLOW_FAULTS", "lake.publish.before_commit=raise:task killed")
    with pytest.raises(InjectedFault, match="task killed"):
        lake.publish(_staged(lake, ["c"]), PART)
    assert lake.files(PART) == before and _read(lake) == ["a", "b"], "readers still see the old commit only"
    monkeypatch.delenv("RECFLOW_FAULTS")
    lake.publish(_staged(lake, ["c"]), PART)
    assert _read(lake) == ["c"] and sorted(lake.files(PART)) == ["part-0.parquet"], "no file of the old attempt"


def test_tables_committed_together_flip_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = LocalLake(tmp_path / "lake")
    scores, offers = "scores/event_date=2026-11-03", "offers/event_date=2026-11-03"
    lake.publish_together({scores: _staged(lake, ["s1"]), offers: _staged(lake, ["o1"])}, key=scores)
    monkeypatch.setenv("RECFLOW_FAULTS", "batch.publish.before_commit=raise:S3 gone")
    with pytest.raises(InjectedFault):
        lake.publish_together(
            {scores: _staged(lake, ["s2"]), offers: _staged(lake, ["o2"])},
            key=scores,
            point="batch.publish.before_commit",
        )
    assert (_read(lake, scores), _read(lake, offers)) == (["s1"], ["o1"])
    monkeypatch.delenv("RECFLOW_FAULTS")
    lake.publish_together({scores: _staged(lake, ["s3"]), offers: _staged(lake, ["o3"])}, key=scores)
    assert (_read(lake, scores), _read(lake, offers)) == (["s3"], ["o3"])


def test_a_rerun_of_the_same_bytes_publishes_identical_files(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    lake.publish(_staged(lake, ["a", "b"]), PART)
    first = lake.files(PART)
    lake.publish(_staged(lake, ["a", "b"]), PART)
    assert lake.files(PART) == first


def test_superseded_attempts_wait_for_the_grace_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = LocalLake(tmp_path / "lake")
    attempts = Path(lake.root) / ATTEMPTS / PART
    lake.publish(_staged(lake, ["a"]), PART)
    lake.publish(_staged(lake, ["b"]), PART)
    assert len(list(attempts.iterdir())) == 2, "the default grace keeps the superseded attempt for readers"
    monkeypatch.setenv("RECFLOW_LAKE_GRACE_SECONDS", "0")
    lake.publish(_staged(lake, ["c"]), PART)
    assert [p.name for p in attempts.iterdir()] == [(Path(lake.root) / COMMITS / PART).resolve().name]
    assert _read(lake) == ["c"]


def test_a_plain_folder_from_before_is_replaced_and_kept_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = LocalLake(tmp_path / "lake")
    other = "interactions/event_date=2026-11-04"
    for part in (PART, other):
        legacy = Path(lake.root) / part
        legacy.mkdir(parents=True)
        pd.DataFrame({"user_id": ["old"]}).to_parquet(legacy / "part-0.parquet")
    lake.publish(_staged(lake, ["new"]), PART)
    assert _read(lake) == ["new"]
    aside = list((Path(lake.root) / ATTEMPTS / "_legacy" / PART).iterdir())
    assert len(aside) == 1 and pd.read_parquet(aside[0])["user_id"].tolist() == ["old"]
    monkeypatch.setenv("RECFLOW_LAKE_GRACE_SECONDS", "0")
    lake.publish(_staged(lake, ["newer"]), other)  # another partition's clean-up leaves this one's alone
    assert [p.name for p in (Path(lake.root) / ATTEMPTS / "_legacy" / PART).iterdir()] == [aside[0].name]
    lake.publish(_staged(lake, ["newest"]), PART)
    assert not list((Path(lake.root) / ATTEMPTS / "_legacy" / PART).iterdir()), "gone after the grace period"


@pytest.mark.parametrize("name", ["../escape", "_hidden/x", "a//b", ""])
def test_a_partition_name_that_escapes_or_hides_is_refused(tmp_path: Path, name: str) -> None:
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(PublishError, match="relative path of visible names"):
        lake.publish(_staged(lake, ["a"]), name)


def test_several_tables_need_a_key_and_a_bad_grace_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(PublishError, match="need a key"):
        lake.publish_together({"a/x=1": _staged(lake, ["a"]), "b/x=1": _staged(lake, ["b"])})
    monkeypatch.setenv("RECFLOW_LAKE_GRACE_SECONDS", "soon")
    with pytest.raises(PublishError, match="not a number"):
        lake.publish(_staged(lake, ["a"]), PART)
