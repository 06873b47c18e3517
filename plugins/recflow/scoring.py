"""Batch scoring: top-K for every active user with the champion, written to the lake.

The champion artifact is downloaded once on the driver and shipped to executors with
``SparkContext.addFile``; each Python worker loads it once (cached by path) and scores its users in
``mapInPandas`` batches, so the whole catalog is never joined against all users in Spark.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recflow.constants import COL_DATE, COL_ITEM, COL_RANK, COL_SCORE, COL_USER
from recflow.models.artifact import Recommender, load_recommender

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

COL_VERSION = "model_version"
SCORES_SCHEMA = f"{COL_USER} string, {COL_ITEM} string, {COL_SCORE} double, {COL_RANK} int, {COL_VERSION} string"
SUMMARY_FILE = "_recflow_summary.json"

_loaded: dict[str, Recommender] = {}


class ScoringError(RuntimeError):
    """Batch scoring cannot run (no champion, no active users, unreadable artifact)."""


def scores_path(lake_root: Path | str, day: date) -> str:
    return f"{str(lake_root).rstrip('/')}/scores/{COL_DATE}={day}"


def active_users(spark: SparkSession, lake_root: Path | str, *, day: date, days: int) -> DataFrame:
    """Users with at least one validated event in the ``days`` days up to and including ``day``."""
    from pyspark.sql import functions as F

    start = day - timedelta(days=days - 1)
    path = f"{str(lake_root).rstrip('/')}/interactions"
    try:
        events = spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: path missing or empty
        raise ScoringError(f"no validated interactions under {path}: {exc}") from exc
    return (
        events.where((F.col(COL_DATE) >= F.lit(start)) & (F.col(COL_DATE) <= F.lit(day)))
        .select(COL_USER)
        .where(F.col(COL_USER).isNotNull())
        .distinct()
    )


def _recommender(path: str) -> Recommender:
    if path not in _loaded:
        _loaded[path] = load_recommender(Path(path))
    return _loaded[path]


def score_users(spark: SparkSession, users: DataFrame, artifact_dir: Path, *, k: int, version: str) -> DataFrame:
    """Top-``k`` unseen items per user, as (user, item, score, rank, model_version)."""
    from pyspark import SparkFiles

    spark.sparkContext.addFile(str(artifact_dir), recursive=True)
    name = artifact_dir.name

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        recommender = _recommender(SparkFiles.get(name))
        for batch in batches:
            recs = recommender.recommend(batch[COL_USER].tolist(), k=k, exclude_seen=True)
            recs[COL_RANK] = recs[COL_RANK].astype("int32")
            recs[COL_VERSION] = version
            yield recs

    return users.mapInPandas(score, schema=SCORES_SCHEMA)


def run_batch_scoring(
    spark: SparkSession,
    *,
    artifact_dir: Path,
    version: str,
    lake_root: Path | str,
    day: date,
    k: int,
    active_days: int,
) -> dict[str, Any]:
    """Score every active user and replace the day's score partition; returns the summary it wrote.

    Idempotent per ``day``: the partition is overwritten, never appended to.
    """
    if k < 1 or active_days < 1:
        raise ScoringError(f"k and active_days must be >= 1, got {k} and {active_days}")
    users = active_users(spark, lake_root, day=day, days=active_days).cache()
    n_users = users.count()
    if n_users == 0:
        raise ScoringError(f"no active users in the {active_days} day(s) up to {day} under {lake_root}")
    out = scores_path(lake_root, day)
    partitions = max(1, min(spark.sparkContext.defaultParallelism * 2, n_users // 2000 + 1))
    scores = score_users(spark, users.repartition(partitions), artifact_dir, k=k, version=version)
    scores.write.mode("overwrite").parquet(out)
    written = spark.read.parquet(out)
    summary = {
        "day": str(day),
        "model_version": version,
        "k": k,
        "active_users": n_users,
        "rows": written.count(),
        "users_scored": written.select(COL_USER).distinct().count(),
        "path": out,
    }
    users.unpersist()
    if not out.startswith(("s3://", "s3a://")):
        Path(out, SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def fetch_artifact(version: str | None, dest: Path) -> tuple[str, Path]:
    """Download ``version`` (default: the current champion) from the registry into ``dest``."""
    from recflow.config import load_settings
    from recflow.registry import ModelRegistry

    registry = ModelRegistry.from_settings(load_settings())
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise ScoringError("the registry has no champion yet: run the recommender_training DAG first")
        version = champion.version
    target = dest / version
    if target.exists():
        shutil.rmtree(target)
    return version, registry.download(version, target)


def read_summary(lake_root: Path | str, day: date) -> dict[str, Any]:
    """The summary the scoring job wrote for ``day`` (what the DAG's check task reads)."""
    path = Path(scores_path(lake_root, day), SUMMARY_FILE)
    if not path.is_file():
        raise ScoringError(f"no scoring summary at {path}: did the batch_score job finish?")
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary
