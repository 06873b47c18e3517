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

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER
from recflow.models.base import read_model_json, write_model_json
from recflow.models.index import COL_I, COL_U, ArtifactError, IdIndex, SeenItems, read_items
from recflow.models.params import Rule, parse_params
from recflow.models.tables import (
    TableBackedRecommender,
    dense_codes,
    factor_frame,
    popularity_frame,
    seen_frame,
    write_tables,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recflow.scoring.core import UserBatch

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
        return parse_params(cls, raw, "ALS")

    def rules(self) -> Iterator[Rule]:
        yield (
            self.num_blocks is not None and self.num_blocks < 1,
            f"num_blocks must be >= 1 or None, got {self.num_blocks}",
        )
        yield (
            self.rank < 1 or self.max_iter < 1 or self.reg_param < 0 or self.alpha < 0,
            f"ALS parameters out of range: {self}",
        )
        yield (
            self.half_life_days is not None and self.half_life_days <= 0,
            f"half_life_days must be > 0 or None, got {self.half_life_days}",
        )
        yield (
            self.confidence not in ("binary", "count", "amount"),
            f"confidence must be binary, count or amount, got {self.confidence!r}",
        )


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


class AlsRecommender(TableBackedRecommender):
    """Dot products of the learned user and item factors.

    :meth:`fit` keeps the data in Spark: codes come from :func:`recflow.models.tables.dense_codes`, MLlib
    fits on the Spark frame, and Spark writes the factors, id maps and seen items as Parquet tables
    into ``work_dir``. The model it returns holds the item side only; :meth:`with_user_side` (or
    loading the saved artifact) reads the rest, for a process that serves every user from memory.
    """

    family = "als"
    user_factors_in_table = True

    def __init__(
        self,
        index: IdIndex,
        seen: SeenItems,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        params: AlsParams,
        *,
        popularity: np.ndarray | None = None,
        tables: Path | None = None,
    ) -> None:
        super().__init__(index, seen, popularity=popularity, tables=tables)
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.params = params

    @classmethod
    def fit(cls, spark: SparkSession, train: DataFrame, params: AlsParams, work_dir: Path) -> AlsRecommender:
        """Fit on a Spark frame of interactions (our column vocabulary); the tables go to ``work_dir``."""
        from pyspark.ml.recommendation import ALS
        from pyspark.sql import functions as F

        strengths = confidence_frame(train, params.confidence, params.half_life_days).cache()
        users = dense_codes(strengths, COL_USER, COL_U)
        items = dense_codes(strengths, COL_ITEM, COL_I)
        ratings = (
            strengths.join(users, COL_USER).join(F.broadcast(items), COL_ITEM).select(COL_U, COL_I, "strength").cache()
        )
        blocks = params.num_blocks or spark.sparkContext.defaultParallelism
        als = ALS(
            rank=params.rank,
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            regParam=params.reg_param,
            alpha=params.alpha,
            maxIter=params.max_iter,
            implicitPrefs=True,
            userCol=COL_U,
            itemCol=COL_I,
            ratingCol="strength",
            checkpointInterval=params.checkpoint_interval,
            seed=params.seed,
            coldStartStrategy="drop",
        )
        model = als.fit(ratings)
        try:
            write_tables(
                work_dir,
                users=users.join(factor_frame(model.userFactors, COL_U), COL_U, "left"),
                items=items.join(factor_frame(model.itemFactors, COL_I), COL_I, "left").join(
                    popularity_frame(ratings), COL_I, "left"
                ),
                seen=seen_frame(ratings),
            )
        finally:
            strengths.unpersist()
            ratings.unpersist()
        return cls.from_tables(work_dir, params)

    @classmethod
    def from_tables(cls, folder: Path, params: AlsParams) -> AlsRecommender:
        """The item side of the model whose tables are in ``folder`` (the user side stays in Parquet)."""
        item = read_items(folder)
        if item.factors is None:
            raise ArtifactError(f"{folder}: the item table has no factors")
        no_users = np.zeros((0, item.factors.shape[1]), dtype=np.float32)
        return cls._item_side(item, folder, user_factors=no_users, item_factors=item.factors, params=params)

    def _fields(self, user_factors: np.ndarray | None) -> dict[str, Any]:
        assert user_factors is not None
        return {"user_factors": user_factors, "item_factors": self.item_factors, "params": self.params}

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        return self.user_factors[user_codes] @ self.item_factors.T

    def score_rows(self, batch: UserBatch) -> np.ndarray:
        return self.query_vectors(batch) @ self.item_factors.T

    def score_candidates(self, batch: UserBatch, candidates: np.ndarray) -> np.ndarray:
        return np.einsum("nr,ncr->nc", self.query_vectors(batch), self.item_factors[candidates])

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def query_vectors(self, batch: UserBatch) -> np.ndarray:
        """The users' factor rows: shipped with the batch (Spark) or looked up by code."""
        rows = self.user_factors[batch.codes] if batch.factors is None else batch.factors
        return np.asarray(rows, dtype=np.float32)

    def for_workers(self) -> AlsRecommender:
        slim = self.item_side_copy()
        slim.user_factors = np.zeros((0, self.item_factors.shape[1]), dtype=np.float32)
        return slim

    def save(self, folder: Path) -> None:
        """The tables (copied as Spark wrote them, or written from memory) and ``model.json``."""
        self._save_tables(folder, self.user_factors, self.item_factors)
        write_model_json(folder, type(self), params=asdict(self.params))

    @classmethod
    def load(cls, folder: Path) -> AlsRecommender:
        return cls.load_item_side(folder).with_user_side()

    @classmethod
    def load_item_side(cls, folder: Path) -> AlsRecommender:
        params = AlsParams.from_dict(read_model_json(folder)["params"])
        if (folder / "user_factors.npy").exists():  # schema 1: JSON ids, NumPy factors
            return cls(
                IdIndex.load(folder),
                SeenItems.load(folder),
                np.load(folder / "user_factors.npy"),
                np.load(folder / "item_factors.npy"),
                params,
            )
        return cls.from_tables(folder, params)
