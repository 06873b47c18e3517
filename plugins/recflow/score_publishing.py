"""Publish only valid batch scores: stage, check with the ``batch_scores`` GX suite, then commit.

The suite (``expectations/batch_scores.json``) runs over a *check frame*: the staged Parquet as written,
joined to the users the run had to score and their seen items, with per-user facts beside each row. A
user with no rows appears once with a null rank, so "every user got ``min(k, unseen)`` rows" is an
ordinary column-pair rule. The expected count is computed from the inputs
(catalog or candidate pool minus the seen items), never from the scorer's own output.

Cost: the check is one Spark pass over the staged rows. The check frame is partitioned by user, and
GX's pandas engine runs the suite on each worker's user-complete chunks
(:mod:`recflow.validation.partitioned`); the summary's counts come from the same pass.

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


def check_frame(spark: SparkSession, staged: DataFrame, inputs: DataFrame, model: Recommender, k: int) -> DataFrame:
    """One row per staged row, plus one with a null rank per requested user without rows, with the facts
    the suite checks; partitioned and sorted by user, as
    :func:`~recflow.validation.partitioned.run_suite_on_partitions` needs.

    Why a left join plus the users without rows, not one full outer join: the full outer join's key is a
    new (coalesced) column, so the per-user window after it shuffled the whole frame a second time. The
    left join keeps the staged rows partitioned by the inputs' ``user_id`` (``inputs`` is cached,
    hash-partitioned by user), so the window reuses that partitioning; only the staged rows move once.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    users = inputs.select(
        COL_USER,
        COL_SEEN,
        expected_rows(model, k).alias("expected_rows"),
        F.when(F.col(COL_CODE).isNull(), SOURCE_FALLBACK).otherwise(SOURCE_MODEL).alias("expected_source"),
    )
    rows = staged.join(F.broadcast(item_table(spark, model)), COL_ITEM, "left").join(users, COL_USER, "left")
    per_user = Window.partitionBy(COL_USER)
    by_rank = per_user.orderBy(COL_RANK)
    score = F.col(COL_SCORE)
    scored = rows.select(
        *SCORE_COLUMNS,
        "expected_rows",
        "expected_source",
        F.count(COL_RANK).over(per_user).alias("user_rows"),
        F.coalesce(F.max(COL_RANK).over(per_user), F.lit(0)).alias("user_max_rank"),
        (F.lag(score).over(by_rank) - score).alias("score_drop"),
        F.array_contains(F.col(COL_SEEN), F.col(COL_ITEM_CODE)).alias("is_seen"),
        F.col(COL_ITEM_CODE).isNotNull().alias("item_known"),
        (F.col(COL_SOURCE) == F.col("expected_source")).alias("source_matches"),
        (~F.isnan(score) & (F.abs(score) < F.lit(float("inf")))).alias("score_finite"),
        F.when(F.col(COL_SOURCE) == SOURCE_MODEL, score).alias("model_score"),
        F.when(F.col(COL_SOURCE) == SOURCE_FALLBACK, score).alias("fallback_score"),
        # every staged row is a recommendation: rank, item, score and version all set
        (
            F.col(COL_RANK).isNotNull()
            & F.col(COL_ITEM).isNotNull()
            & score.isNotNull()
            & F.col(COL_VERSION).isNotNull()
        ).alias("row_complete"),
    )
    # A requested user without rows: one row with a null rank (exhausted, or dropped by the scorer).
    missing = users.join(staged.select(COL_USER), COL_USER, "left_anti").sortWithinPartitions(COL_USER)
    none = F.lit(None)
    empty = missing.select(
        COL_USER,
        none.cast("int").alias(COL_RANK),
        none.cast("string").alias(COL_ITEM),
        none.cast("double").alias(COL_SCORE),
        none.cast("string").alias(COL_VERSION),
        none.cast("string").alias(COL_SOURCE),
        "expected_rows",
        "expected_source",
        F.lit(0).cast("long").alias("user_rows"),
        F.lit(0).alias("user_max_rank"),
        none.cast("double").alias("score_drop"),
        *[none.cast("boolean").alias(c) for c in ("is_seen", "item_known", "source_matches", "score_finite")],
        none.cast("double").alias("model_score"),
        none.cast("double").alias("fallback_score"),
        F.lit(True).alias("row_complete"),
    )
    return scored.unionByName(empty)


def user_facts(chunk: pd.DataFrame) -> dict[str, int]:
    """The summary's counts over a user-complete chunk of the check frame (so distinct counts add up)."""
    users = chunk[COL_USER]
    has_row = chunk[COL_RANK].notna()
    return {
        "rows": int(has_row.sum()),
        "users_scored": int(users[has_row].nunique()),
        "users_exhausted": int(users[chunk["expected_rows"] == 0].nunique()),
        "users_fallback": int(users[chunk["expected_source"] == SOURCE_FALLBACK].nunique()),
        "active_users": int(users[chunk["expected_rows"].notna()].nunique()),
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
    from recflow.validation.partitioned import run_suite_on_partitions

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
        results, facts = run_suite_on_partitions(
            check_frame(spark, staged, inputs, model, request.k),
            load_suite_spec(SUITE),
            suite_params(model, request),
            group_col=COL_USER,
            facts=user_facts,
        )
        log.info("suite %s on %d rows: %.1f s", SUITE, facts["rows"], time.perf_counter() - t0)
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
            report = {**summary, "suite": SUITE, "published": False, "failed": failed, "results": results}
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
