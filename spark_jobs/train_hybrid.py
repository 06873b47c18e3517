"""Train the ALS + EASE hybrid on a lake window and register the candidate.

Launch (the training DAG builds the same list; the family appears in its Params from models/hybrid.yaml):
    spark-submit --master 'local[*]' spark_jobs/train_hybrid.py --lake .recflow/lake \
        --train-start 2026-11-01 --holdout-start 2026-11-06 --end 2026-11-08 \
        --output-dir .recflow/runs/hybrid --run-id manual-1 --register
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.models.hybrid import HybridParams, HybridRecommender
from recflow.training.flow import main_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def fit(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> HybridRecommender:
    return HybridRecommender.fit(spark, train, HybridParams.from_dict(dict(params)))


if __name__ == "__main__":
    main_for("hybrid", fit)
