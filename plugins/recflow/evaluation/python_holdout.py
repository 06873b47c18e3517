"""The hold-out rule, pandas half: the pairs a model is judged on, and its metrics on them, in process.

The rule (one rule, two halves with the same function names, as Microsoft Recommenders pairs its
``python_`` and ``spark_`` modules): events from ``holdout_start`` on are the hold-out; a held-out
(user, item) pair counts when the user and the item were known in training and the user did not have the
item there (unless the spec's policy keeps repeats, ``exclude_seen: none``). :func:`judgeable` is that rule,
against a model's id index and seen items; :func:`judgeable_pairs` applies it to a trained model and
:func:`judgeable_given_training` to the training pairs themselves (the compare step, which judges every
model of a run and the champion on one hold-out). Models that fit into Parquet tables are judged by
:mod:`recflow.evaluation.spark_holdout` on executors; the rest, the compare step and the quality benchmark
judge here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.data.window import TrainingDataError
from recflow.evaluation.canary import CANARY_K, canary_users, scored_top_k
from recflow.evaluation.metrics import evaluate
from recflow.models.base import Recommender
from recflow.models.index import IdIndex, SeenItems

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def holdout_truth(test: DataFrame, recommender: Recommender, *, exclude_seen: bool = True) -> pd.DataFrame:
    """Distinct test pairs the model can be judged on (known user, known item, not seen in training)."""
    pairs = cast(pd.DataFrame, test.select(COL_USER, COL_ITEM).distinct().toPandas())
    return judgeable_pairs(pairs, recommender, exclude_seen=exclude_seen)


def judgeable_pairs(held_out: pd.DataFrame, recommender: Recommender, *, exclude_seen: bool = True) -> pd.DataFrame:
    """The distinct held-out (user, item) pairs with a known user and item that the user did not have in
    training: the relevance the pipeline's hold-out and the quality benchmark both judge a model on.

    Why drop the rest: no model can rank an item it never saw, and a seen item is removed from every
    ranking, so either kind of pair would only lower every model's score alike. Under the spec's
    ``exclude_seen: none`` policy (repeat purchases) seen items stay in the rankings, so repeat pairs
    stay relevant (``exclude_seen=False``).
    """
    return judgeable(held_out, recommender.index, recommender.seen if exclude_seen else None)


def judgeable_given_training(held_out: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """:func:`judgeable` with the training (user, item) pairs as the index and the seen items: the pairs
    every model trained on ``train`` can be judged on, whatever it kept (the compare step's shared hold-out).

    The index and seen items are built the way the families fitted on the driver build theirs
    (:meth:`IdIndex.from_frame`, :meth:`SeenItems.from_frame`): the same rule, with the lake's training
    days in place of one model's memory.
    """
    index = IdIndex.from_frame(train)
    return judgeable(held_out, index, SeenItems.from_frame(train, index))


def judgeable(held_out: pd.DataFrame, index: IdIndex, seen: SeenItems | None) -> pd.DataFrame:
    """The hold-out rule: the distinct held-out (user, item) pairs whose user and item ``index`` knows and
    that are not among the ``seen`` training pairs (``None``: repeats stay), in first-seen order.

    Its Spark form is :func:`recflow.evaluation.spark_holdout.judgeable`, which reads the index and the seen
    pairs from the model's Parquet tables.
    """
    pairs = held_out[[COL_USER, COL_ITEM]].drop_duplicates()
    users = index.user_codes(pairs[COL_USER])
    items = index.item_codes(pairs[COL_ITEM])
    known = (users >= 0) & (items >= 0)
    pairs, users, items = pairs[known], users[known], items[known]
    if seen is None:
        return pairs.reset_index(drop=True)
    n_items = index.n_items
    seen_keys = np.repeat(np.arange(len(seen.indptr) - 1), np.diff(seen.indptr)) * n_items + seen.indices
    is_seen = np.isin(users.astype(np.int64) * n_items + items, seen_keys)
    return pairs[~is_seen].reset_index(drop=True)


def score_holdout(
    recommender: Recommender, truth: pd.DataFrame, k: int, also_k: Sequence[int] = (), *, exclude_seen: bool = True
) -> dict[str, float]:
    """Ranking metrics at ``k`` (and at each of ``also_k``) over the full catalog, seen items removed
    unless the spec's policy is ``exclude_seen: none`` (the same policy batch scoring applies).

    ``also_k`` exists so a run asked for, say, k=20 still reports the cut-off the promotion policy
    compares on (``ndcg@10``); one top-max(k) list serves every cut-off.
    """
    require_truth(truth)
    cutoffs = sorted({k, *also_k})
    recs = recommender.recommend(truth[COL_USER].unique(), k=cutoffs[-1], exclude_seen=exclude_seen)
    return holdout_metrics(recommender, truth, recs, cutoffs)


def holdout_metrics(
    recommender: Recommender, truth: pd.DataFrame, recs: pd.DataFrame, cutoffs: Sequence[int]
) -> dict[str, float]:
    """The metrics of top-max(cutoffs) lists against the judged pairs, at every cut-off."""
    require_truth(truth)
    metrics: dict[str, float] = {}
    for cutoff in cutoffs:
        metrics.update(evaluate(truth, recs, k=cutoff, catalog=recommender.index.items))
    return metrics


def require_truth(truth: pd.DataFrame) -> None:
    """Refuse an empty hold-out: no metric means anything on it."""
    if truth.empty:
        raise TrainingDataError("the hold-out has no pairs with known users and items: widen the window")


def record_canary(recommender: Recommender, k: int = CANARY_K) -> dict[str, Any]:
    """The expected answers, written into the artifact as ``canary.json`` at training time."""
    users = canary_users(list(recommender.index.users))
    return {"k": k, "users": users, "top_k": scored_top_k(recommender, users, k)}
