"""Train NeuMF: Spark samples negatives into Parquet, Keras trains on the driver; registers the candidate.

Launch (the training DAG builds the same list):
    spark-submit --master 'local[*]' spark_jobs/train_ncf.py --lake .recflow/lake \
        --train-start 2026-11-01 --holdout-start 2026-11-06 --end 2026-11-08 \
        --output-dir .recflow/runs/ncf --run-id manual-1 --register
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.models.ncf import NcfParams, NcfRecommender
from recflow.training.flow import main_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def fit(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> NcfRecommender:
    return NcfRecommender.fit(spark, train, NcfParams.from_dict(dict(params)), work_dir)


if __name__ == "__main__":
    main_for("ncf", fit)
