"""Staged score files written by the scoring tasks: same bytes every time, checks bucketed by user."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.batch.checks import ExpectedUsers, user_checks
from recflow.batch.layout import SCORE_COLUMNS, ScoringRequest
from recflow.batch.publish import SUITE, _check_chunks, _reconcile, _staged_files, suite_params, user_facts
from recflow.batch.staging import TMP_SUFFIX, StagedFiles, StagingPlan, bucket_of
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.index import IdIndex, SeenItems
from recflow.scoring.calibration import Calibration
from recflow.scoring.core import Ragged, ScoringError

K = 3
ITEMS = [f"i{n}" for n in range(6)]


def _model(calibrated: bool = True) -> AlsRecommender:
    index = IdIndex(users=("a", "b", "x"), items=tuple(ITEMS))
    seen = SeenItems(indptr=np.zeros(4, dtype=np.int64), indices=np.zeros(0, dtype=np.int32))
    factors = np.ones((3, 2), dtype=np.float32)
    model = AlsRecommender(index, seen, factors, np.ones((len(ITEMS), 2), dtype=np.float32), AlsParams(rank=2))
    model.calibration = Calibration("platt", a=1.0, b=0.0) if calibrated else None
    return model


def _rows(users: list[str]) -> pa.RecordBatch:
    """K model rows per user, scores descending, none of them seen."""
    n = len(users)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.repeat(users, K).tolist()),
            pa.array(np.tile(np.arange(1, K + 1), n), type=pa.int32()),
            pa.array([ITEMS[r] for _ in users for r in range(K)]),
            pa.array(np.tile([0.9, 0.5, 0.1], n), type=pa.float64()),
            pa.array(["v1"] * n * K),
            pa.array(["model"] * n * K),
            pa.array([0.5] * n * K, type=pa.float64()),
            pa.array([None] * n * K, type=pa.float64()),
        ],
        names=list(SCORE_COLUMNS),
    )


def _stage(plan: StagingPlan, partition: int, users: list[str]) -> pa.RecordBatch | None:
    model = _model()
    files = StagedFiles(plan, partition, pa.array(ITEMS))
    codes = np.asarray(model.index.user_codes(users), dtype=np.int64)
    files.add(_rows(users), ExpectedUsers.of_batch(model, K, pa.array(users), codes, Ragged.empty(len(users))))
    return files.flush()


def _plan(root: Path, buckets: int = 3) -> StagingPlan:
    (root / "scores").mkdir(parents=True)
    return StagingPlan(str(root / "scores"), str(root / "checks"), buckets=buckets)


def test_a_staged_file_is_the_rows_and_the_same_bytes_every_time(tmp_path: Path) -> None:
    first, second = _plan(tmp_path / "1"), _plan(tmp_path / "2")
    report = _stage(first, 4, ["a", "b"])
    _stage(second, 4, ["a", "b"])
    assert report is not None and report.to_pylist() == [{"file": "part-00004-000.parquet", "users": 2, "rows": 6}]
    written = Path(first.scores_dir) / "part-00004-000.parquet"
    assert pq.read_table(written).to_pylist() == pa.Table.from_batches([_rows(["a", "b"])]).to_pylist()
    assert written.read_bytes() == (Path(second.scores_dir) / written.name).read_bytes()
    assert not list(Path(first.scores_dir).glob(".*")), "no temporary file is left behind"


def test_nothing_pending_writes_nothing(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    assert StagedFiles(plan, 0, pa.array(ITEMS)).flush() is None
    assert not list(Path(plan.scores_dir).iterdir())


def test_bucket_of_is_stable_and_in_range() -> None:
    users = pa.array([f"u{n}" for n in range(1000)])
    buckets = bucket_of(users, 7)
    assert buckets.min() >= 0 and buckets.max() < 7 and len(set(buckets.tolist())) == 7
    assert np.array_equal(buckets, bucket_of(pa.array(users.to_pylist()[::-1]), 7)[::-1])


def test_a_user_staged_by_two_tasks_fails_the_suite_whatever_bucket(tmp_path: Path) -> None:
    """Both tasks' check rows for "x" land in one bucket, so the chunked suite sees the duplicate."""
    from recflow.validation import load_suite_spec
    from recflow.validation.chunked import run_suite_in_chunks

    plan = _plan(tmp_path)
    reports = [_stage(plan, 0, ["a", "x"]), _stage(plan, 1, ["b", "x"])]
    assert _staged_files(plan, [r.to_pylist()[0] for r in reports if r is not None]) == [
        "part-00000-000.parquet",
        "part-00001-000.parquet",
    ]
    model = _model()
    params = suite_params(model, ScoringRequest(day=date(2026, 11, 1), version="v1", k=K, active_days=1))
    results, facts = run_suite_in_chunks(
        _check_chunks(plan), load_suite_spec(SUITE), params, group_col="user_id", facts=user_facts
    )
    failed = {r["reason"]: r for r in results if not r["success"]}
    assert set(failed) == {"duplicate_user"} and failed["duplicate_user"]["sample_ids"] == ["x", "x"]
    assert facts["rows"] == 12 and facts["active_users"] == 4


def test_staged_files_must_be_the_reported_ones(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    report = _stage(plan, 0, ["a"])
    assert report is not None
    (Path(plan.scores_dir) / "part-00009-000.parquet").write_bytes(b"stray")
    with pytest.raises(ScoringError, match="differ from the files the scoring tasks reported"):
        _staged_files(plan, report.to_pylist())


def test_a_killed_attempts_temporary_file_is_dropped_and_a_wrong_schema_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    report = _stage(plan, 0, ["a"])
    assert report is not None
    leftover = Path(plan.scores_dir) / f".part-00000-000.parquet.dead{TMP_SUFFIX}"
    leftover.write_bytes(b"half a file")
    assert _staged_files(plan, report.to_pylist()) == ["part-00000-000.parquet"] and not leftover.exists()
    pq.write_table(pa.table({"user_id": ["a"]}), Path(plan.scores_dir) / "part-00000-000.parquet")
    with pytest.raises(ScoringError, match="has columns"):
        _staged_files(plan, report.to_pylist())


def test_checks_must_cover_every_staged_and_input_user(tmp_path: Path) -> None:
    reports = [{"file": "f", "users": 2, "rows": 6}]
    _reconcile(reports, {"active_users": 2, "rows": 6}, n_users=2)
    for facts, n_users in (({"active_users": 1, "rows": 6}, 2), ({"active_users": 2, "rows": 3}, 2),
                           ({"active_users": 2, "rows": 6}, 3)):  # fmt: skip
        with pytest.raises(ScoringError, match="the checks cover"):
            _reconcile(reports, facts, n_users=n_users)


def test_a_nan_score_is_counted_not_turned_into_an_infinite_range() -> None:
    model = _model()
    rows = pa.table(
        {
            "user_id": ["zz", "zz"],
            "rank": pa.array([1, 2], type=pa.int32()),
            "item_id": ["i1", "i2"],
            "score": [0.9, float("nan")],
            "model_version": ["v1", "v1"],
            "source": ["fallback", "model"],
            "propensity": pa.array([None, 0.5], type=pa.float64()),
            "logging_propensity": pa.array([None, None], type=pa.float64()),
        }
    )
    users = ExpectedUsers.of_batch(model, K, pa.array(["zz"]), np.array([-1]), Ragged.empty(1))
    check = user_checks(rows, users, pa.array(ITEMS)).to_pylist()[0]
    assert check["nonfinite_scores"] == 1 and check["wrong_source_rows"] == 1
    assert check["model_score_min"] is None and check["model_score_max"] is None
    assert check["fallback_score_min"] == check["fallback_score_max"] == 0.9


def test_an_explore_row_sits_in_its_slot_whatever_its_score_and_is_right_for_any_user() -> None:
    """An exploration slot (recflow.scoring.explore) breaks neither the order nor the source rule; the
    model rows around it still must descend, and a seen item in the slot is still caught."""
    model = _model()
    users = ExpectedUsers.of_batch(model, K, pa.array(["a", "zz"]), np.array([0, -1]), Ragged.from_lists([[3], []]))

    def rows(scores: list[float], slot_item: str, propensity: list[float | None] | None = None) -> pa.Table:
        return pa.table(
            {
                "user_id": ["a"] * 3 + ["zz"] * 3,
                "rank": pa.array([1, 2, 3] * 2, type=pa.int32()),
                "item_id": ["i0", slot_item, "i2", "i0", "i1", "i2"],
                "score": [*scores, 0.9, 0.5, 0.1],
                "model_version": ["v1"] * 6,
                "source": ["model", "explore", "model", "fallback", "fallback", "explore"],
                "propensity": [0.6, 0.9, 0.4, None, None, None],  # zz is a fallback user: none at all
                "logging_propensity": propensity or [None, 0.2, None, None, None, 0.5],
            }
        )

    checks = user_checks(rows([0.9, 5.0, 0.1], "i1"), users, pa.array(ITEMS)).to_pylist()
    for check in checks:
        assert check["scores_out_of_order"] == 0 and check["wrong_source_rows"] == 0, check
        assert check["seen_items"] == 0 and check["user_rows"] == 3 and check["bad_propensity_rows"] == 0
    stray = user_checks(rows([0.9, 5.0, 0.1], "i1", [0.3, None, None, None, None, 1.5]), users, pa.array(ITEMS))
    # user a: a propensity on a model row and none on its explore row; zz: one above 1
    assert stray.column("bad_propensity_rows").to_pylist() == [2, 1]
    broken = user_checks(rows([0.1, 5.0, 0.9], ITEMS[3]), users, pa.array(ITEMS)).to_pylist()[0]
    assert broken["scores_out_of_order"] == 1 and broken["seen_items"] == 1


@pytest.mark.parametrize(
    ("calibrated", "propensity", "bad"),
    [
        (True, [0.7, 0.0, 1.0, None, None, None], [0, 0]),  # [0, 1] inclusive; fallback rows null
        (True, [0.7, None, 0.2, None, None, None], [1, 0]),  # a model row without one
        (True, [0.7, 1.5, -0.1, None, None, None], [2, 0]),  # out of range
        (True, [0.7, float("nan"), 0.2, None, None, None], [1, 0]),  # NaN counts as missing
        (True, [0.7, 0.5, 0.2, 0.3, None, 0.4], [0, 2]),  # a fallback user's rows (explore too) carry none
        (False, [None] * 6, [0, 0]),  # a model without a map: null everywhere
        (False, [0.7, None, None, None, None, None], [1, 0]),  # ... so a value is stray
    ],
)
def test_the_calibrated_propensity_is_null_only_for_fallback_or_uncalibrated_rows_else_in_0_1(
    calibrated: bool, propensity: list[float | None], bad: list[int]
) -> None:
    """``bad_calibrated_propensity_rows``, which ``expectations/batch_scores.json`` requires to be 0: user a
    (known: model, explore, model rows) and zz (unknown: fallback, fallback, explore rows)."""
    model = _model(calibrated)
    users = ExpectedUsers.of_batch(model, K, pa.array(["a", "zz"]), np.array([0, -1]), Ragged.empty(2))
    rows = pa.table(
        {
            "user_id": ["a"] * 3 + ["zz"] * 3,
            "rank": pa.array([1, 2, 3] * 2, type=pa.int32()),
            "item_id": ["i0", "i1", "i2"] * 2,
            "score": [0.9, 0.5, 0.1, 0.9, 0.5, 0.1],
            "model_version": ["v1"] * 6,
            "source": ["model", "explore", "model", "fallback", "fallback", "explore"],
            "propensity": pa.array(propensity, type=pa.float64(), from_pandas=True),
            "logging_propensity": [None, 0.2, None, None, None, 0.5],
        }
    )
    checks = user_checks(rows, users, pa.array(ITEMS))
    assert checks.column("bad_calibrated_propensity_rows").to_pylist() == bad
