"""The hold-out of a model whose user side stays in Spark: relevance, top-K and canary, scored on executors.

Why: ALS and NCF fit without collecting the training pairs or the user factors to the driver
(:mod:`recflow.models.tables`), so their evaluation must not collect them either. The rule is the
in-process one (:func:`recflow.evaluation.python_holdout.judgeable_pairs`: known user, known item, not seen in training
unless the policy is ``exclude_seen: none``), applied by Spark joins; the top-K lists come from the one
scoring core (:func:`recflow.scoring.core.score_batch`) run by :func:`recflow.scoring.arrow.score_users` on
the model's item side. The driver receives only what is bounded by the hold-out: its judgeable pairs
and ``k`` rows per hold-out user (and ``k`` rows for each of the 20 canary users).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import pandas as pd

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER
from recflow.evaluation import python_holdout
from recflow.evaluation.canary import CANARY_K, CANARY_USERS, build_canary_record, canary_users
from recflow.models.base import Recommender
from recflow.models.index import COL_I, COL_SEEN, COL_U, ITEMS_TABLE, SEEN_TABLE, USERS_TABLE
from recflow.scoring.arrow import score_users

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

RECS_COLUMNS = (COL_USER, COL_ITEM, COL_SCORE, COL_RANK, COL_SOURCE, COL_PROPENSITY)


def in_tables(model: Recommender) -> bool:
    """True for a model whose users, factor rows and seen items are Parquet tables, not driver memory."""
    return not model.has_user_side and getattr(model, "tables", None) is not None


@dataclass(frozen=True)
class UserFrames:
    """The model's tables as Spark reads them: users (user_id, u[, features]), items (item_id, i),
    seen (u, seen)."""

    users: DataFrame
    items: DataFrame
    seen: DataFrame

    @classmethod
    def of(cls, spark: SparkSession, model: Recommender) -> UserFrames:
        tables = getattr(model, "tables", None)
        if tables is None:
            raise ValueError(f"the {model.family} model has no Parquet tables to score from")
        return cls(
            users=spark.read.parquet(str(tables / USERS_TABLE)),
            items=spark.read.parquet(str(tables / ITEMS_TABLE)).select(COL_ITEM, COL_I),
            seen=spark.read.parquet(str(tables / SEEN_TABLE)),
        )


def judgeable(test: DataFrame, frames: UserFrames, *, exclude_seen: bool) -> DataFrame:
    """Distinct test pairs with a known user and item, minus the user's training items (unless the
    policy keeps repeats): the Spark form of :func:`recflow.evaluation.python_holdout.judgeable_pairs`."""
    from pyspark.sql import functions as F

    pairs = test.select(F.col(COL_USER).cast("string").alias(COL_USER), F.col(COL_ITEM).cast("string").alias(COL_ITEM))
    known = (
        pairs.distinct().join(frames.users.select(COL_USER, COL_U), COL_USER).join(F.broadcast(frames.items), COL_ITEM)
    )
    if exclude_seen:
        seen_pairs = frames.seen.select(COL_U, F.explode(COL_SEEN).alias(COL_I))
        known = known.join(seen_pairs, [COL_U, COL_I], "left_anti")
    return known.select(COL_USER, COL_ITEM)


def top_k_on_executors(
    spark: SparkSession, model: Recommender, frames: UserFrames, users: DataFrame, *, k: int, exclude_seen: bool
) -> pd.DataFrame:
    """Top-``k`` over the full catalog for the known users among ``users`` (a ``user_id`` column), scored
    on executors; returns at most ``k`` rows per user (the same frame as :meth:`Recommender.recommend`)."""
    from pyspark.sql import functions as F

    inputs = users.select(COL_USER).distinct().join(frames.users, COL_USER)
    empty = F.array().cast("array<int>")
    if exclude_seen:
        inputs = inputs.join(frames.seen, COL_U, "left").withColumn(COL_SEEN, F.coalesce(F.col(COL_SEEN), empty))
    else:
        inputs = inputs.withColumn(COL_SEEN, empty)
    # a fresh key per call: workers cache the unpickled model by version, and two search trials
    # would otherwise share one
    version = f"holdout-{uuid.uuid4().hex}"
    parts = spark.sparkContext.defaultParallelism
    scored = score_users(inputs, model, version=version, k=k, partitions=parts, n_candidates=0)
    recs = cast(pd.DataFrame, scored.select(*RECS_COLUMNS).toPandas())
    return recs.astype({COL_RANK: "int64"})


class Judged(NamedTuple):
    """A model's hold-out judgement: its metrics, the judged pairs and the top-K lists they came from
    (the lists are what the calibration's labelled pairs are drawn from)."""

    metrics: dict[str, float]
    truth: pd.DataFrame
    recs: pd.DataFrame


def evaluate_on_holdout(
    spark: SparkSession,
    model: Recommender,
    test: DataFrame,
    k: int,
    also_k: Sequence[int] = (),
    *,
    exclude_seen: bool = True,
) -> Judged:
    """Metrics at ``k`` (and ``also_k``), the judged pairs and the top-K lists of ``model`` on ``test``,
    wherever the model's user side lives.

    A model fitted into Parquet tables (ALS, NCF) is scored on executors (:func:`_evaluate_on_executors`),
    so neither its training pairs nor its user factors reach the driver; a model held in memory (the
    families that fit on the driver) is scored in process. Both rank with the one scoring core.
    """
    cutoffs = sorted({k, *also_k})
    if in_tables(model):
        return _evaluate_on_executors(spark, model, test, cutoffs, exclude_seen=exclude_seen)
    truth = python_holdout.holdout_truth(test, model, exclude_seen=exclude_seen)
    python_holdout.require_truth(truth)
    recs = model.recommend(truth[COL_USER].unique(), k=cutoffs[-1], exclude_seen=exclude_seen)
    return Judged(python_holdout.holdout_metrics(model, truth, recs, cutoffs), truth, recs)


def _evaluate_on_executors(
    spark: SparkSession, model: Recommender, test: DataFrame, cutoffs: Sequence[int], *, exclude_seen: bool
) -> Judged:
    """:func:`evaluate_on_holdout` for a model in tables: the judged pairs by Spark joins, one top-max(cutoffs)
    list per hold-out user from executors; only those reach the driver."""
    frames = UserFrames.of(spark, model)
    truth_frame = judgeable(test, frames, exclude_seen=exclude_seen).cache()
    try:
        truth = cast(pd.DataFrame, truth_frame.toPandas())
        recs = top_k_on_executors(spark, model, frames, truth_frame, k=cutoffs[-1], exclude_seen=exclude_seen)
    finally:
        truth_frame.unpersist()
    return Judged(python_holdout.holdout_metrics(model, truth, recs, cutoffs), truth, recs)


def record_canary(spark: SparkSession, model: Recommender) -> dict[str, Any]:
    """``canary.json`` for a model in tables: the canary users are chosen in Spark by the same rule
    (smallest sha256 of the id) and scored there, so the fresh-process check compares like with like."""
    from pyspark.sql import functions as F

    frames = UserFrames.of(spark, model)
    picked = frames.users.select(COL_USER).orderBy(F.sha2(F.col(COL_USER), 256)).limit(CANARY_USERS)
    users = canary_users([str(r[COL_USER]) for r in picked.collect()])
    chosen = spark.createDataFrame([(u,) for u in users], f"{COL_USER} string")
    top_k = top_k_on_executors(spark, model, frames, chosen, k=CANARY_K, exclude_seen=True)
    return build_canary_record(users, top_k, CANARY_K)
