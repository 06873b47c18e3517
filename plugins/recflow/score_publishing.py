"""Publish only valid batch scores: stage, check with the ``batch_scores`` GX suite, then commit.

The suite (``expectations/batch_scores.json``) runs over a per-user *check frame* built from the staged
Parquet as written and the run's inputs (:func:`user_checks`): one row per user, with what the inputs
say the user should get (``expected_rows`` = ``min(k, unseen)`` from the catalog or candidate pool
minus the seen items, and the expected source) beside counts of what the user's staged rows break
(duplicate or missing ranks, unsorted scores, seen, unknown or duplicate items, the wrong source,
non-finite scores) and the ranges they span (ranks, scores by source, versions). Rules about rows are
per-user counts that must be 0, so GX still judges every staged row, on k times fewer rows; a failure
names the users (GX's unexpected index on ``user_id``) and the report carries their staged rows.

Cost: one Spark aggregation over the staged rows (partial in the scan's tasks, one row per user
shuffled) joined to the inputs, then GX's pandas engine on the driver over that frame in chunks
(:mod:`recflow.validation.chunked`); the summary's counts come from the same frame.

Commit: the lake's :meth:`~recflow.data.stores.LakeStore.publish` (a rename swap on a local lake; on S3,
files copied into place and the ``_SUCCESS`` manifest written last). A failed suite publishes nothing,
so the previous partition stays, and writes ``score_reports/event_date=<day>/report.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recflow.batch_scoring import (
    COL_CODE,
    SCORE_COLUMNS,
    SUMMARY_FILE,
    ScoringRequest,
    item_table,
    scores_partition,
)
from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER, COL_VERSION
from recflow.scoring import SOURCE_FALLBACK, SOURCE_MODEL, ScoringError, popular_candidates
from recflow.seen import COL_ITEM_CODE, COL_SEEN, SeenPolicy

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from recflow.models.artifact import Recommender

log = logging.getLogger(__name__)
SUITE: Final = "batch_scores"
#: Families whose model scores are probabilities or popularity shares; the others are unbounded reals.
UNIT_SCORE_FAMILIES: Final = frozenset({"ncf", "popularity"})
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
#: Users whose staged rows a failure report carries (from the failed rules' samples).
REPORT_USERS: Final = 5


class ScoresRejected(ScoringError):
    """The staged scores failed the suite; nothing was published (see ``report``)."""

    def __init__(self, message: str, report: dict[str, Any], report_uri: str) -> None:
        super().__init__(f"{message} (report: {report_uri})")
        self.report = report
        self.report_uri = report_uri


def reports_partition(day: date) -> str:
    return f"score_reports/event_date={day}"


def expected_rows(model: Recommender, k: int) -> Any:
    """Spark column: ``min(k, items the user could still get)`` from the catalog or candidate pool."""
    from pyspark.sql import functions as F

    seen = F.col(COL_SEEN)
    catalog_left = F.lit(model.index.n_items) - F.size(seen)
    if model.candidate_pool is None:
        available = catalog_left
    else:
        pool = F.array(*[F.lit(int(c)) for c in popular_candidates(model, model.candidate_pool)])
        available = F.when(F.col(COL_CODE).isNull(), catalog_left).otherwise(F.size(F.array_except(pool, seen)))
    return F.least(F.lit(k), available)


def user_checks(spark: SparkSession, staged: DataFrame, inputs: DataFrame, model: Recommender, k: int) -> DataFrame:
    """The per-user frame the suite runs on: one row per user in ``inputs`` or in the staged files.

    Each user's staged rows are reduced to counts of what the suite forbids (duplicate ranks, duplicate
    items, non-finite scores, distinct seen items, unknown items, rows of the wrong source, incomplete
    rows; ``scores_out_of_order`` is 1 when the scores do not descend with the rank) plus the ranges it
    bounds (ranks, model and fallback scores, versions),
    and joined to what the inputs say the user should get: ``expected_rows`` = ``min(k, unseen)``
    (:func:`expected_rows`) and ``expected_source``. A user without rows has ``user_rows`` 0; a staged
    user the run did not ask for has no expected values.

    Why per user: every rule of the suite is a statement about one user's rows, so the frame GX reads
    is k times smaller than the staged rows, and one Spark aggregation computes it. The staged rows are
    partially aggregated in the scan's own tasks (one ``collect_list`` of (rank, score, item code) per
    user, sorted by rank), so only one row per user is shuffled, then joined to the inputs.
    """
    from pyspark.sql import functions as F

    users = inputs.select(
        COL_USER,
        COL_SEEN,
        expected_rows(model, k).alias("expected_rows"),
        F.when(F.col(COL_CODE).isNull(), SOURCE_FALLBACK).otherwise(SOURCE_MODEL).alias("expected_source"),
    )
    rows = staged.join(F.broadcast(item_table(spark, model)), COL_ITEM, "left")
    score, source, code = F.col(COL_SCORE), F.col(COL_SOURCE), F.col(COL_ITEM_CODE)
    finite = ~F.isnan(score) & (F.abs(score) < F.lit(float("inf")))
    complete = F.col(COL_RANK).isNotNull() & F.col(COL_ITEM).isNotNull() & score.isNotNull()
    complete &= F.col(COL_VERSION).isNotNull()

    def count(condition: Any) -> Any:
        return F.sum(F.when(condition, 1).otherwise(0))

    def within(name: str, value: Any) -> list[Any]:
        return [F.min(value).alias(f"{name}_min"), F.max(value).alias(f"{name}_max")]

    per_user = rows.groupBy(COL_USER).agg(
        F.count(F.lit(1)).alias("user_rows"),
        F.min(COL_RANK).alias("min_rank"),
        F.max(COL_RANK).alias("max_rank"),
        count(~complete).alias("incomplete_rows"),
        count(score.isNotNull() & ~finite).alias("nonfinite_scores"),
        count(F.col(COL_ITEM).isNotNull() & code.isNull()).alias("unknown_items"),
        count(source == SOURCE_MODEL).alias("model_rows"),
        count(source == SOURCE_FALLBACK).alias("fallback_rows"),
        *within("model_score", F.when(source == SOURCE_MODEL, score)),
        *within("fallback_score", F.when(source == SOURCE_FALLBACK, score)),
        *within("version", F.col(COL_VERSION)),
        # by rank, ties (a duplicate rank) by descending score, so that a tie is not also out of order
        F.sort_array(F.collect_list(F.struct(F.col(COL_RANK).alias("r"), (-score).alias("d"), code.alias("i")))).alias(
            "ranked"
        ),
    )
    # Array functions without lambdas: Spark evaluates higher-order functions (transform, filter,
    # zip_with) interpreted, element by element, which cost more than the aggregation itself.
    ranks, descents, codes = F.col("ranked.r"), F.col("ranked.d"), F.array_compact(F.col("ranked.i"))
    per_user = per_user.select(
        "*",
        (F.size(ranks) - F.size(F.array_distinct(ranks))).alias("duplicate_ranks"),
        (F.size(codes) - F.size(F.array_distinct(codes))).alias("duplicate_items"),
        # -score in rank order equals its ascending sort exactly when the scores descend with the rank
        F.when(descents == F.sort_array(descents), 0).otherwise(1).alias("scores_out_of_order"),
        codes.alias("codes"),
    )
    joined = users.join(per_user, COL_USER, "full")
    seen_items = F.size(F.array_intersect(F.col("codes"), F.col(COL_SEEN)))

    def zero(name: Any, alias: str | None = None) -> Any:
        column = F.col(name) if isinstance(name, str) else name
        return F.coalesce(column, F.lit(0)).alias(alias or str(name))

    own_source = F.when(F.col("expected_source") == SOURCE_MODEL, F.col("model_rows")).otherwise(F.col("fallback_rows"))
    return joined.select(
        COL_USER,
        "expected_rows",
        "expected_source",
        zero("user_rows"),
        "min_rank",
        zero("max_rank"),
        zero("incomplete_rows"),
        zero("duplicate_ranks"),
        zero("duplicate_items"),
        zero("scores_out_of_order"),
        zero("nonfinite_scores"),
        zero(seen_items, "seen_items"),
        zero("unknown_items"),
        F.when(F.col("expected_source").isNotNull(), F.coalesce(F.col("user_rows") - own_source, F.lit(0))).alias(
            "wrong_source_rows"
        ),
        "model_score_min",
        "model_score_max",
        "fallback_score_min",
        "fallback_score_max",
        "version_min",
        "version_max",
    )


def user_facts(chunk: pd.DataFrame) -> dict[str, int]:
    """The summary's counts over a chunk of the per-user frame (one row per user, so they add up)."""
    requested = chunk["expected_rows"].notna()
    return {
        "rows": int(chunk["user_rows"].sum()),
        "users_scored": int((chunk["user_rows"] > 0).sum()),
        "users_exhausted": int((chunk["expected_rows"] == 0).sum()),
        "users_fallback": int((requested & (chunk["expected_source"] == SOURCE_FALLBACK)).sum()),
        "active_users": int(requested.sum()),
    }


def suite_params(model: Recommender, request: ScoringRequest) -> dict[str, Any]:
    """The suite's ``$PARAMETER`` values: k, the one version allowed, the model's score range."""
    unit = model.family in UNIT_SCORE_FAMILIES
    return {
        "k": request.k,
        "version_set": [request.version],
        "score_min": 0.0 if unit else -_FLOAT32_MAX,
        "score_max": 1.0 if unit else _FLOAT32_MAX,
    }


def failed_rows(staged: DataFrame, failed: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The staged rows (by rank) of the first :data:`REPORT_USERS` users the failed rules sampled."""
    from pyspark.sql import functions as F

    users: list[str] = []
    for result in failed:
        users += [u for u in result.get("sample_ids") or [] if isinstance(u, str) and u not in users]
    users = users[:REPORT_USERS]
    if not users:
        return {}
    from recflow.validation.gx_runner import jsonable

    out: dict[str, list[dict[str, Any]]] = {user: [] for user in users}
    for row in staged.where(F.col(COL_USER).isin(users)).orderBy(COL_USER, COL_RANK).collect():
        values = row.asDict()
        out[values.pop(COL_USER)].append(jsonable(values))
    return out


def _normalise_files(folder: Path) -> list[str]:
    """Spark's part files rewritten as ``part-<n>.parquet`` (their order kept), checksums and markers
    removed, so the published bytes and names depend on the data only.

    Why rewritten, not renamed: Spark's Parquet writer (parquet-java) lists each column chunk's encodings
    in ``HashSet`` order, which follows identity hash codes and so differs between JVM processes
    (apache/parquet-java#3215): the same rows gave other footer bytes in another ``spark-submit``.
    pyarrow writes them in a fixed order; rows, row groups, schema and Spark's schema metadata are kept.
    """
    import pyarrow.parquet as pq

    parts = sorted(folder.glob("part-*.parquet"))
    for extra in [*folder.glob(".*.crc"), *folder.glob("_SUCCESS")]:
        extra.unlink()
    names = []
    for i, part in enumerate(parts):
        name = f"part-{i:05d}.parquet"
        source = pq.ParquetFile(part)
        with pq.ParquetWriter(folder / f".{name}.tmp", source.schema_arrow, compression="snappy") as writer:
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group))
        source.close()
        part.unlink()
        (folder / f".{name}.tmp").rename(folder / name)
        names.append(name)
    return names


def _write_report(store: Any, day: date, report: dict[str, Any]) -> str:
    folder = store.staging()
    try:
        (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        return str(store.publish(folder, reports_partition(day)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_scores(
    spark: SparkSession,
    scores: DataFrame,
    *,
    inputs: DataFrame,
    model: Recommender,
    request: ScoringRequest,
    policy: SeenPolicy,
    lake_root: Path | str,
) -> dict[str, Any]:
    """Stage ``scores``, run the suite on the staged files, publish them and return the summary."""
    from recflow.data.stores import open_store
    from recflow.validation import load_suite_spec
    from recflow.validation.chunked import run_suite_in_chunks

    store = open_store(str(lake_root))
    staging = store.staging()
    out = staging / "scores"
    try:
        t0 = time.perf_counter()
        scores.write.mode("overwrite").parquet(str(out))
        log.info("scored and staged %s in %.1f s", request.day, time.perf_counter() - t0)
        staged = spark.read.parquet(str(out))
        if tuple(staged.columns) != SCORE_COLUMNS:
            raise ScoringError(f"staged scores have columns {staged.columns}, expected {list(SCORE_COLUMNS)}")
        t0 = time.perf_counter()
        results, facts = run_suite_in_chunks(
            user_checks(spark, staged, inputs, model, request.k),
            load_suite_spec(SUITE),
            suite_params(model, request),
            group_col=COL_USER,
            facts=user_facts,
        )
        log.info(
            "suite %s on %d rows (%d users): %.1f s",
            SUITE,
            facts["rows"],
            facts["active_users"],
            time.perf_counter() - t0,
        )
        summary: dict[str, Any] = {
            "day": str(request.day),
            "model_version": request.version,
            "family": model.family,
            "k": request.k,
            "active_days": request.active_days,
            "user_subset": None if request.users is None else len(request.users),
            **{
                name: int(facts[name])
                for name in ("active_users", "users_scored", "users_exhausted", "users_fallback", "rows")
            },
            **policy.as_dict(),
        }
        failed = [r for r in results if not r["success"]]
        if failed:
            report = {**summary, "suite": SUITE, "published": False, "failed": failed, "results": results,
                      "failed_rows": failed_rows(staged, failed)}  # fmt: skip
            uri = _write_report(store, request.day, report)
            reasons = ", ".join(sorted({str(r["reason"]) for r in failed}))
            raise ScoresRejected(
                f"scores for {request.day} by {request.version} failed {len(failed)} check(s) of {SUITE}: "
                f"{reasons}; the previous partition is kept",
                report,
                uri,
            )
        summary["files"] = _normalise_files(out)
        summary["path"] = store.uri(scores_partition(request.day))
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        store.publish(out, scores_partition(request.day))
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)
