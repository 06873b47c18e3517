"""Batch scoring on real Spark: seen items from the lake, exhausted and unknown users, validated publish.

The lake is written directly as validated partitions; the model is a real ALS artifact (factors chosen
so the test knows what it would rank first). Each run is the job's own ``run_batch_scoring``: the Spark
joins, the ``mapInArrow`` workers, the GX suite on the staged files, and the publish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.batch_scoring import ScoringRequest, run_batch_scoring, scores_partition
from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.data.stores import LocalLake
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.artifact import IdIndex, SeenItems
from recflow.score_publishing import ScoresRejected, reports_partition
from recflow.scoring import ScoringError

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 11, 1)
TRAIN_DAYS = 3  # the model is trained on START .. START + 2
DAY = START + timedelta(days=5)  # the scored day
N_USERS, N_ITEMS, K = 60, 30, 5


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from recflow.spark import get_spark

    session = get_spark("test-batch-scoring", master="local[2]", conf={"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


def _write_day(lake: Path, day: date, pairs: list[tuple[str, str]]) -> None:
    folder = lake / "interactions" / f"event_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(pairs, columns=[COL_USER, COL_ITEM]).assign(**{COL_TS: pd.Timestamp(day, tz="UTC")})
    frame.to_parquet(folder / "part-0.parquet", index=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A lake, an ALS artifact trained on its first days, and the facts the tests check against."""
    root = tmp_path_factory.mktemp("batch")
    lake = root / "lake"
    rng = np.random.default_rng(7)
    users = [f"u{n:03d}" for n in range(N_USERS)]
    items = [f"i{n:03d}" for n in range(N_ITEMS)]
    train_pairs = [(u, items[j]) for u in users for j in rng.choice(N_ITEMS, 4, replace=False)]
    for d in range(TRAIN_DAYS):
        _write_day(lake, START + timedelta(days=d), train_pairs[d::TRAIN_DAYS])
    train = pd.DataFrame(train_pairs, columns=[COL_USER, COL_ITEM])
    index = IdIndex.from_frame(train)
    model = AlsRecommender(
        index,
        SeenItems.from_frame(train, index),
        rng.standard_normal((index.n_users, 8)).astype(np.float32),
        rng.standard_normal((index.n_items, 8)).astype(np.float32),
        AlsParams(rank=8),
    )
    # After training: u000 buys the item the model ranks first for it among unseen ones; u001 buys
    # everything (exhausted); "new-user" appears (unknown to the model: fallback).
    scores = model.score(index.user_codes(["u000"]))[0]
    scores[model.seen.ragged(index.user_codes(["u000"])).values] = -np.inf
    later_item = index.items[int(np.argmax(scores))]
    after = [("u000", later_item), *(("u001", i) for i in items), ("new-user", items[0])]
    _write_day(lake, START + timedelta(days=4), after)
    _write_day(lake, DAY, [(u, items[1]) for u in users[2:10]])
    artifact = root / "artifact"
    model.save(artifact)
    (artifact / "lineage.json").write_text(json.dumps({"window": {"start": str(START)}}))
    return {"lake": lake, "artifact": artifact, "later_item": later_item, "model": model}


def _run(spark: Any, world: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    artifact = overrides.pop("artifact", world["artifact"])
    request = ScoringRequest(**{"day": DAY, "version": "als-test", "k": K, "active_days": 3, **overrides})
    return run_batch_scoring(spark, artifact_dir=artifact, request=request, lake_root=str(world["lake"]))


@pytest.fixture(scope="module")
def published(spark: Any, world: dict[str, Any]) -> dict[str, Any]:
    summary = _run(spark, world)
    scores = pd.read_parquet(world["lake"] / scores_partition(DAY))
    return {"summary": summary, "scores": scores, "files": LocalLake(world["lake"]).files(scores_partition(DAY))}


def test_item_bought_after_the_training_window_is_never_recommended(
    published: dict[str, Any], world: dict[str, Any]
) -> None:
    scores = published["scores"]
    u000 = scores[scores[COL_USER] == "u000"]
    assert len(u000) == K and world["later_item"] not in set(u000[COL_ITEM])
    lake = pd.read_parquet(world["lake"] / "interactions")
    seen = lake[[COL_USER, COL_ITEM]].drop_duplicates()
    assert scores.merge(seen, on=[COL_USER, COL_ITEM]).empty, "a seen (user, item) pair was recommended"


def test_user_who_saw_every_item_is_counted_exhausted_not_failed(published: dict[str, Any]) -> None:
    summary = published["summary"]
    assert summary["users_exhausted"] == 1
    assert "u001" not in set(published["scores"][COL_USER])
    assert summary["users_scored"] + summary["users_exhausted"] == summary["active_users"]


def test_unknown_user_gets_marked_fallback_rows_in_unit_range(published: dict[str, Any]) -> None:
    scores = published["scores"]
    new = scores[scores[COL_USER] == "new-user"]
    assert len(new) == K and set(new["source"]) == {"fallback"}
    assert new["score"].between(0, 1).all() and new["score"].is_monotonic_decreasing
    assert set(scores.loc[scores[COL_USER] != "new-user", "source"]) == {"model"}
    assert published["summary"]["users_fallback"] == 1


def test_rows_are_one_version_ranked_and_sorted(published: dict[str, Any]) -> None:
    scores = published["scores"]
    assert list(scores.columns) == ["user_id", "rank", "item_id", "score", "model_version", "source"]
    assert set(scores["model_version"]) == {"als-test"}
    assert not scores.duplicated([COL_USER, "rank"]).any() and np.isfinite(scores["score"]).all()
    assert (scores.groupby(COL_USER)["score"].diff().dropna() <= 0).all()


def test_re_run_writes_byte_identical_partition(spark: Any, world: dict[str, Any], published: dict[str, Any]) -> None:
    _run(spark, world)
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]


def test_output_failing_the_suite_keeps_the_previous_partition(
    spark: Any, world: dict[str, Any], published: dict[str, Any], tmp_path: Path
) -> None:
    """A broken model (NaN factors for some users) yields fewer rows than min(k, unseen): rejected."""
    model: AlsRecommender = world["model"]
    factors = model.user_factors.copy()
    factors[:5] = np.nan
    broken = AlsRecommender(model.index, model.seen, factors, model.item_factors, model.params)
    broken.save(tmp_path / "broken")
    (tmp_path / "broken" / "lineage.json").write_text((world["artifact"] / "lineage.json").read_text())
    with pytest.raises(ScoresRejected, match="rows_per_user_not_min_k_unseen") as info:
        _run(spark, world, artifact=tmp_path / "broken")
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]
    report = json.loads((world["lake"] / reports_partition(DAY) / "report.json").read_text())
    assert report["published"] is False and info.value.report_uri.endswith(reports_partition(DAY))


def test_window_without_active_users_fails_clearly(spark: Any, world: dict[str, Any]) -> None:
    with pytest.raises(ScoringError, match="no active users in the 1 day"):
        _run(spark, world, day=DAY + timedelta(days=3), active_days=1)


def test_empty_day_inside_the_active_window_still_scores(spark: Any, world: dict[str, Any]) -> None:
    summary = _run(spark, world, day=DAY + timedelta(days=1), active_days=2, users=("u002", "u003"))
    assert summary["active_users"] == 2 and summary["rows"] == 2 * K


# ------------------------------------------------------------------ registry failures (real S3 server)


def _ensure_bucket(settings: Any) -> None:
    from recflow.storage import s3_client

    client = s3_client(settings.s3)
    if settings.s3.models_bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=settings.s3.models_bucket)


def test_no_champion_and_unknown_pin_fail_clearly(live_services: Any) -> None:
    from datetime import UTC, datetime

    from recflow.registry import ModelNotFound, ModelRegistry, NoChampion, resolve_serving_version

    _ensure_bucket(live_services)
    empty = ModelRegistry.from_settings(live_services, prefix=f"empty-{uuid.uuid4().hex[:8]}")
    with pytest.raises(NoChampion, match="no champion yet"):
        resolve_serving_version(empty, interval_end=datetime(2026, 11, 6, tzinfo=UTC))
    with pytest.raises(ModelNotFound, match="not found"):
        resolve_serving_version(empty, pinned="als-nosuchversion")


def test_tampered_artifact_is_refused_and_yesterday_kept(
    live_services: Any, world: dict[str, Any], published: dict[str, Any]
) -> None:
    """The job's own entry point refuses an artifact whose bytes changed in S3; nothing is published."""
    from datetime import UTC, datetime

    from recflow.registry import ModelRegistry
    from recflow.storage import s3_client

    _ensure_bucket(live_services)
    registry = ModelRegistry.from_settings(live_services)
    run_id = f"tampered-{uuid.uuid4().hex[:8]}"  # unique content, so a new version every session
    model = registry.register(world["artifact"], family="als", metrics={}, lineage={"run_id": run_id},
                              created_at=datetime(2026, 11, 4, tzinfo=UTC))  # fmt: skip
    version = model.version
    client = s3_client(live_services.s3)
    listed = client.list_objects_v2(Bucket=live_services.s3.models_bucket, Prefix=f"registry/versions/{version}/")
    # the item factors (schema 2 keeps them in the item table)
    key = next(o["Key"] for o in listed["Contents"] if o["Key"].endswith("items.parquet"))
    client.put_object(Bucket=live_services.s3.models_bucket, Key=key, Body=b"tampered")
    job = [sys.executable, str(ROOT / "spark_jobs" / "batch_score.py"), "--lake", str(world["lake"]),
           "--date", str(DAY), "--k", str(K), "--active-days", "3", "--version", version]  # fmt: skip
    done = subprocess.run(job, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "batch_score failed: ChecksumMismatch" in done.stderr
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]


def test_suite_on_spark_workers_gives_the_whole_frame_verdicts(spark: Any) -> None:
    """The suite run chunk by chunk on the workers (chunks of 3 rows here) flags exactly what GX gives on
    the whole frame in one pandas run: the same failed reasons with the same unexpected counts."""
    from recflow.validation import SCORES_SUITE, load_suite_spec, validate_frame
    from recflow.validation.partitioned import run_suite_on_partitions

    users = [f"u{n}" for n in range(8) for _ in range(2)]
    frame = pd.DataFrame({
        COL_USER: users, "rank": [1, 2] * 8, COL_ITEM: ["a", "b"] * 8, "score": [0.9, 0.1] * 8,
        "model_version": ["v1"] * 16, "source": ["model"] * 16, "expected_rows": [2] * 16,
        "expected_source": ["model"] * 16, "user_rows": [2] * 16, "user_max_rank": [2] * 16,
        "score_drop": [None, 0.8] * 8, "is_seen": [False] * 16, "item_known": [True] * 16,
        "source_matches": [True] * 16, "score_finite": [True] * 16, "model_score": [0.9, 0.1] * 8,
        "fallback_score": [None] * 16, "row_complete": [True] * 16,
    })  # fmt: skip
    frame.loc[3, "is_seen"] = True
    frame.loc[[6, 7], "rank"] = 1  # u3: duplicate rank
    frame.loc[9, "model_version"] = "v2"
    frame.loc[[12, 13], "user_rows"] = 1
    frame.loc[15, "score_drop"] = -0.5
    params = {"k": 2, "version_set": ["v1"], "score_min": -1.0, "score_max": 1.0}
    whole = validate_frame(frame, SCORES_SUITE, params, raise_on_failure=False).failed
    check = spark.createDataFrame(frame).repartition(3, COL_USER).sortWithinPartitions(COL_USER, "rank")
    results, facts = run_suite_on_partitions(
        check, load_suite_spec(SCORES_SUITE), params, group_col=COL_USER, chunk_rows=3,
        facts=lambda chunk: {"users": chunk[COL_USER].nunique()},
    )  # fmt: skip
    chunked = [r for r in results if not r["success"]]
    assert {(r["reason"], r["unexpected_count"]) for r in chunked} == {
        (r["reason"], r["unexpected_count"]) for r in whole
    }
    assert {r["reason"] for r in chunked} >= {
        "seen_item_recommended",
        "duplicate_rank",
        "wrong_model_version",
        "rows_per_user_not_min_k_unseen",
        "scores_not_sorted_descending",
    }
    assert facts == {"users": 8}
