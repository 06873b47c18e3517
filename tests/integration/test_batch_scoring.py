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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lake_support import local_spark, write_day

from recflow.batch.checks import ExpectedUsers, user_checks
from recflow.batch.job import run_batch_scoring
from recflow.batch.layout import SCORE_COLUMNS, ScoringRequest, read_summary, scores_partition
from recflow.batch.publish import SUITE, ScoresRejected, reports_partition, suite_params, user_facts
from recflow.batch.staging import bucket_of
from recflow.config.s3 import s3_client
from recflow.constants import COL_ITEM, COL_USER
from recflow.data.lake import LocalLake
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.artifact import load_recommender
from recflow.models.index import IdIndex, SeenItems
from recflow.scoring.calibration import Calibration
from recflow.scoring.core import Ragged, ScoringError
from recflow.services.faults import InjectedFault
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request, parse_request

ROOT = Path(__file__).resolve().parents[2]
START = date(2026, 11, 1)
TRAIN_DAYS = 3  # the model is trained on START .. START + 2
DAY = START + timedelta(days=5)  # the scored day
N_USERS, N_ITEMS, K = 60, 30, 5


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    with local_spark("test-batch-scoring", shuffle_partitions=4) as session:
        yield session


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
        write_day(lake, START + timedelta(days=d), train_pairs[d::TRAIN_DAYS])
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
    write_day(lake, START + timedelta(days=4), after)
    write_day(lake, DAY, [(u, items[1]) for u in users[2:10]])
    artifact = root / "artifact"
    model.save(artifact)
    Calibration("isotonic", x=(-3.0, 0.0, 3.0), y=(0.01, 0.2, 0.9)).save(artifact)
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


def test_batch_and_streaming_give_the_same_propensity_for_the_same_pair(
    world: dict[str, Any], published: dict[str, Any]
) -> None:
    """The Spark job's workers and the Kafka scorer's answer path, on one calibrated artifact."""
    scores = published["scores"]
    model_rows = scores[scores["source"] == "model"]
    assert model_rows["propensity"].between(0.01, 0.9).all() and model_rows["propensity"].nunique() > 1
    assert scores.loc[scores["source"] == "fallback", "propensity"].isna().all()
    users = sorted(model_rows[COL_USER].unique())[:8]
    requests = []
    for i, user in enumerate(users):
        body = json.dumps({"request_id": f"r{i}", "user_id": user, "k": K}).encode()
        parsed = parse_request(body, None, partition=0, offset=i, timestamp_ms=0)
        assert isinstance(parsed, Request)
        requests.append(parsed)
    answers = score_requests(load_recommender(world["artifact"]), requests)
    streamed = {
        (user, item): p
        for user, answer in zip(users, answers, strict=True)
        for item, p in zip(answer.items, answer.propensities, strict=True)
    }
    batch = {(r[COL_USER], r[COL_ITEM]): r["propensity"] for _, r in model_rows.iterrows() if r[COL_USER] in users}
    shared = streamed.keys() & batch.keys()
    assert len(shared) >= len(users)  # most pairs agree; the lake's later purchases remove a few in batch
    assert {pair: streamed[pair] for pair in shared} == {pair: batch[pair] for pair in shared}


def test_rows_are_one_version_ranked_and_sorted(published: dict[str, Any]) -> None:
    scores = published["scores"]
    assert list(scores.columns) == [*SCORE_COLUMNS] == [
        "user_id", "rank", "item_id", "score", "model_version", "source", "propensity", "logging_propensity"
    ]  # fmt: skip
    assert set(scores["model_version"]) == {"als-test"}
    assert not scores.duplicated([COL_USER, "rank"]).any() and np.isfinite(scores["score"]).all()
    assert (scores.groupby(COL_USER)["score"].diff().dropna() <= 0).all()


def test_re_run_writes_byte_identical_partition(spark: Any, world: dict[str, Any], published: dict[str, Any]) -> None:
    _run(spark, world)
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]


def test_batch_publish_interrupted_before_commit_keeps_the_day_whole(
    spark: Any, world: dict[str, Any], published: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job crashes at ``batch.publish.before_commit`` (scores checked and written as an attempt, not
    committed) while re-scoring the day under another version: the published day is untouched, and the
    retry publishes the same bytes as before."""
    monkeypatch.setenv("RECFLOW_FAULTS", "batch.publish.before_commit=raise:batch task killed")
    with pytest.raises(InjectedFault, match="batch task killed"):
        _run(spark, world, version="als-other")
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]
    assert read_summary(world["lake"], DAY)["model_version"] == "als-test"
    monkeypatch.delenv("RECFLOW_FAULTS")
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
    broken_users = set(model.index.users[:5])
    short = next(r for r in report["failed"] if r["reason"] == "rows_per_user_not_min_k_unseen")
    assert short["sample_ids"] and set(short["sample_ids"]) <= broken_users, short
    assert report["failed_rows"] and set(report["failed_rows"]) <= broken_users


def test_window_without_active_users_fails_clearly(spark: Any, world: dict[str, Any]) -> None:
    with pytest.raises(ScoringError, match="no active users in the 1 day"):
        _run(spark, world, day=DAY + timedelta(days=3), active_days=1)


def test_empty_day_inside_the_active_window_still_scores(spark: Any, world: dict[str, Any]) -> None:
    summary = _run(spark, world, day=DAY + timedelta(days=1), active_days=2, users=("u002", "u003"))
    assert summary["active_users"] == 2 and summary["rows"] == 2 * K


# ------------------------------------------------------------------ registry failures (real S3 server)


def _ensure_bucket(settings: Any) -> None:
    client = s3_client(settings.s3)
    if settings.s3.models_bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=settings.s3.models_bucket)


def test_no_champion_and_unknown_pin_fail_clearly(live_services: Any) -> None:
    from recflow.registry import ModelNotFound, ModelRegistry, NoChampion, resolve_serving_version  # deferred: botocore

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
    from recflow.registry import ModelRegistry  # deferred: botocore (collecting the unit tests imports this module)
    from recflow.registry.blessing import bless  # deferred: botocore, as above

    _ensure_bucket(live_services)
    registry = ModelRegistry.from_settings(live_services)
    run_id = f"tampered-{uuid.uuid4().hex[:8]}"  # unique content, so a new version every session
    model = registry.register(world["artifact"], family="als", metrics={"ndcg@10": 0.1}, lineage={"run_id": run_id},
                              created_at=datetime(2026, 11, 4, tzinfo=UTC))  # fmt: skip
    bless(registry, model, kind="model", passed=True, reasons=["test"], details={})  # a pin must be blessed
    version = model.version
    client = s3_client(live_services.s3)
    listed = client.list_objects_v2(Bucket=live_services.s3.models_bucket, Prefix=f"registry/versions/{version}/")
    # the item factors (schema 2 keeps them in the item table)
    key = next(o["Key"] for o in listed["Contents"] if o["Key"].endswith("items.parquet"))
    client.put_object(Bucket=live_services.s3.models_bucket, Key=key, Body=b"tampered")
    job = [sys.executable, str(ROOT / "spark_jobs" / "batch_score.py"), "--lake", str(world["lake"]),
           "--date", str(DAY), "--k", str(K), "--active-days", "3", "--version", version,
           "--digest", model.digest]  # fmt: skip
    done = subprocess.run(job, capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 1, done.stderr[-2000:]
    assert "batch_score failed: ChecksumMismatch" in done.stderr
    assert LocalLake(world["lake"]).files(scores_partition(DAY)) == published["files"]


def _staged(rows: list[tuple[Any, ...]]) -> Any:
    """Staged score rows as a Parquet file holds them (a NaN score stays NaN, a None stays null). A row's
    calibrated propensity is its 7th field when it has one, else 0.5 on model rows and null on the others
    (the scoring core's rule for a calibrated model); the logging propensity is null."""
    import pyarrow as pa

    propensity = [row[6] if len(row) > 6 else 0.5 if row[5] == "model" else None for row in rows]
    columns = [*zip(*(row[:6] for row in rows), strict=True), propensity, [None] * len(rows)]
    types = [pa.string(), pa.int32(), pa.string(), pa.float64(), pa.string(), pa.string(), pa.float64(), pa.float64()]
    return pa.table(
        {name: pa.array(list(values), type=t) for name, values, t in zip(SCORE_COLUMNS, columns, types, strict=True)}
    )


def _one_defect_per_user(model: AlsRecommender) -> tuple[list[str], list[tuple[Any, ...]], list[str], Ragged]:
    """Staged rows, shuffled, in which each of ``u[0]`` .. ``u[10]`` (``u``: the known users but u000 and
    u001) breaks one rule, beside one good user, a user not requested ("stranger"), a fallback user and an
    exhausted one (u001, no rows). Returns ``u``, the rows, the requested users and their seen items."""
    items = list(model.index.items)
    known = [u for u in model.index.users if u not in ("u000", "u001")]
    seen_of = {known[3]: [items[2]]}
    good = {u: [(u, r, items[10 + r], 1.0 - r / 10, "v1", "model") for r in range(1, K + 1)] for u in known[:12]}
    broken: dict[str, list[tuple[Any, ...]]] = {**good}
    u = known
    broken[u[0]] = [(u[0], r if r != 3 else 2, *row[2:]) for r, row in zip(range(1, K + 1), good[u[0]], strict=True)]
    broken[u[1]] = [*good[u[1]][:2], (u[1], 3, items[13], 5.0, "v1", "model"), *good[u[1]][3:]]
    broken[u[2]] = good[u[2]][:-1]  # one row short of min(k, unseen)
    broken[u[3]] = [(u[3], 1, items[2], 1.0, "v1", "model"), *good[u[3]][1:]]  # its seen item
    broken[u[4]] = [(u[4], 1, "no-such-item", 1.0, "v1", "model"), *good[u[4]][1:]]
    broken[u[5]] = [*good[u[5]][:-1], (u[5], K, items[10 + K], 0.4, "v2", "model")]
    broken[u[6]] = [(u[6], 1, items[11], float("nan"), "v1", "model"), *good[u[6]][1:]]
    broken[u[7]] = [*good[u[7]][:-1], (u[7], K, items[10 + K], 0.4, "v1", "fallback")]
    broken[u[8]] = [*good[u[8]][:-1], (u[8], K, items[11], 0.4, "v1", "model")]  # item of rank 1 again
    broken[u[9]] = [*good[u[9]][:3], good[u[9]][4]]  # ranks 1, 2, 3, 5
    broken[u[10]] = [(*good[u[10]][0], 1.5), *good[u[10]][1:]]  # a propensity above 1
    broken["stranger"] = [("stranger", r, items[r], 0.5, "v1", "fallback") for r in range(1, K + 1)]
    broken["new-user"] = [("new-user", r, items[r], 1.0 / r, "v1", "fallback") for r in range(1, K + 1)]
    rows = [row for user_rows in broken.values() for row in user_rows]
    rows = [rows[i] for i in np.random.default_rng(3).permutation(len(rows))]  # files need not be sorted
    requested = [*known[:12], "new-user", "u001"]  # u001 saw every item: exhausted, no rows
    seen_of["u001"] = items
    seen = Ragged.from_lists([sorted(items.index(i) for i in seen_of.get(x, [])) for x in requested])
    return u, rows, requested, seen


def test_per_user_checks_flag_each_broken_user_and_match_the_row_level_truth(world: dict[str, Any]) -> None:
    """Staged rows with one defect per user, in shuffled order: the per-user frame counts exactly that
    defect for exactly that user, the suite (run in several chunks) fails with those reasons and names
    those users, and the summary's counts are those of the inputs."""
    import pyarrow as pa

    # deferred: great_expectations (collecting the unit tests imports this module too)
    from recflow.validation import load_suite_spec, validate_frame
    from recflow.validation.chunked import run_suite_in_chunks  # deferred: great_expectations, as above

    model = load_recommender(world["artifact"])  # as the job loads it: with its calibration map
    assert isinstance(model, AlsRecommender) and model.calibration is not None
    u, rows, requested, seen = _one_defect_per_user(model)
    codes = dict(zip(model.index.users, range(model.index.n_users), strict=False))
    user_codes = np.array([codes.get(x, -1) for x in requested], dtype=np.int64)
    inputs = ExpectedUsers.of_batch(model, K, pa.array(requested), user_codes, seen)
    request = ScoringRequest(day=DAY, version="v1", k=K, active_days=1)
    params = suite_params(model, request)
    frame = user_checks(_staged(rows), inputs, pa.array(list(model.index.items))).to_pandas()
    whole = frame.set_index(COL_USER)
    # a NaN score, which Spark orders above every number, is out of order too
    flagged = {
        "duplicate_ranks": [u[0]], "scores_out_of_order": [u[1], u[6]], "seen_items": [u[3]],
        "unknown_items": [u[4]], "nonfinite_scores": [u[6]], "wrong_source_rows": [u[7]], "duplicate_items": [u[8]],
        "bad_calibrated_propensity_rows": [u[10]],  # a propensity above 1 (u[7]'s fallback row has none: right)
    }  # fmt: skip
    for column, users in flagged.items():
        assert sorted(whole.loc[whole[column] > 0].index) == users, column
    assert whole.loc[u[2], "user_rows"] == K - 1 and whole.loc[u[5], "version_max"] == "v2"
    assert whole.loc["u001", ["user_rows", "expected_rows"]].tolist() == [0, 0]
    assert pd.isna(whole.loc["stranger", "expected_rows"]) and whole.loc["new-user", "expected_source"] == "fallback"

    bucket = bucket_of(pa.array(frame[COL_USER]), 4)
    results, facts = run_suite_in_chunks(
        (frame[bucket == b] for b in range(4)), load_suite_spec(SUITE), params, group_col=COL_USER, facts=user_facts
    )
    failed = {r["reason"]: r for r in results if not r["success"]}
    expected = {
        "duplicate_rank": u[0], "ranks_not_contiguous": u[9], "scores_not_sorted_descending": u[1],
        "rows_per_user_not_min_k_unseen": u[2], "seen_item_recommended": u[3], "unknown_item": u[4],
        "wrong_model_version": u[5], "score_not_finite": u[6], "wrong_source": u[7],
        "duplicate_recommendation": u[8], "user_not_requested": "stranger",
        "propensity_missing_stray_or_out_of_range": u[10],
    }  # fmt: skip
    assert set(failed) == set(expected)
    for reason, user in expected.items():
        assert user in failed[reason]["sample_ids"], (reason, failed[reason])
    pandas_whole = validate_frame(whole.reset_index(), SUITE, params, raise_on_failure=False).failed
    assert {(r["reason"], r["unexpected_count"]) for r in failed.values()} <= {
        (r["reason"], r["unexpected_count"]) for r in pandas_whole
    }
    assert facts == {"rows": len(rows), "users_scored": 14, "users_exhausted": 1, "users_fallback": 1,
                     "active_users": len(requested)}  # fmt: skip


# --------------------------------------------------------------------------- offers beside the scores
def _catalog(path: Path, rows: list[str]) -> str:
    path.write_bytes("".join(f"{r}\r\n" for r in rows).encode())
    return str(path)


@pytest.fixture
def own_lake(world: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The world's lake copied, so offer runs never touch the partitions the other tests compare."""
    import shutil

    lake = tmp_path / "lake"
    shutil.copytree(world["lake"], lake, ignore=shutil.ignore_patterns("scores", "score_reports", "offers"))
    return {**world, "lake": lake}


def test_offers_are_published_with_the_scores_and_follow_the_rule(spark: Any, own_lake: dict[str, Any]) -> None:
    from recflow.batch.layout import offers_partition
    from recflow.batch.offers import OFFER_COLUMNS
    from recflow.data.offers import read_catalog

    thresholds = {f"i{n:03d}": (0, 1, 150, 999, 1000)[n % 5] for n in range(20)}  # i020..i029: no offer
    catalog = _catalog(
        own_lake["lake"].parent / "offers.csv", [f"{i},{i} offer,{i} reward,{t}" for i, t in thresholds.items()]
    )
    summary = _run(spark, own_lake, offer_catalog=catalog)
    scores = pd.read_parquet(own_lake["lake"] / scores_partition(DAY))
    offers = pd.read_parquet(own_lake["lake"] / offers_partition(DAY))
    assert tuple(offers.columns) == OFFER_COLUMNS
    with_offer = scores[scores[COL_ITEM].isin(list(thresholds))]
    assert len(offers) == len(with_offer) and set(offers[COL_ITEM]) <= set(thresholds)
    for row in offers.itertuples():
        p = row.propensity
        assert row.threshold == thresholds[row.item_id]
        assert row.eligible == (not pd.isna(p) and int(1000 * p) >= row.threshold)
    assert (offers["catalog_digest"] == read_catalog(catalog).digest).all()
    facts = summary["offers"]
    assert facts["offer_rows"] == len(offers) and facts["eligible_rows"] == int(offers["eligible"].sum())
    assert facts["rows_without_offer"] == len(scores) - len(with_offer)
    assert facts["items_without_offer"] == scores.loc[~scores[COL_ITEM].isin(list(thresholds)), COL_ITEM].nunique()
    assert 0 < facts["eligible_rows"] < facts["offer_rows"]
    first = LocalLake(own_lake["lake"]).files(offers_partition(DAY))
    _run(spark, own_lake, offer_catalog=catalog)
    assert LocalLake(own_lake["lake"]).files(offers_partition(DAY)) == first  # re-runs are byte-identical


def test_offers_and_scores_are_published_together_or_not_at_all(
    spark: Any, own_lake: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recflow.batch import offers as batch_offers
    from recflow.batch.layout import offers_partition
    from recflow.data.offers import OfferCatalogError

    lake = LocalLake(own_lake["lake"])
    bad = _catalog(own_lake["lake"].parent / "bad.csv", ["i000,a,b,5", "i001,a,b,5000"])
    with pytest.raises(OfferCatalogError, match="row 2: threshold_out_of_range"):
        _run(spark, own_lake, offer_catalog=bad)
    assert not lake.exists(scores_partition(DAY)) and not lake.exists(offers_partition(DAY))

    real_rows = batch_offers.offer_rows

    def out_of_range(scores: Any, catalog: Any) -> Any:
        import pyarrow as pa

        table, without = real_rows(scores, catalog)
        index = table.schema.get_field_index("propensity")
        return table.set_column(index, "propensity", pa.array([2.0] * table.num_rows)), without

    monkeypatch.setattr(batch_offers, "offer_rows", out_of_range)  # offers a real catalog cannot produce
    good = _catalog(own_lake["lake"].parent / "good.csv", ["i000,a,b,5", "i001,a,b,500"])
    with pytest.raises(batch_offers.OffersRejected, match="propensity_out_of_range"):
        _run(spark, own_lake, offer_catalog=good)
    assert not lake.exists(scores_partition(DAY)) and not lake.exists(offers_partition(DAY))
    monkeypatch.undo()
    # a crash after both tables are written and checked, before the one commit: neither is visible
    monkeypatch.setenv("RECFLOW_FAULTS", "batch.publish.before_commit=raise:batch task killed")
    with pytest.raises(InjectedFault, match="batch task killed"):
        _run(spark, own_lake, offer_catalog=good)
    assert not lake.exists(scores_partition(DAY)) and not lake.exists(offers_partition(DAY))
    monkeypatch.delenv("RECFLOW_FAULTS")
    _run(spark, own_lake, offer_catalog=good)
    assert lake.exists(scores_partition(DAY)) and lake.exists(offers_partition(DAY))
