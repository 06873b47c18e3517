"""One evaluation module for every model (ALS, NCF, popularity) and every report (DAG, benchmark).

Pandas and numpy only: models hand over pandas frames, so this runs the same on the Airflow worker,
in the Spark driver and in the benchmark, and there is no second implementation to drift.

Ranking metrics at K (full catalog, seen items removed)
--------------------------------------------------------
``rating_true`` holds the held-out interactions; every distinct (user, item) pair in it is relevant
(binary relevance; filter it beforehand, e.g. ``rating >= 4``, for another notion of relevance).
``rating_pred`` holds each user's recommendations with a score; the top ``k`` per user by descending
score are evaluated, ties keeping the row order given. The recommender must have ranked the FULL
catalog with the user's training (seen) items already removed (the recommenders do it with
``exclude_seen=True``). Why: a seen item can never be a test hit, so leaving it in silently lowers every metric
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

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER, DEFAULT_K

log = logging.getLogger(__name__)

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
        _check_arguments(bound.arguments)
        return func(*args, **kwargs)

    return wrapper


def _check_arguments(a: Mapping[str, Any]) -> None:
    """Every check that applies to a call's (bound, defaulted) arguments, in a fixed order."""
    user, item = a.get("col_user", COL_USER), a.get("col_item", COL_ITEM)
    score = a.get("col_prediction", COL_SCORE)
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
        _check_predictions(a["rating_pred"], a.get("rating_true"), user, item, score)
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


def _check_predictions(pred: Any, truth: pd.DataFrame | None, user: str, item: str, score: str) -> None:
    """``rating_pred``: the columns, no nulls, one row per (user, item), ids of the truth's kind (if given)."""
    _require(pred, [user, item, score], "rating_pred")
    _require_no_nulls(pred, [user, item, score], "rating_pred")
    duplicated = pred.duplicated([user, item])
    if duplicated.any():
        first = pred.loc[duplicated, [user, item]].iloc[0].tolist()
        raise DuplicatePredictionError(
            f"rating_pred has {int(duplicated.sum())} duplicate ({user}, {item}) pair(s), "
            f"e.g. {first}; deduplicate the recommendations first"
        )
    if truth is None:
        return
    for column in (user, item):
        if pd.api.types.is_numeric_dtype(truth[column]) != pd.api.types.is_numeric_dtype(pred[column]):
            raise EvaluationInputError(
                f"{column!r} is {truth[column].dtype} in rating_true but "
                f"{pred[column].dtype} in rating_pred; ids would never match"
            )


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
