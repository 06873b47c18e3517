"""The training window: which days train and which days are held out, read from the validated lake.

Below training and evaluation both: the training flow fits on ``[start, holdout_start)``, and the hold-out
(:mod:`recflow.evaluation`) and the compare step judge on ``[holdout_start, end)`` of the same window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING

from recflow.constants import COL_AMOUNT, COL_DATE, COL_ITEM, COL_TS, COL_USER

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


class TrainingDataError(ValueError):
    """The training window cannot produce a meaningful model (empty, one user or item, NaN keys...)."""


@dataclass(frozen=True)
class TrainingWindow:
    """``[start, holdout_start)`` trains, ``[holdout_start, end)`` is the hold-out; dates are UTC days."""

    start: date
    holdout_start: date
    end: date

    def __post_init__(self) -> None:
        if not self.start < self.holdout_start < self.end:
            raise TrainingDataError(
                f"window must satisfy start < holdout_start < end, got {self.start} / {self.holdout_start} / {self.end}"
            )

    @classmethod
    def ending(cls, end: date, *, train_days: int, holdout_days: int) -> TrainingWindow:
        """The window whose hold-out is the last ``holdout_days`` days before ``end`` (exclusive)."""
        if train_days < 1 or holdout_days < 1:
            raise TrainingDataError(f"train_days and holdout_days must be >= 1, got {train_days}, {holdout_days}")
        holdout_start = end - timedelta(days=holdout_days)
        return cls(holdout_start - timedelta(days=train_days), holdout_start, end)

    @staticmethod
    def ts(day: date) -> datetime:
        return datetime.combine(day, dtime.min, tzinfo=UTC)

    def days(self) -> list[str]:
        n = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).isoformat() for i in range(n)]


def read_window(spark: SparkSession, lake_root: Path | str, window: TrainingWindow) -> DataFrame:
    """Interactions with ``start <= event_ts < end`` from the validated lake table."""
    from pyspark.sql import functions as F

    from recflow.data.spark_lake import read_table  # deferred: pyarrow, boto3 (the lakes); DAG files import this module

    path = f"{str(lake_root).rstrip('/')}/interactions"
    try:
        df = read_table(spark, lake_root, "interactions", COL_DATE)
    except Exception as exc:  # Spark raises AnalysisException for a missing or empty path
        raise TrainingDataError(f"no validated interactions under {path}: {exc}") from exc
    return df.where(
        (F.col(COL_TS) >= F.lit(TrainingWindow.ts(window.start)))
        & (F.col(COL_TS) < F.lit(TrainingWindow.ts(window.end)))
    )


def _flag(condition: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(condition, 1).otherwise(0)


def check_training_frame(train: DataFrame, window: TrainingWindow) -> dict[str, int]:
    """Refuse data no model should train on; returns counts for lineage.

    Checked in this order, so the message names the first thing to fix: no rows at all; null keys or
    NaN/null amounts (the lake should only hold validated rows); fewer than 2 users or 2 items (a
    factorisation of one row or one column ranks nothing, and ALS would train without complaint).
    """
    from pyspark.sql import functions as F

    row = train.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(COL_USER).alias("users"),
        F.countDistinct(COL_ITEM).alias("items"),
        F.sum(_flag(F.col(COL_USER).isNull() | F.col(COL_ITEM).isNull() | F.col(COL_TS).isNull())).alias("null_keys"),
        # pyarrow writes a pandas NaN as null, so a NaN that reached the lake is usually a null here
        F.sum(_flag(F.col(COL_AMOUNT).isNull() | F.isnan(F.col(COL_AMOUNT)))).alias("nan_amounts"),
    ).first()
    assert row is not None  # an aggregate always returns one row
    counts = {key: int(row[key] or 0) for key in ("rows", "users", "items", "null_keys", "nan_amounts")}
    where = f"training window {window.start}..{window.holdout_start}"
    if counts["rows"] == 0:
        raise TrainingDataError(f"{where} is empty: ingest data for those days first")
    if counts["null_keys"] or counts["nan_amounts"]:
        raise TrainingDataError(
            f"{where} has {counts['null_keys']} rows with null keys and {counts['nan_amounts']} NaN or null "
            "amounts: "
            "the lake should only hold validated rows; re-run validation"
        )
    if counts["users"] < 2 or counts["items"] < 2:
        raise TrainingDataError(
            f"{where} has {counts['users']} user(s) and {counts['items']} item(s); "
            "collaborative filtering needs at least 2 of each"
        )
    return counts
