"""Segmented specs: KMeans segments of users (Spark MLlib) and one model of any family per segment.

A spec declares ``segmentation: {family: als, kmeans: {k: 2..8, features: [activity, spend], seed: 42,
max_iter: 30}}`` (the purchase-card demo's 30 iterations; it fixed 2 clusters, here ``k`` is
searched). :func:`segmented_fitter` turns it into a normal :data:`recflow.training.fitters.Fitter`, so
the segmented spec trains, is judged on the shared hold-out and is compared like any other candidate
(``spark_jobs/train.py --family <spec>``):

1. user features over the training part in Spark (:func:`recflow.data.user_features.user_features`);
2. ``StandardScaler`` then ``KMeans`` (Spark MLlib) for every ``k`` of the spec; the ``k`` with the best
   silhouette on the training users' features wins (:func:`recflow.training.segmentation.choose_k`, the
   hold-out never enters); the router keeps the scaler's mean and standard deviation, the centroids and
   that choice with every k's score (:class:`recflow.models.segmented.SegmentRouter`), and every
   training user's segment is the router's answer, computed once on the driver;
3. one fit of ``family`` per segment, on the segment's users' rows, with the spec's params.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.data.item_history import ITEMS_FOLDER
from recflow.data.user_features import user_features
from recflow.data.window import TrainingDataError
from recflow.models.artifact import load_recommender
from recflow.models.index import IdIndex, SeenItems
from recflow.models.segmented import SegmentedRecommender, SegmentRouter
from recflow.training.fitters import FITTERS, Fitter
from recflow.training.segmentation import CRITERION, MIN_SEGMENT_USERS, Segmentation, choose_k

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

COL_SEGMENT: Final = "segment"


def fit_router(
    features: DataFrame, columns: list[str], segmentation: Segmentation
) -> tuple[SegmentRouter, pd.DataFrame]:
    """StandardScaler + KMeans (Spark MLlib) over the feature columns for each ``k`` searched, the best by
    silhouette kept as plain data; with Spark's own assignment (user_id, segment, features), so the caller
    can check the router agrees with it."""
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    vectors = VectorAssembler(inputCols=columns, outputCol="x")
    assembled = vectors.transform(features)
    scaler = StandardScaler(inputCol="x", outputCol="z", withMean=True, withStd=True).fit(assembled)
    scaled = scaler.transform(assembled).cache()
    try:
        evaluator = ClusteringEvaluator(featuresCol="z", predictionCol=COL_SEGMENT, metricName="silhouette")
        fitted, scores = {}, {}
        for k in segmentation.ks:
            kmeans = KMeans(k=k, seed=segmentation.seed, maxIter=segmentation.max_iter, featuresCol="z")
            model = kmeans.setPredictionCol(COL_SEGMENT).fit(scaled)
            sizes = list(model.summary.clusterSizes)
            small = len(sizes) < k or min(sizes) < MIN_SEGMENT_USERS
            scores[k] = None if small else float(evaluator.evaluate(model.transform(scaled)))
            fitted[k] = model
        chosen = choose_k(scores)
        model = fitted[chosen]
        assigned = model.transform(scaled)
        frame: pd.DataFrame = assigned.select(COL_USER, COL_SEGMENT, *columns).toPandas()
    finally:
        scaled.unpersist()
    router = SegmentRouter(
        tuple(columns),
        np.asarray(scaler.mean.toArray(), dtype=np.float64),
        np.asarray(scaler.std.toArray(), dtype=np.float64),
        np.asarray(model.clusterCenters(), dtype=np.float64),
        {"k": chosen, "criterion": CRITERION, "silhouette": {str(k): v for k, v in scores.items()}},
    )
    return router, frame


def segmented_fitter(segmentation: Segmentation, lake_root: Path | str) -> Fitter:
    """The fit of a segmented spec (see the module docstring); ``lake_root`` holds the optional ``items/``."""

    def fit(spark: SparkSession, train: DataFrame, params: Mapping[str, Any], work_dir: Path) -> SegmentedRecommender:
        from pyspark.sql import functions as F

        last = train.agg(F.max(F.to_date(COL_TS))).first()
        if last is None or last[0] is None:
            raise TrainingDataError("segmentation needs training rows")
        tags = _item_tags(spark, lake_root) if "category_mix" in segmentation.features else None
        features = user_features(train, segmentation.features, last[0] + timedelta(days=1), tags)
        columns = [c for c in features.columns if c != COL_USER]
        router, frame = fit_router(features, columns, segmentation)
        routed = router.route(frame[columns].to_numpy(dtype=np.float64))
        disagree = int((routed != frame[COL_SEGMENT].to_numpy()).sum())
        if disagree:  # the router is what scoring uses: it must send every user where KMeans put them
            raise TrainingDataError(f"the router sends {disagree} of {len(frame)} users elsewhere than KMeans did")
        assignment = spark.createDataFrame(frame[[COL_USER, COL_SEGMENT]])
        segments = []
        k = len(router.centroids)
        for s in range(k):
            members = assignment.where(F.col(COL_SEGMENT) == s).select(COL_USER)
            rows = train.join(F.broadcast(members), COL_USER, "left_semi")
            n_users = int((frame[COL_SEGMENT] == s).sum())
            if n_users < 2:
                raise TrainingDataError(f"segment {s} of {k} has {n_users} user(s): lower kmeans k")
            model = FITTERS[segmentation.family](spark, rows, params, work_dir / f"segment-{s}")
            model.save(work_dir / f"segment-{s}-artifact")  # type: ignore[attr-defined]
            segments.append(load_recommender(work_dir / f"segment-{s}-artifact"))
        pairs = train.select(COL_USER, COL_ITEM).distinct().toPandas()
        index = IdIndex.from_frame(pairs)
        by_user = pd.Series(frame[COL_SEGMENT].to_numpy(), index=frame[COL_USER].to_numpy())
        user_segment = by_user.reindex(list(index.users)).fillna(-1).to_numpy(dtype=np.int64)
        return SegmentedRecommender(index, SeenItems.from_frame(pairs, index), router, user_segment, segments)

    return fit


def _item_tags(spark: SparkSession, lake_root: Path | str) -> DataFrame:
    path = f"{str(lake_root).rstrip('/')}/{ITEMS_FOLDER}"
    try:
        return spark.read.parquet(path)
    except Exception as exc:  # AnalysisException: no item metadata
        raise TrainingDataError(f"category_mix needs item metadata at {path}: {exc}") from exc
