"""Train the sequence model (recency-weighted transitions + EASE) on a lake window and register the candidate.

Launch (the training DAG builds the same list; the family appears in its Params from models/sequence.yaml):
    spark-submit --master 'local[*]' spark_jobs/train_sequence.py --lake .recflow/lake \
        --train-start 2026-11-01 --holdout-start 2026-11-06 --end 2026-11-08 \
        --output-dir .recflow/runs/sequence --run-id manual-1 --register
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.models.sequence import SequenceParams, SequenceRecommender
from recflow.training.flow import main_for

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def fit(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> SequenceRecommender:
    return SequenceRecommender.fit(spark, train, SequenceParams.from_dict(dict(params)))


if __name__ == "__main__":
    main_for("sequence", fit)
