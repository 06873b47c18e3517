"""One evaluation module for every model (ALS, NCF, popularity) and every report (DAG, benchmark).

Pandas and numpy only: models hand over pandas frames, so this runs the same on the Airflow worker,
in the Spark driver and in the benchmark, and there is no second implementation to drift.

Ranking metrics at K (full catalog, seen items removed)
--------------------------------------------------------
``rating_true`` holds the held-out interactions; every distinct (user, item) pair in it is relevant
(binary relevance; filter it beforehand, e.g. ``rating >= 4``, for another notion of relevance).
``rating_pred`` holds each user's recommendations with a score; the top ``k`` per user by descending
score are evaluated, ties keeping the row order given. The recommender must have ranked the FULL
catalog with the user's training (seen) items already removed; :func:`remove_seen` does that for a
scored frame. Why: a seen item can never be a test hit, so leaving it in silently lowers every metric
and makes models that filter incomparable with models that do not.

Users averaged over: every user in ``rating_true`` (each has at least one relevant item). A user with
no recommendations counts as 0; users present only in ``rating_pred`` are ignored. Denominators:

* precision@k = hits in top k / k (a list shorter than k is penalised, as in Recommenders);
* recall@k = hits in top k / number of relevant items;
* nDCG@k: gain 1 per hit, discount 1/log2(rank + 1), ideal DCG from min(number relevant, k) hits;
* MAP@k: mean over users of AP@k = (sum over hits in the top k of precision@rank) / D, where
  D = min(number relevant, k) ("min_relevant_k", Spark MLlib's ``meanAveragePrecisionAt``), or
  D = number relevant ("all_relevant", Microsoft Recommenders' classic ``map_at_k``); both are named;
* hit rate@k = share of users with at least one hit in the top k;
* catalog coverage@k = distinct catalog items recommended in any top k / catalog size.

Propensity precision/recall (the seed demo's metric, done correctly)
--------------------------------------------------------------------
Per-pair classification: each held-out positive (label 1) is paired with sampled negatives (label 0)
drawn uniformly from items the user never interacted with (train or test), never a known positive.
The model scores every pair; pairs scoring at/above a threshold (or in the top fraction) are
predicted positive. See :func:`propensity_pairs` and :func:`propensity_precision_recall`.

All inputs are checked in one decorator, :func:`_validated`, which raises the named subclasses of
:class:`EvaluationInputError`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, ParamSpec, TypeVar

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER, DEFAULT_K, DEFAULT_SEED

log = logging.getLogger(__name__)

#: Binary label column of propensity pairs (1 = held-out positive, 0 = sampled negative).
COL_LABEL: Final = "label"

MapNormalization = Literal["min_relevant_k", "all_relevant"]

P = ParamSpec("P")
R = TypeVar("R")


# --------------------------------------------------------------------------------------------------
# Errors and the one input-checking decorator
# --------------------------------------------------------------------------------------------------
class EvaluationInputError(ValueError):
    """Base class: the evaluation inputs cannot give a meaningful number."""


class MissingColumnsError(EvaluationInputError):
    """A frame lacks a column the metric needs."""


class DuplicatePredictionError(EvaluationInputError):
    """The same (user, item) pair is recommended twice, so ranks and hit counts would be ambiguous."""


class InvalidKError(EvaluationInputError):
    """``k`` is not an integer >= 1."""


class EmptyTruthError(EvaluationInputError):
    """``rating_true`` has no rows, so there is no user to average over."""


class UnknownMetricError(EvaluationInputError):
    """A metric name is not in :data:`METRICS`."""


def _require(df: Any, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise EvaluationInputError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MissingColumnsError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")


def _require_no_nulls(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    for column in columns:
        n_null = int(df[column].isna().sum())
        if n_null:
            raise EvaluationInputError(f"{what} has {n_null} null value(s) in {column!r}")


def _validated(func: Callable[P, R]) -> Callable[P, R]:
    """Check a public function's inputs, recognised by parameter name, before running it.

    Every check lives here, once, instead of being copied into each metric. Column names come from
    the call's own ``col_*`` arguments (or their defaults).
    """
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        user, item = a.get("col_user", COL_USER), a.get("col_item", COL_ITEM)
        score, label = a.get("col_prediction", COL_SCORE), a.get("col_label", COL_LABEL)

        if "k" in a:
            k = a["k"]
            if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
                raise InvalidKError(f"k must be an integer >= 1, got {k!r}")
        if "rating_true" in a:
            truth = a["rating_true"]
            _require(truth, [user, item], "rating_true")
            if truth.empty:
                raise EmptyTruthError("rating_true is empty: there is no user to evaluate")
            _require_no_nulls(truth, [user, item], "rating_true")
        if "rating_pred" in a:
            pred = a["rating_pred"]
            _require(pred, [user, item, score], "rating_pred")
            _require_no_nulls(pred, [user, item, score], "rating_pred")
            duplicated = pred.duplicated([user, item])
            if duplicated.any():
                first = pred.loc[duplicated, [user, item]].iloc[0].tolist()
                raise DuplicatePredictionError(
                    f"rating_pred has {int(duplicated.sum())} duplicate ({user}, {item}) pair(s), "
                    f"e.g. {first}; deduplicate the recommendations first"
                )
            if "rating_true" in a:
                for column in (user, item):
                    if pd.api.types.is_numeric_dtype(a["rating_true"][column]) != (
                        pd.api.types.is_numeric_dtype(pred[column])
                    ):
                        raise EvaluationInputError(
                            f"{column!r} is {a['rating_true'][column].dtype} in rating_true but "
                            f"{pred[column].dtype} in rating_pred; ids would never match"
                        )
        if "normalization" in a and a["normalization"] not in ("min_relevant_k", "all_relevant"):
            raise EvaluationInputError(
                f"normalization must be 'min_relevant_k' or 'all_relevant', got {a['normalization']!r}"
            )
        if a.get("catalog") is not None and len(pd.Index(a["catalog"]).unique()) == 0:
            raise EvaluationInputError("catalog is empty")
        if "metrics" in a and a["metrics"] is not None:
            unknown = [m for m in a["metrics"] if m not in METRICS]
            if unknown:
                raise UnknownMetricError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        for name in ("recs", "train", "positives", "test_positives", "all_interactions"):
            if name in a:
                _require(a[name], [user, item], name)
                _require_no_nulls(a[name], [user, item], name)
        if "items" in a and len(pd.Index(a["items"]).unique()) == 0:
            raise EvaluationInputError("items (the catalog to sample negatives from) is empty")
        if "negatives_per_positive" in a:
            n_neg = a["negatives_per_positive"]
            if isinstance(n_neg, bool) or not isinstance(n_neg, int | np.integer) or n_neg < 1:
                raise EvaluationInputError(f"negatives_per_positive must be an integer >= 1, got {n_neg!r}")
        if "threshold" in a and "top_fraction" in a:
            threshold, top_fraction = a["threshold"], a["top_fraction"]
            if (threshold is None) == (top_fraction is None):
                raise EvaluationInputError("give exactly one of threshold= or top_fraction=")
            if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
                raise EvaluationInputError(f"top_fraction must be in (0, 1], got {top_fraction}")
        if "pairs_scored" in a:
            pairs = a["pairs_scored"]
            _require(pairs, [score, label], "pairs_scored")
            _require_no_nulls(pairs, [score, label], "pairs_scored")
            labels = set(pd.unique(pairs[label]).tolist())
            if not labels <= {0, 1}:
                raise EvaluationInputError(f"{label!r} must hold only 0 and 1, got {sorted(labels)}")
            if labels != {0, 1}:
                raise EvaluationInputError(f"pairs_scored needs both positives and negatives, got {labels}")
        return func(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------------------------------
# Shared merge/rank step
# --------------------------------------------------------------------------------------------------
class _Hits(NamedTuple):
    """What every ranking metric needs, computed once per call by :func:`_rank_hits`."""

    n_relevant: pd.Series  # index: every user in rating_true; value: number of distinct relevant items
    hit_user: np.ndarray  # one entry per relevant item found in a user's top k, sorted by (user, rank)
    hit_rank: np.ndarray  # its 1-based rank in that user's list


def _top_k(rating_pred: pd.DataFrame, *, col_user: str, col_item: str, col_prediction: str, k: int) -> pd.DataFrame:
    """``(col_user, col_item, COL_RANK)`` of each user's ``k`` best-scored rows; ties keep row order."""
    rank = rating_pred.groupby(col_user, sort=False)[col_prediction].rank(method="first", ascending=False)
    keep = (rank <= k).to_numpy()
    top = rating_pred.loc[keep, [col_user, col_item]]
    return top.assign(**{COL_RANK: rank.to_numpy()[keep].astype(np.int64)})


def _rank_hits(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str,
    col_item: str,
    col_prediction: str,
    k: int,
) -> _Hits:
    truth = rating_true[[col_user, col_item]].drop_duplicates()
    top = _top_k(rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    hits = top.merge(truth, on=[col_user, col_item], how="inner").sort_values([col_user, COL_RANK], kind="stable")
    return _Hits(
        n_relevant=truth.groupby(col_user).size(),
        hit_user=hits[col_user].to_numpy(),
        hit_rank=hits[COL_RANK].to_numpy(),
    )


def _per_user_sum(h: _Hits, weights: np.ndarray | float) -> pd.Series:
    """Sum ``weights`` over each user's hits; 0 for users in the truth without a hit."""
    values = np.broadcast_to(np.asarray(weights, dtype=float), h.hit_rank.shape)
    summed = pd.Series(values, index=h.hit_user).groupby(level=0).sum()
    return summed.reindex(h.n_relevant.index, fill_value=0.0)


# --------------------------------------------------------------------------------------------------
# Ranking metrics
# --------------------------------------------------------------------------------------------------
@_validated
def precision_at_k(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
) -> float:
    """Precision at k (min=0, max=1): mean over truth users of hits in the top k / k.

    The denominator is always k, so the maximum is below 1 for users with fewer than k relevant items.
    """
    h = _rank_hits(rating_true, rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    return float((_per_user_sum(h, 1.0) / k).mean())


@_validated
def recall_at_k(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
) -> float:
    """Recall at k (min=0, max=1): mean over truth users of hits in the top k / number relevant.

    The maximum is below 1 for users with more than k relevant items.
    """
    h = _rank_hits(rating_true, rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    return float((_per_user_sum(h, 1.0) / h.n_relevant).mean())


@_validated
def ndcg_at_k(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
) -> float:
    """Normalised discounted cumulative gain at k (min=0, max=1), binary relevance.

    DCG = sum over hits of 1 / log2(rank + 1); the ideal DCG puts min(number relevant, k) hits at
    ranks 1, 2, ..., so a perfect list scores 1 whatever the number of relevant items.
    """
    h = _rank_hits(rating_true, rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    dcg = _per_user_sum(h, 1.0 / np.log2(h.hit_rank + 1.0))
    ideal_prefix = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))  # ideal DCG with 1, 2, ..., k hits
    idcg = ideal_prefix[np.minimum(h.n_relevant.to_numpy(), k) - 1]
    return float((dcg / idcg).mean())


@_validated
def map_at_k(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
    normalization: MapNormalization = "min_relevant_k",
) -> float:
    """Mean average precision at k (min=0, max=1).

    AP@k of a user = (sum over hits in the top k of precision@rank_of_hit) / D, then the mean over
    truth users. ``normalization`` names D:

    * ``"min_relevant_k"`` (default): D = min(number relevant, k), so a perfect top k scores 1 (Spark
      MLlib ``RankingMetrics.meanAveragePrecisionAt``, Kaggle's ``apk``);
    * ``"all_relevant"``: D = number relevant, Microsoft Recommenders' classic ``map_at_k``, for
      comparison with their published tables (lower whenever a user has more than k relevant items).
    """
    h = _rank_hits(rating_true, rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    # hits are sorted by (user, rank): the j-th hit of a user at rank r contributes precision@r = j / r
    nth_hit = pd.Series(h.hit_user).groupby(h.hit_user, sort=False).cumcount().to_numpy() + 1
    precision_sum = _per_user_sum(h, nth_hit / h.hit_rank)
    n_relevant = h.n_relevant if normalization == "all_relevant" else h.n_relevant.clip(upper=k)
    return float((precision_sum / n_relevant).mean())


@_validated
def hit_rate_at_k(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
) -> float:
    """Hit rate at k (min=0, max=1): share of truth users with at least one relevant item in the top k."""
    h = _rank_hits(rating_true, rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    return float((_per_user_sum(h, 1.0) > 0).mean())


@_validated
def catalog_coverage(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
    k: int = DEFAULT_K,
    catalog: Iterable[Hashable],
) -> float:
    """Catalog coverage at k (min=0, max=1): distinct catalog items in any user's top k / catalog size.

    Measures how much of the catalog the recommender ever shows (a popularity model scores low). It
    describes the recommendations themselves, so every user in ``rating_pred`` counts, not only the
    users in ``rating_true`` (which is only validated, for a uniform signature). ``catalog`` is the
    full item set the model ranks over, normally the training items; recommended items outside it are
    not counted (and are logged, as they point to an upstream id bug).
    """
    items = pd.Index(catalog).unique()
    top = _top_k(rating_pred, col_user=col_user, col_item=col_item, col_prediction=col_prediction, k=k)
    recommended = pd.Index(top[col_item]).unique()
    outside = int((~recommended.isin(items)).sum())
    if outside:
        log.warning("%d recommended item(s) are not in the catalog; they are not counted", outside)
    return float((len(recommended) - outside) / len(items))


#: Metric name -> function, so specs, Params and reports refer to metrics by string.
METRICS: Final[Mapping[str, Callable[..., float]]] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "map_all_relevant": functools.partial(map_at_k, normalization="all_relevant"),
    "hit_rate": hit_rate_at_k,
    "coverage": catalog_coverage,
}
#: What :func:`evaluate` computes by default ("coverage" is added when a catalog is given).
DEFAULT_METRICS: Final = ("precision", "recall", "ndcg", "map", "hit_rate")


@_validated
def evaluate(
    rating_true: pd.DataFrame,
    rating_pred: pd.DataFrame,
    *,
    metrics: Sequence[str] | None = None,
    k: int = DEFAULT_K,
    catalog: Iterable[Hashable] | None = None,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_prediction: str = COL_SCORE,
) -> dict[str, float]:
    """Compute several metrics by name; keys are ``"<name>@<k>"``, e.g. ``{"ndcg@10": 0.49}``.

    ``metrics=None`` means :data:`DEFAULT_METRICS`, plus ``"coverage"`` when ``catalog`` is given.
    Asking for ``"coverage"`` without a catalog is an error rather than a silently weaker denominator.
    """
    names = list(metrics) if metrics is not None else [*DEFAULT_METRICS, *(["coverage"] if catalog is not None else [])]
    if "coverage" in names and catalog is None:
        raise EvaluationInputError("'coverage' needs catalog= (the item set the model ranks over)")
    columns = {"col_user": col_user, "col_item": col_item, "col_prediction": col_prediction, "k": k}
    results: dict[str, float] = {}
    for name in names:
        extra = {"catalog": catalog} if name == "coverage" else {}
        results[f"{name}@{k}"] = METRICS[name](rating_true, rating_pred, **columns, **extra)
    return results


@_validated
def remove_seen(
    recs: pd.DataFrame,
    train: pd.DataFrame,
    *,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
) -> pd.DataFrame:
    """Drop the (user, item) pairs of ``recs`` that occur in ``train``; index and order are kept.

    Apply it to the full scored catalog BEFORE cutting to the top k, otherwise users end up with
    fewer than k recommendations.
    """
    seen = pd.MultiIndex.from_frame(train[[col_user, col_item]].drop_duplicates())
    return recs.loc[~pd.MultiIndex.from_frame(recs[[col_user, col_item]]).isin(seen)]


# --------------------------------------------------------------------------------------------------
# Propensity: per-pair classification with sampled negatives
# --------------------------------------------------------------------------------------------------
_REJECTION_ROUNDS: Final = 32


@_validated
def sample_negatives(
    positives: pd.DataFrame,
    all_interactions: pd.DataFrame,
    items: Iterable[Hashable],
    *,
    negatives_per_positive: int,
    seed: int = DEFAULT_SEED,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
) -> pd.DataFrame:
    """Draw ``negatives_per_positive`` negative items for each row of ``positives``.

    Each negative is drawn uniformly, with replacement, from the ``items`` (the model's catalog, i.e.
    the right id range) that the user never interacted with in ``all_interactions`` (pass train AND
    test) or ``positives``: never a known positive. Vectorised rejection sampling, with an exact
    per-user draw for the rare user who has seen nearly the whole catalog.

    Returns:
        ``(col_user, col_item)`` rows, ``negatives_per_positive`` per positive, in positive order.

    Raises:
        EvaluationInputError: a user has interacted with every catalog item (no negative exists).
    """
    catalog = pd.Index(items).unique()
    n_items = len(catalog)
    known = pd.concat([all_interactions[[col_user, col_item]], positives[[col_user, col_item]]])
    users = pd.Index(known[col_user]).unique()
    known_user = users.get_indexer(known[col_user]).astype(np.int64)
    known_item = catalog.get_indexer(known[col_item]).astype(np.int64)
    in_catalog = known_item >= 0
    known_keys = np.unique(known_user[in_catalog] * n_items + known_item[in_catalog])

    n_known = np.bincount(known_keys // n_items, minlength=len(users))
    pos_user = np.repeat(users.get_indexer(positives[col_user]).astype(np.int64), negatives_per_positive)
    if (n_known[pos_user] >= n_items).any():
        full = users[np.unique(pos_user[n_known[pos_user] >= n_items])].tolist()
        raise EvaluationInputError(f"user(s) {full[:5]} interacted with every catalog item: no negative exists")

    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_items, size=len(pos_user))
    todo = np.flatnonzero(np.isin(pos_user * n_items + drawn, known_keys))
    for _ in range(_REJECTION_ROUNDS):
        if todo.size == 0:
            break
        drawn[todo] = rng.integers(0, n_items, size=todo.size)
        todo = todo[np.isin(pos_user[todo] * n_items + drawn[todo], known_keys)]
    for user in np.unique(pos_user[todo]):  # users who saw almost everything: draw exactly
        rows = todo[pos_user[todo] == user]
        seen = known_keys[known_keys // n_items == user] % n_items
        drawn[rows] = rng.choice(np.setdiff1d(np.arange(n_items), seen), size=rows.size)
    return pd.DataFrame({col_user: users[pos_user], col_item: catalog[drawn]})


@_validated
def propensity_pairs(
    positives: pd.DataFrame,
    all_interactions: pd.DataFrame,
    items: Iterable[Hashable],
    *,
    negatives_per_positive: int,
    seed: int = DEFAULT_SEED,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_label: str = COL_LABEL,
) -> pd.DataFrame:
    """The labelled pairs a model must score: distinct held-out positives (label 1) + sampled negatives (0).

    Positives are deduplicated per (user, item): a pair is either positive or not. Negatives come from
    :func:`sample_negatives`. Give the result to the model, add its score in ``COL_SCORE``, and pass it
    to :func:`propensity_precision_recall`.
    """
    distinct = positives[[col_user, col_item]].drop_duplicates().reset_index(drop=True)
    negatives = sample_negatives(
        distinct,
        all_interactions,
        items,
        negatives_per_positive=negatives_per_positive,
        seed=seed,
        col_user=col_user,
        col_item=col_item,
    )
    return pd.concat([distinct.assign(**{col_label: 1}), negatives.assign(**{col_label: 0})], ignore_index=True)


@_validated
def propensity_precision_recall(
    pairs_scored: pd.DataFrame,
    *,
    threshold: float | None = None,
    top_fraction: float | None = None,
    col_prediction: str = COL_SCORE,
    col_label: str = COL_LABEL,
) -> dict[str, float]:
    """Per-pair precision, recall and ROC AUC of a scorer on labelled (user, item) pairs.

    A pair is predicted positive when its score >= ``threshold``, or, with ``top_fraction``, when it
    is among the ``round(top_fraction * n_pairs)`` best-scored pairs (ties by row order); give exactly
    one. ``top_fraction`` suits scores that are not probabilities (ALS dot products).

    Returns:
        ``propensity_precision`` = TP / predicted positives (0 if none predicted; min=0, max=1),
        ``propensity_recall`` = TP / positives (min=0, max=1),
        ``propensity_auc`` = probability that a random positive outscores a random negative, ties
        counting one half (Mann-Whitney; min=0, max=1, 0.5 = random),
        ``propensity_threshold`` = the score cut actually used, and ``n_positive``/``n_negative``.
    """
    scores = pairs_scored[col_prediction].astype(float)
    label = pairs_scored[col_label].to_numpy() == 1
    if threshold is not None:
        predicted = (scores >= threshold).to_numpy()
        cut = float(threshold)
    else:
        assert top_fraction is not None  # the decorator enforces exactly one
        n_top = round(top_fraction * len(scores))
        predicted = (scores.rank(method="first", ascending=False) <= n_top).to_numpy()
        cut = float(scores[predicted].min()) if predicted.any() else float("inf")
    true_pos = int((predicted & label).sum())
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    ranks = scores.rank(method="average").to_numpy()
    auc = (ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {
        "propensity_precision": true_pos / int(predicted.sum()) if predicted.any() else 0.0,
        "propensity_recall": true_pos / n_pos,
        "propensity_auc": float(auc),
        "propensity_threshold": cut,
        "n_positive": float(n_pos),
        "n_negative": float(n_neg),
    }


@_validated
def evaluate_propensity(
    test_positives: pd.DataFrame,
    all_interactions: pd.DataFrame,
    items: Iterable[Hashable],
    score_pairs: Callable[[pd.DataFrame], Any],
    *,
    negatives_per_positive: int = 4,
    seed: int = DEFAULT_SEED,
    threshold: float | None = None,
    top_fraction: float | None = None,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
) -> dict[str, float]:
    """Sample the pairs, let the model score them, and classify: the whole propensity protocol.

    ``score_pairs`` receives a ``(col_user, col_item)`` frame and returns one score per row (array
    or Series, in row order). 4 negatives per positive follows He et al. (2017).
    """
    pairs = propensity_pairs(
        test_positives,
        all_interactions,
        items,
        negatives_per_positive=negatives_per_positive,
        seed=seed,
        col_user=col_user,
        col_item=col_item,
    )
    scores = np.asarray(score_pairs(pairs[[col_user, col_item]]), dtype=float)
    if scores.shape != (len(pairs),):
        raise EvaluationInputError(f"score_pairs returned shape {scores.shape}, expected ({len(pairs)},)")
    return propensity_precision_recall(
        pairs.assign(**{COL_SCORE: scores}), threshold=threshold, top_fraction=top_fraction
    )


# --------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------
def metrics_table(results: Mapping[str, Mapping[str, float]], *, digits: int = 4) -> str:
    """Render ``{model: {metric: value}}`` as a Markdown table, one row per model.

    Columns are the metric names in first-seen order; a metric a model lacks shows as "n/a".
    """
    columns: list[str] = []
    for values in results.values():
        columns.extend(name for name in values if name not in columns)
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for model, values in results.items():
        cells = [f"{values[c]:.{digits}f}" if c in values else "n/a" for c in columns]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
