"""Each model family's fit, by family name: what ``spark_jobs/train.py --family <name>`` trains.

A fit takes the training part of the window as a Spark DataFrame and one candidate's parameters (the
spec's ``params`` merged with a search point, as plain YAML/JSON values), turns the parameters into the
family's typed params (which reject unknown names) and returns the fitted model. ``work_dir`` is scratch
space for families that write Parquet tables while fitting; the training flow removes it afterwards.

A new family is its model module, its spec (``models/<name>.yaml``) and one entry in :data:`FITTERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.base import Recommender
from recflow.models.hybrid import HybridParams, HybridRecommender
from recflow.models.ncf import NcfParams, NcfRecommender
from recflow.models.popularity import PopularityRecommender
from recflow.models.sequence import SequenceParams, SequenceRecommender

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: What the training flow calls: ``fit(spark, train, params, work_dir)``.
Fitter = Callable[["SparkSession", "DataFrame", Mapping[str, Any], Path], Recommender]


def fit_als(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> AlsRecommender:
    return AlsRecommender.fit(spark, train, AlsParams.from_dict(dict(params)), work_dir)


def fit_hybrid(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> HybridRecommender:
    return HybridRecommender.fit(spark, train, HybridParams.from_dict(dict(params)))


def fit_ncf(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> NcfRecommender:
    return NcfRecommender.fit(spark, train, NcfParams.from_dict(dict(params)), work_dir)


def fit_popularity(
    spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path
) -> PopularityRecommender:
    if params:
        raise ValueError(f"the popularity baseline takes no parameters, got {sorted(params)}")
    return PopularityRecommender.fit_spark(train, work_dir)


def fit_sequence(
    spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path
) -> SequenceRecommender:
    return SequenceRecommender.fit(spark, train, SequenceParams.from_dict(dict(params)))


#: The fit of each family; the keys are the spec names (``models/<name>.yaml``) and ``--family`` choices.
FITTERS: Final[Mapping[str, Fitter]] = {
    "als": fit_als,
    "hybrid": fit_hybrid,
    "ncf": fit_ncf,
    "popularity": fit_popularity,
    "sequence": fit_sequence,
}
