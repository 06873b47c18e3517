"""Train the popularity baseline on the same window and hold-out as the learned models.

Launch:
    spark-submit --master 'local[*]' spark_jobs/train_popularity.py --lake .recflow/lake \
        --train-start 2026-11-01 --holdout-start 2026-11-06 --end 2026-11-08 \
        --output-dir .recflow/runs/popularity --run-id manual-1 --register
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.models.popularity import PopularityRecommender
from recflow.training.flow import main_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def fit(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> PopularityRecommender:
    if params:
        raise ValueError(f"the popularity baseline takes no parameters, got {sorted(params)}")
    return PopularityRecommender.fit_spark(train, work_dir)


if __name__ == "__main__":
    main_for("popularity", fit)
