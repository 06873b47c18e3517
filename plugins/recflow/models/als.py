"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with Spark MLlib, served from numpy factors.

Why implicit: purchases are not ratings. Every observed (user, item) pair is a positive with a
confidence ``1 + alpha * r``, where ``r`` comes from counts, amounts or is binary; unobserved pairs are
weak negatives. The seed demo trained explicit ALS on purchase counts, which ranks poorly.

Recency (``half_life_days``): each event's contribution to ``r`` can be multiplied by
``0.5 ** (age / half_life_days)``, ``age`` being days before the USER's latest training event (so a
user who was away is not faded as a whole): binary takes the pair's largest weight (its latest event),
count sums the weights, amount sums weighted amounts before the ``log1p``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER
from recflow.models.artifact import IdIndex, Recommender, SeenItems, write_model_json, write_user_table
from recflow.models.params import reject_unknown

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recflow.scoring import UserBatch

Confidence = Literal["binary", "count", "amount"]


@dataclass(frozen=True)
class AlsParams:
    """Hyperparameters; defaults are the ones that beat the published MovieLens-100K table here."""

    rank: int = 32
    reg_param: float = 0.1
    alpha: float = 1.0
    max_iter: int = 15
    confidence: Confidence = "binary"
    checkpoint_interval: int = 5
    #: Half-life in days of an event's weight, counted back from the user's latest event; None = no decay.
    half_life_days: float | None = None
    #: ALS user/item blocks; None = the session's default parallelism (one block per core). Spark's own
    #: default of 10 makes small data pay 10 tiny tasks per half-iteration: 2.5x slower on 2 cores.
    num_blocks: int | None = None
    seed: int = 42

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AlsParams:
        reject_unknown(cls, raw, "ALS")
        params = cls(**raw)
        if params.num_blocks is not None and params.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1 or None, got {params.num_blocks}")
        if params.rank < 1 or params.max_iter < 1 or params.reg_param < 0 or params.alpha < 0:
            raise ValueError(f"ALS parameters out of range: {params}")
        if params.half_life_days is not None and params.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {params.half_life_days}")
        if params.confidence not in ("binary", "count", "amount"):
            raise ValueError(f"confidence must be binary, count or amount, got {params.confidence!r}")
        return params


def confidence_frame(interactions: DataFrame, confidence: Confidence, half_life_days: float | None = None) -> DataFrame:
    """One row per (user, item) with the raw strength ``r`` that ALS turns into ``1 + alpha * r``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    weight = F.lit(1.0)
    if half_life_days is not None:
        latest = F.max(COL_TS).over(Window.partitionBy(COL_USER))
        age_days = (latest.cast("double") - F.col(COL_TS).cast("double")) / 86_400.0
        weight = F.pow(F.lit(0.5), age_days / F.lit(float(half_life_days)))
    grouped = interactions.withColumn("_weight", weight).groupBy(COL_USER, COL_ITEM)
    if confidence == "binary":
        return grouped.agg(F.max("_weight").cast("double").alias("strength"))
    if confidence == "count":
        return grouped.agg(F.sum("_weight").cast("double").alias("strength"))
    return grouped.agg(F.log1p(F.sum(F.col(COL_AMOUNT) * F.col("_weight"))).cast("double").alias("strength"))


class AlsRecommender(Recommender):
    """Dot products of the learned user and item factors."""

    family = "als"

    def __init__(
        self,
        index: IdIndex,
        seen: SeenItems,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        params: AlsParams,
    ) -> None:
        super().__init__(index, seen)
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.params = params

    @classmethod
    def fit(cls, spark: SparkSession, train: DataFrame, params: AlsParams) -> AlsRecommender:
        """Fit on a Spark frame of interactions (our column vocabulary)."""
        from pyspark.ml.recommendation import ALS

        strengths = confidence_frame(train, params.confidence, params.half_life_days).cache()
        pairs = strengths.select(COL_USER, COL_ITEM).toPandas()
        index = IdIndex.from_frame(pairs)
        seen = SeenItems.from_frame(pairs, index)
        users = spark.createDataFrame(pd.DataFrame({COL_USER: index.users, "u": np.arange(index.n_users)}))
        items = spark.createDataFrame(pd.DataFrame({COL_ITEM: index.items, "i": np.arange(index.n_items)}))
        ratings = strengths.join(users.hint("broadcast"), COL_USER).join(items.hint("broadcast"), COL_ITEM)
        blocks = params.num_blocks or spark.sparkContext.defaultParallelism
        als = ALS(
            rank=params.rank,
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            regParam=params.reg_param,
            alpha=params.alpha,
            maxIter=params.max_iter,
            implicitPrefs=True,
            userCol="u",
            itemCol="i",
            ratingCol="strength",
            checkpointInterval=params.checkpoint_interval,
            seed=params.seed,
            coldStartStrategy="drop",
        )
        model = als.fit(ratings)
        strengths.unpersist()
        return cls(
            index,
            seen,
            _factor_matrix(model.userFactors.toPandas(), index.n_users, params.rank),
            _factor_matrix(model.itemFactors.toPandas(), index.n_items, params.rank),
            params,
        )

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        return self.user_factors[user_codes] @ self.item_factors.T

    def score_rows(self, batch: UserBatch) -> np.ndarray:
        rows = self.user_factors[batch.codes] if batch.factors is None else batch.factors
        return np.asarray(rows, dtype=np.float32) @ self.item_factors.T

    def score_candidates(self, batch: UserBatch, candidates: np.ndarray) -> np.ndarray:
        rows = self.user_factors[batch.codes] if batch.factors is None else batch.factors
        return np.einsum("nr,ncr->nc", np.asarray(rows, dtype=np.float32), self.item_factors[candidates])

    def for_workers(self) -> AlsRecommender:
        slim = self.item_side_copy()
        slim.user_factors = np.zeros((0, self.item_factors.shape[1]), dtype=np.float32)
        return slim

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        self.seen.save(folder)
        np.save(folder / "user_factors.npy", self.user_factors)
        np.save(folder / "item_factors.npy", self.item_factors)
        write_user_table(folder, self.index, self.user_factors)
        write_model_json(folder, type(self), params=asdict(self.params))

    @classmethod
    def load(cls, folder: Path) -> AlsRecommender:
        from recflow.models.artifact import read_model_json

        return cls(
            IdIndex.load(folder),
            SeenItems.load(folder),
            np.load(folder / "user_factors.npy"),
            np.load(folder / "item_factors.npy"),
            AlsParams.from_dict(read_model_json(folder)["params"]),
        )


def _factor_matrix(factors: pd.DataFrame, n: int, rank: int) -> np.ndarray:
    """Spark returns ``(id, features)`` rows in any order; place them by id (missing ids stay zero)."""
    out = np.zeros((n, rank), dtype=np.float32)
    if len(factors):
        out[factors["id"].to_numpy()] = np.stack(factors["features"].to_numpy()).astype(np.float32)
    return out
