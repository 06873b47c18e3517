"""Validation: GX suites from JSON, row vs batch policy, quarantine, reconciliation and idempotency."""

from __future__ import annotations

import gzip
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_TS, COL_USER
from recflow.data import synthetic
from recflow.data.contract import INTERACTION_COLUMNS
from recflow.validation import (
    COL_REASON,
    RAW_SUITE,
    SCORES_SUITE,
    TRAINING_SUITE,
    FrameValidationFailed,
    LandingDayRequest,
    SuiteLoadError,
    ValidationFailed,
    ValidationResult,
    build_suite,
    load_suite_spec,
    row_masks,
    validate_frame,
    validate_partition,
)

DAY = date(2024, 3, 4)
GEN: dict[str, Any] = {"n_users": 200, "n_items": 40, "events_per_day": 2_000, "seed": 9}
_FULL_GZIP = gzip.compress(
    b"event_id,user_id,item_id,event_ts,quantity,amount\n"
    + b"".join(b"e%d,u%d,i%d,2024-03-04T01:00:00Z,1,%d\n" % (i, i * 7, i % 13, i) for i in range(5000))
)
TRUNCATED_GZIP = _FULL_GZIP[: len(_FULL_GZIP) // 2]


@pytest.fixture(autouse=True)
def _no_shared_offers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(synthetic.ENV_OFFERS, str(tmp_path / "missing-offerList.csv"))


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def land(tmp_path: Path, day: date = DAY, **kw: object) -> Path:
    params = {**GEN, **kw}
    return synthetic.write_day(day, tmp_path / "landing", **params)  # type: ignore[arg-type]


def land_frame(tmp_path: Path, df: pd.DataFrame, name: str = "interactions.csv") -> Path:
    path = tmp_path / "hand" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic._text_frame(df).to_csv(path, index=False)
    return path


def rejects(result: ValidationResult) -> pd.DataFrame:
    return pd.read_parquet(Path(result.quarantine_path) / "rejects.parquet")


def lake_rows(lake: Path, day: date = DAY) -> pd.DataFrame:
    return pd.read_parquet(lake / "interactions" / f"event_date={day}")


def run_failed(path: Path, lake: Path, **kw: object) -> ValidationResult:
    with pytest.raises(ValidationFailed) as info:
        validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, **kw))  # type: ignore[arg-type]
    return info.value.result


# ------------------------------------------------------------------------------------------ suites


@pytest.mark.parametrize("name", [RAW_SUITE, TRAINING_SUITE, SCORES_SUITE])
def test_suites_load_with_every_expectation(name: str) -> None:
    spec = load_suite_spec(name)
    raw = json.loads(Path(spec.path).read_text())
    assert len(build_suite(spec).expectations) == len(raw["expectations"]) > 0
    assert all(spec.level(e) in {"schema", "row", "batch"} for e in spec.expectations)


def test_a_dropped_expectation_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}},
        {"type": "expect_column_values_to_be_shiny", "kwargs": {"column": "x"}},
    ]}))  # fmt: skip
    with pytest.raises(SuiteLoadError, match=r"loaded 1 of 2 .*expect_column_values_to_be_shiny"):
        build_suite(load_suite_spec(bad))


def test_row_masks_mirror_the_rules() -> None:
    df = pd.DataFrame({COL_EVENT: ["a", "a", None], "x": [1.0, 0.0, None]})
    spec = load_suite_spec(RAW_SUITE)
    exps = [e for e in spec.expectations if e["kwargs"].get("column") == COL_EVENT and spec.level(e) == "row"]
    masks = row_masks(df, type(spec)(name="t", expectations=tuple(exps), path="t"))
    assert masks["null_event_id"].tolist() == [False, False, True]
    assert masks["duplicate_event_id"].tolist() == [False, True, False], "first copy is kept"


# -------------------------------------------------------------------------------- good batches


def test_clean_day_is_accepted_and_reconciles(tmp_path: Path, lake: Path) -> None:
    result = validate_partition(LandingDayRequest(land(tmp_path), day=DAY, lake_root=lake))
    assert result.success and result.quarantined == 0
    assert result.landed == result.accepted == synthetic.events_on(DAY, GEN["events_per_day"])
    out = lake_rows(lake)
    assert len(out) == result.accepted and out[COL_EVENT].is_unique
    assert list(out.columns) == list(INTERACTION_COLUMNS)
    assert out[COL_QUANTITY].dtype == "int64"
    assert Path(result.report_path).read_text().count("PASSED") == 1
    json.dumps(result.to_xcom())
    report = json.loads(Path(result.report_json_path).read_text())
    assert report["counts"] == {"landed": result.landed, "accepted": result.accepted, "quarantined": 0}
    docs = Path(result.quarantine_path) / "data_docs" / "index.html"
    assert result.data_docs_path == str(docs) and docs.is_file(), "GX Data Docs are built per run"
    assert 'href="data_docs/index.html"' in Path(result.report_path).read_text()
    assert list(docs.parent.glob("validations/raw_interactions/**/*.html"))


def test_chunked_validation_matches_single_pass(tmp_path: Path) -> None:
    """Bounded memory: many small chunks give the same split as one chunk, duplicates spanning chunks included."""
    path = land(tmp_path, faults={"duplicate_event_id": 0.003, "null_item": 0.002})
    one = validate_partition(LandingDayRequest(path, day=DAY, lake_root=tmp_path / "one", data_docs=False))
    many = validate_partition(
        LandingDayRequest(path, day=DAY, lake_root=tmp_path / "many", chunk_bytes=16_384, data_docs=False)
    )
    assert (one.accepted, one.quarantined) == (many.accepted, many.quarantined)
    pd.testing.assert_frame_equal(lake_rows(tmp_path / "one"), lake_rows(tmp_path / "many"))
    assert many.reason_counts == one.reason_counts


def test_faults_below_threshold_are_quarantined_with_reasons(tmp_path: Path, lake: Path) -> None:
    faults = {"null_user": 0.001, "negative_amount": 0.001, "absurd_amount": 0.001,
              "duplicate_event_id": 0.001, "future_ts": 0.001, "past_ts": 0.001}  # fmt: skip
    path = land(tmp_path, events_per_day=20_000, faults=faults)
    result = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, threshold=0.02))
    assert result.success and 0 < result.quarantined < 0.02 * result.landed
    assert result.landed == result.accepted + result.quarantined
    rej = rejects(result)
    reasons = set(rej[COL_REASON].str.split(";").explode())
    assert reasons == {"null_user_id", "amount_out_of_range", "duplicate_event_id",
                       "event_ts_in_future", "event_ts_before_interval"}  # fmt: skip
    assert (rej.loc[rej[COL_REASON].str.contains("amount"), COL_AMOUNT].pipe(lambda a: (a <= 0) | (a > 1e6))).all()
    out = lake_rows(lake)
    assert out[COL_EVENT].is_unique and out[COL_USER].notna().all()
    start = pd.Timestamp(DAY, tz="UTC")
    assert out[COL_TS].between(start, start + pd.Timedelta(days=1), inclusive="left").all()
    assert not set(out[COL_EVENT]) & set(rej.loc[rej[COL_REASON] != "duplicate_event_id", COL_EVENT])


def test_interval_bounds_are_half_open(tmp_path: Path, lake: Path) -> None:
    df = synthetic.generate_day(DAY, **GEN).head(300)
    start = pd.Timestamp(DAY, tz="UTC")
    df.loc[0, COL_TS] = start
    df.loc[1, COL_TS] = start + pd.Timedelta(days=1)  # the interval end belongs to the next day
    result = validate_partition(LandingDayRequest(land_frame(tmp_path, df), day=DAY, lake_root=lake, threshold=0.01))
    assert rejects(result)[COL_REASON].tolist() == ["event_ts_in_future"]
    assert start in set(lake_rows(lake)[COL_TS])


def test_non_utf8_line_is_quarantined_and_the_rest_accepted(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"u0", b"\xff\xfe")
    path.write_bytes(b"\n".join(lines))
    result = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake))
    rej = rejects(result)
    assert rej[COL_REASON].tolist() == ["non_utf8_line"] and "\\xff" in rej["raw_line"].iloc[0]
    assert rej["line_no"].tolist() == [6]
    assert result.landed == result.accepted + 1


def test_wrong_types_are_row_rejects(tmp_path: Path, lake: Path) -> None:
    df = synthetic._text_frame(synthetic.generate_day(DAY, **GEN).head(400))
    df[COL_AMOUNT] = df[COL_AMOUNT].astype(object)
    df.loc[3, COL_AMOUNT] = "twelve"
    df.loc[4, COL_TS] = "not a time"
    path = tmp_path / "interactions.csv"
    df.to_csv(path, index=False)
    result = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake))
    assert sorted(rejects(result)[COL_REASON]) == ["amount_not_numeric", "event_ts_unparsable;null_event_ts"]


# --------------------------------------------------------------------------------- bad batches


def test_too_many_bad_rows_quarantines_the_whole_batch(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path, faults={"null_user": 0.05})
    result = run_failed(path, lake)
    assert not result.success and result.accepted == 0 and result.quarantined == result.landed
    assert not (lake / "interactions" / f"event_date={DAY}").exists(), "the lake is untouched"
    rej = rejects(result)
    assert len(rej) == result.landed
    assert set(rej[COL_REASON]) == {"null_user_id", "batch_rejected:row_reject_share"}
    failed = {f["reason"]: f for f in result.failed_expectations}
    assert failed["null_user_id"]["unexpected_count"] == (rej[COL_REASON] == "null_user_id").sum()
    summary = result.summary()
    assert "expect_column_values_to_not_be_null(user_id)" in summary and "row_reject_share" in summary
    assert "REJECTED" in Path(result.report_path).read_text().upper()


def test_threshold_override_lets_the_same_batch_through(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path, faults={"null_user": 0.05})
    result = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, threshold=0.2))
    assert result.success and result.accepted + result.quarantined == result.landed


@pytest.mark.parametrize(
    ("content", "name", "error"),
    [
        (b"", "interactions.csv", "empty_file"),
        (",".join(INTERACTION_COLUMNS).encode() + b"\n", "interactions.csv", "empty_file"),
        (b"event_id,customer_id,item_id,event_ts,quantity,amount\n1,2,3,4,5,6\n", "interactions.csv",
         "schema_mismatch"),
        (TRUNCATED_GZIP, "interactions.csv.gz", "corrupt_file"),
    ],
    ids=["empty", "header-only", "renamed-column", "truncated-gzip"],
)  # fmt: skip
def test_unreadable_files_are_quarantined_whole(
    tmp_path: Path, lake: Path, content: bytes, name: str, error: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run_failed(path, lake)
    assert result.error is not None and result.error.startswith(error)
    assert result.landed == result.accepted + result.quarantined
    kept = Path(result.quarantine_path) / f"source-{name}"
    assert kept.read_bytes() == content, "the raw file is kept verbatim: nothing is lost"
    assert json.loads(Path(result.report_json_path).read_text())["error"] == result.error


def test_volume_against_trailing_mean(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path)
    result = run_failed(path, lake, history_counts=[20_000] * 7)
    check = next(c for c in result.batch_checks if c["check"] == "volume_vs_trailing_mean")
    assert not check["success"] and "20000.0" in check["limit"]
    ok = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, history_counts=[2_000] * 7))
    assert ok.success
    skipped = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, history_counts=[1, 1]))
    assert "skipped" in next(c for c in skipped.batch_checks if c["check"] == "volume_vs_trailing_mean")


def test_unknown_user_and_item_rates(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path)
    users = synthetic.user_names(GEN["n_users"])
    items = synthetic.item_names(GEN["n_items"])
    assert validate_partition(
        LandingDayRequest(path, day=DAY, lake_root=lake, known_users=users, known_items=items)
    ).success
    result = run_failed(path, lake, known_users=users, known_items=items[:20])
    check = next(c for c in result.batch_checks if c["check"] == "unknown_item_rate")
    assert not check["success"] and check["observed"] > 0.05


# ------------------------------------------------------------------------- idempotency, history


def test_redelivery_replaces_and_never_duplicates(tmp_path: Path, lake: Path) -> None:
    path = land(tmp_path)
    first = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake))
    before = lake_rows(lake)
    second = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake))
    after = lake_rows(lake)
    assert first.accepted == second.accepted == len(after)
    pd.testing.assert_frame_equal(before, after)
    assert [p.name for p in (lake / "interactions" / f"event_date={DAY}").iterdir()] == ["part-0.parquet"]
    assert not any((lake / "_staging").iterdir()), "no staging leftovers"


def test_rerun_after_fixing_the_file_succeeds(tmp_path: Path, lake: Path) -> None:
    bad = land(tmp_path, faults={"negative_amount": 0.2})
    run_failed(bad, lake)
    good = land(tmp_path)  # the corrected re-delivery overwrites the landing file
    result = validate_partition(LandingDayRequest(good, day=DAY, lake_root=lake))
    assert result.success and len(lake_rows(lake)) == result.landed
    assert len(rejects(result)) == 0, "the quarantine of the failed run is replaced"


def test_duplicates_across_days_and_history_from_the_lake(tmp_path: Path, lake: Path) -> None:
    for i in range(3):
        validate_partition(
            LandingDayRequest(land(tmp_path, DAY + timedelta(days=i)), day=DAY + timedelta(days=i), lake_root=lake)
        )
    day = DAY + timedelta(days=3)
    df = synthetic.generate_day(day, **GEN)
    earlier = lake_rows(lake, DAY)[COL_EVENT].head(5).tolist()
    df.loc[: len(earlier) - 1, COL_EVENT] = earlier
    result = validate_partition(LandingDayRequest(land_frame(tmp_path, df), day=day, lake_root=lake))
    rej = rejects(result)
    assert sorted(rej[COL_EVENT]) == sorted(earlier)
    assert set(rej[COL_REASON]) == {"duplicate_event_id_across_days"}
    volume = next(c for c in result.batch_checks if c["check"] == "volume_vs_trailing_mean")
    assert "skipped" not in volume and "(3 days)" in volume["limit"], "history comes from the lake"


# ------------------------------------------------------------------- training and scoring suites


def test_training_features_suite() -> None:
    good = pd.DataFrame({COL_USER: ["u1", "u1", "u2"], COL_ITEM: ["a", "b", "a"], "rating": [1.0, 3.0, 2.0],
                         COL_TS: pd.to_datetime(["2024-03-04"] * 3, utc=True)})  # fmt: skip
    assert validate_frame(good, TRAINING_SUITE).success
    bad = pd.concat([good, good.head(1)], ignore_index=True)
    bad.loc[1, "rating"] = -1.0
    with pytest.raises(FrameValidationFailed, match=r"duplicate_pair.*|rating_not_positive") as info:
        validate_frame(bad, TRAINING_SUITE)
    assert info.value.validation.reason_counts == {"duplicate_pair": 1, "rating_not_positive": 1}


def _score_check_frame() -> pd.DataFrame:
    """A per-user check frame as recflow.batch.checks.user_checks builds it: u1 got 2 model rows,
    u2 (a fallback user) 1, u3 is exhausted (no rows, expected 0)."""
    zeros = [0, 0, 0]
    return pd.DataFrame(
        {
            COL_USER: ["u1", "u2", "u3"],
            "expected_rows": [2, 1, 0],
            "expected_source": ["model", "fallback", "model"],
            "user_rows": [2, 1, 0],
            "min_rank": [1, 1, None],
            "max_rank": [2, 1, 0],
            **{c: zeros for c in ("incomplete_rows", "duplicate_ranks", "duplicate_items", "scores_out_of_order",
                                  "nonfinite_scores", "seen_items", "unknown_items", "wrong_source_rows",
                                  "bad_propensity_rows", "bad_calibrated_propensity_rows")},
            "model_score_min": [-0.5, None, None],
            "model_score_max": [-0.2, None, None],
            "fallback_score_min": [None, 0.7, None],
            "fallback_score_max": [None, 0.7, None],
            "version_min": ["als-1", "als-1", None],
            "version_max": ["als-1", "als-1", None],
        }
    )  # fmt: skip


SCORE_PARAMS = {"k": 10, "version_set": ["als-1"], "score_min": -3.0e38, "score_max": 3.0e38}


def test_batch_scores_suite_accepts_real_score_ranges_and_exhausted_users() -> None:
    """ALS dot products are negative here and a user has no rows: both are valid."""
    assert validate_frame(_score_check_frame(), SCORES_SUITE, SCORE_PARAMS).success


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_rows": [1, 1, 0]}, "rows_per_user_not_min_k_unseen"),
        ({"seen_items": [0, 1, 0]}, "seen_item_recommended"),
        ({"scores_out_of_order": [1, 0, 0]}, "scores_not_sorted_descending"),
        ({"nonfinite_scores": [1, 0, 0]}, "score_not_finite"),
        ({"model_score_max": [float("inf"), None, None]}, "model_score_not_finite_or_out_of_range"),
        ({"fallback_score_max": [None, 3.0, None]}, "fallback_score_out_of_range"),
        ({"version_max": ["als-2", "als-1", None]}, "wrong_model_version"),
        ({"duplicate_ranks": [1, 0, 0]}, "duplicate_rank"),
        ({"duplicate_items": [0, 1, 0]}, "duplicate_recommendation"),
        ({"max_rank": [12, 1, 0]}, "rank_out_of_range"),
        ({"max_rank": [3, 1, 0]}, "ranks_not_contiguous"),
        ({"expected_rows": [2, None, 0]}, "user_not_requested"),
        ({"wrong_source_rows": [0, 1, 0]}, "wrong_source"),
        ({"bad_propensity_rows": [1, 0, 0]}, "logging_propensity_missing_or_out_of_range"),
        ({"bad_calibrated_propensity_rows": [0, 2, 0]}, "propensity_missing_stray_or_out_of_range"),
        ({"unknown_items": [1, 0, 0]}, "unknown_item"),
        ({"incomplete_rows": [1, 0, 0]}, "incomplete_row"),
        ({COL_USER: ["u1", "u1", "u3"]}, "duplicate_user"),
        ({COL_USER: ["u1", None, "u3"]}, "null_user_id"),
    ],
)
def test_batch_scores_suite_rejects(change: dict[str, list[Any]], reason: str) -> None:
    result = validate_frame(_score_check_frame().assign(**change), SCORES_SUITE, SCORE_PARAMS, raise_on_failure=False)
    assert reason in {f["reason"] for f in result.failed}, result.failed


# --------------------------------------------------------------------------------- GX Spark engine


def _verdicts(result: ValidationResult) -> list[tuple[Any, ...]]:
    report = json.loads(Path(result.report_json_path).read_text())
    return [(e["expectation"], str(e["column"]), e["reason"], e["success"], e["unexpected_count"],
             e.get("rows_flagged")) for e in report["expectations"]]  # fmt: skip


def test_gx_spark_engine_gives_the_pandas_verdicts(tmp_path: Path) -> None:
    """``gx_spark_min_bytes=0`` forces GX's Spark engine on a small file; it must agree with the pandas
    engine (which sees the whole file, since it is below the sample size) on every expectation,
    including the failed ones and their unexpected counts."""
    from recflow.validation import Policy

    path = land(tmp_path, faults={"null_user": 0.004, "duplicate_event_id": 0.003, "negative_amount": 0.003,
                                  "future_ts": 0.002})  # fmt: skip
    pandas_run = run_failed(path, tmp_path / "pandas")
    spark_run = run_failed(path, tmp_path / "spark", policy=Policy(gx_spark_min_bytes=0))
    assert json.loads(Path(spark_run.report_json_path).read_text())["gx_scope"]["engine"] == "spark"
    assert json.loads(Path(pandas_run.report_json_path).read_text())["gx_scope"]["engine"] == "pandas"
    pandas_verdicts, spark_verdicts = _verdicts(pandas_run), _verdicts(spark_run)
    assert len(spark_verdicts) == len(load_suite_spec(RAW_SUITE).expectations)
    assert spark_verdicts == pandas_verdicts
    failed = {v[2] for v in spark_verdicts if not v[3]}
    assert {"null_user_id", "duplicate_event_id", "amount_out_of_range", "event_ts_in_future"} <= failed
    assert (spark_run.landed, spark_run.quarantined) == (pandas_run.landed, pandas_run.quarantined)
    assert spark_run.data_docs_path and Path(spark_run.data_docs_path).is_file()
