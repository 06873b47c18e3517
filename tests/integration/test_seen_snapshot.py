"""The seen table (``recflow.batch.seen_snapshot``) gives what aggregating the window gives, on real Spark.

The expected side is the job's own window aggregation (``user_activity``), which the batch tests
check against known facts; the snapshot side is built day by day as nights would build it. Both run
on the same lake: a normal night (the snapshot updated from yesterday's), a backfill (an earlier day
scored while later days are already in the lake), and a re-ingested day (the snapshot must notice).
The lake holds what the aggregation must get right: a user seen again after a gap, a repeat item, an
item the model does not know, a row without an item, users active only early.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lake_support import local_spark, write_day

from recflow.batch import seen_snapshot
from recflow.batch.job import item_table, read_interactions, run_batch_scoring, user_activity
from recflow.batch.layout import ScoringRequest, scores_partition
from recflow.batch.seen_snapshot import (
    MARKER,
    SnapshotRaced,
    Window,
    covers,
    current_snapshot,
    ensure_snapshot,
    snapshot_activity,
    snapshot_path,
    update_snapshot,
)
from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.data.commits import GRACE_ENV
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.index import IdIndex, SeenItems
from recflow.scoring.seen import SeenPolicy

pytestmark = pytest.mark.slow

START = date(2026, 11, 1)
DAYS = [START + timedelta(days=d) for d in range(7)]
N_USERS, N_ITEMS, RETENTION = 30, 12, 6
POLICIES = [SeenPolicy(lookback_days=3), SeenPolicy(), SeenPolicy(exclude_seen="none")]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    with local_spark("test-seen-snapshot", shuffle_partitions=3) as session:
        yield session


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("seen")
    lake = root / "lake"
    rng = np.random.default_rng(5)
    users = [f"u{n:02d}" for n in range(N_USERS)]
    items = [f"i{n:02d}" for n in range(N_ITEMS)]
    for d, day in enumerate(DAYS):
        # a third of the users each day, 1-3 items each, with repeats across days
        today = users[d % 3 :: 3]
        pairs: list[tuple[str | None, str | None]] = [
            (u, items[j]) for u in today for j in rng.choice(N_ITEMS, rng.integers(1, 4), replace=False)
        ]
        pairs += [("u00", "unknown-item"), ("u01", None)] if d in (1, 5) else []
        pairs += [("early", items[0])] if d == 0 else []
        write_day(lake, day, pairs)
    index = IdIndex(users=tuple(users), items=tuple(items))  # "unknown-item" and "early" are unknown
    model = AlsRecommender(
        index,
        SeenItems(indptr=np.zeros(N_USERS + 1, dtype=np.int64), indices=np.zeros(0, dtype=np.int32)),
        rng.standard_normal((N_USERS, 4)).astype(np.float32),
        rng.standard_normal((N_ITEMS, 4)).astype(np.float32),
        AlsParams(rank=4),
    )
    artifact = root / "artifact"
    model.save(artifact)
    (artifact / "lineage.json").write_text(json.dumps({"window": {"start": str(DAYS[1])}}))
    return {"root": root, "lake": lake, "model": model, "artifact": artifact}


def _as_dict(frame: Any) -> dict[str, list[int]]:
    rows = frame.collect()
    out = {r[COL_USER]: list(r["seen"]) for r in rows}
    assert len(out) == len(rows), "one row per user"
    return out


def _both(spark: Any, lake: Path, model: Any, request: ScoringRequest, policy: SeenPolicy) -> tuple[dict, dict]:
    items = item_table(spark, model)
    train_start = DAYS[1]
    assert covers(Window(request.day, RETENTION), request, policy, train_start) is None
    expected = _as_dict(user_activity(read_interactions(spark, lake), items, request, policy, train_start))
    snapshot = current_snapshot(spark, str(lake), Window(request.day, RETENTION))
    assert snapshot is not None, f"no current snapshot as of {request.day}"
    got = _as_dict(snapshot_activity(spark, snapshot, model.index.items, request, policy, train_start))
    return expected, got


def test_normal_nights_updated_day_by_day_equal_the_window_aggregation(spark: Any, world: dict[str, Any]) -> None:
    lake = world["lake"]
    interactions = read_interactions(spark, lake)
    built = [update_snapshot(spark, interactions, str(lake), Window(day, RETENTION)) for day in DAYS]
    assert built == ["window"] + ["incremental"] * (len(DAYS) - 1)
    assert update_snapshot(spark, interactions, str(lake), Window(DAYS[-1], RETENTION)) == "current"
    cases = [(day, policy, 3) for day in (DAYS[3], DAYS[-1]) for policy in POLICIES] + [(DAYS[-1], POLICIES[0], 1)]
    for day, policy, active_days in cases:
        request = ScoringRequest(day=day, version="v", k=3, active_days=active_days)
        expected, got = _both(spark, lake, world["model"], request, policy)
        assert expected, f"no active users on {day}: the case tests nothing"
        assert got == expected, f"{day}, {policy}, active_days={active_days}"
    subset = ScoringRequest(day=DAYS[-1], version="v", k=3, active_days=3, users=("u00", "u01", "nobody"))
    expected, got = _both(spark, lake, world["model"], subset, POLICIES[0])
    assert got == expected and set(got) <= {"u00", "u01"}


def test_a_backfilled_day_reads_its_own_snapshot_not_later_days(
    spark: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")  # every day, no snapshot yet
    interactions = read_interactions(spark, lake)
    day = DAYS[3]
    assert update_snapshot(spark, interactions, str(lake), Window(day - timedelta(days=1), RETENTION)) == "window"
    assert update_snapshot(spark, interactions, str(lake), Window(day, RETENTION)) == "incremental"
    for policy in POLICIES:
        request = ScoringRequest(day=day, version="v", k=3, active_days=3)
        expected, got = _both(spark, lake, world["model"], request, policy)
        assert got == expected, policy
    dates = (
        spark.read.parquet(current_snapshot(spark, str(lake), Window(day, RETENTION)))
        .selectExpr("max(last_date)")
        .first()[0]
    )
    assert dates == day, "a later day leaked into the backfilled day's snapshot"


def test_a_re_ingested_day_rebuilds_the_snapshot_instead_of_reusing_it(
    spark: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")
    interactions = read_interactions(spark, lake)
    for day in DAYS[:5]:
        update_snapshot(spark, interactions, str(lake), Window(day, RETENTION))
    write_day(lake, DAYS[2], [("u29", "i11"), ("u28", "i10")])  # day 3 re-ingested with other rows
    interactions = read_interactions(spark, lake)
    assert update_snapshot(spark, interactions, str(lake), Window(DAYS[5], RETENTION)) == "window"
    request = ScoringRequest(day=DAYS[5], version="v", k=3, active_days=5)
    expected, got = _both(spark, lake, world["model"], request, POLICIES[1])
    assert got == expected and got["u29"]


def _marked_builds(lake: Path, day: date) -> list[str]:
    folder = Path(snapshot_path(str(lake), day))
    return sorted(b.name for b in folder.glob("build-*") if (b / MARKER).is_file()) if folder.is_dir() else []


def test_builds_in_progress_or_stale_are_never_read_and_stale_ones_go(
    spark: Any, world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run's build still being written, and a build of inputs since re-ingested, sit beside the
    day's snapshot: neither is read; the stale one is deleted after the grace, the one in progress is not."""
    monkeypatch.setenv(GRACE_ENV, "0")
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")
    interactions = read_interactions(spark, lake)
    day = DAYS[4]
    for d in DAYS[:5]:
        update_snapshot(spark, interactions, str(lake), Window(d, RETENTION))
    (stale,) = _marked_builds(lake, day)
    wrong = spark.createDataFrame([("u00", day, [("i00", day)])], "user_id string, last_date date, "
                                  "seen array<struct<item_id:string,last_date:date>>")  # fmt: skip
    in_progress = Path(snapshot_path(str(lake), day)) / "build-29991231T000000Z-inprogr"  # young forever
    wrong.write.parquet(str(in_progress))  # rows, but no marker: its writer has not finished
    write_day(lake, DAYS[3], [("u29", "i11")])  # day 4 re-ingested: the marked build is stale now
    interactions = read_interactions(spark, lake)
    how, path = ensure_snapshot(spark, interactions, str(lake), Window(day, RETENTION))
    assert how == "window" and Path(path).name not in (stale, in_progress.name)
    assert not (Path(snapshot_path(str(lake), day)) / stale).exists(), "the stale build outlived the grace"
    assert in_progress.is_dir(), "a build in progress was deleted under its writer"
    request = ScoringRequest(day=day, version="v", k=3, active_days=5)
    for policy in POLICIES:
        expected, got = _both(spark, lake, world["model"], request, policy)
        assert got == expected and "u29" in got, policy


def test_inputs_changed_during_a_build_leave_no_marked_build(
    spark: Any, world: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day changed while the snapshot is being built (for real: a file is added to a day of the lake
    after the inputs' digest was taken, before the build is written; the hook only times it): the build
    is deleted, never marked; the next run sees the new file and is right."""
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")
    interactions = read_interactions(spark, lake)
    day = DAYS[2]
    from_window = seen_snapshot._from_window

    def re_ingest_meanwhile(rows: Any, window: Window) -> Any:
        extra = pd.DataFrame([("u27", "i09")], columns=[COL_USER, COL_ITEM])
        extra[COL_TS] = pd.Timestamp(DAYS[1], tz="UTC")
        extra.to_parquet(lake / "interactions" / f"event_date={DAYS[1]}" / "part-1.parquet", index=False)
        return from_window(rows, window)

    monkeypatch.setattr(seen_snapshot, "_from_window", re_ingest_meanwhile)
    with pytest.raises(SnapshotRaced, match="changed while the seen snapshot"):
        ensure_snapshot(spark, interactions, str(lake), Window(day, RETENTION))
    assert _marked_builds(lake, day) == [] and not list(Path(snapshot_path(str(lake), day)).glob("build-*"))
    monkeypatch.setattr(seen_snapshot, "_from_window", from_window)
    interactions = read_interactions(spark, lake)
    assert update_snapshot(spark, interactions, str(lake), Window(day, RETENTION)) == "window"
    request = ScoringRequest(day=day, version="v", k=3, active_days=3)
    expected, got = _both(spark, lake, world["model"], request, POLICIES[1])
    assert got == expected and "u27" in got


def test_neighbouring_days_built_at_the_same_time_both_equal_the_aggregation(
    spark: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    """Two days scored at once on one lake (two threads, one Spark session): day D+1 may start before
    day D's snapshot is marked; each reads only marked builds of its own inputs, so both are right."""
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")
    interactions = read_interactions(spark, lake)
    update_snapshot(spark, interactions, str(lake), Window(DAYS[2], RETENTION))
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(ensure_snapshot, spark, interactions, str(lake), Window(d, RETENTION)) for d in DAYS[3:5]]
        hows = [r.result()[0] for r in runs]
    assert hows[0] == "incremental" and hows[1] in ("incremental", "window")
    for day in DAYS[3:5]:
        assert len(_marked_builds(lake, day)) == 1
        request = ScoringRequest(day=day, version="v", k=3, active_days=3)
        for policy in POLICIES:
            expected, got = _both(spark, lake, world["model"], request, policy)
            assert got == expected, (day, policy)


def _partition_hashes(lake: Path, day: date) -> dict[str, str]:
    folder = lake / scores_partition(day)
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.glob("*.parquet"))}


def test_the_job_publishes_the_same_bytes_from_the_snapshot_and_from_the_window(
    spark: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    shutil.copytree(world["lake"] / "interactions", lake / "interactions")
    day = DAYS[-1]
    request = ScoringRequest(day=day, version="als-seen", k=3, active_days=3)
    run = {"spark": spark, "artifact_dir": world["artifact"], "request": request, "lake_root": str(lake)}
    run_batch_scoring(**run, seen_retention_days=2)  # active window longer than the retention: aggregation
    assert not (lake / "seen").exists(), "the aggregation path must not need the seen table"
    from_window = _partition_hashes(lake, day)
    run_batch_scoring(**run, seen_retention_days=RETENTION)
    assert (lake / "seen" / f"snapshot_date={day}").is_dir()
    assert from_window and _partition_hashes(lake, day) == from_window
