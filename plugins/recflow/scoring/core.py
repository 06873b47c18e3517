"""The one scoring core: top-K items per user for a batch, shared by batch, streaming and evaluation.

:func:`score_batch` takes a loaded model (:class:`ScorableModel`, e.g. a
:class:`~recflow.models.base.Recommender`), a :class:`UserBatch`
(dense user codes, optionally the users' factor rows, and each user's seen item codes as a ragged
array) and ``k``, and returns a :class:`TopK` of item codes, scores and sources. It is plain NumPy on
float32 with no Spark or Airflow import, so a Spark ``mapInArrow`` worker and a long-running Kafka
consumer call the same function on the same arrays.

Why these choices:

* **Seen items come from the caller.** The batch job computes them in Spark from the lake under the
  spec's ``exclude_seen`` policy and hands them in with each user; the scorer never consults the
  training-time index, so an item bought after the training window is still removed.
* **Selection below the GEMM's cost.** ``argpartition`` over a 10^4-item row costs about as much as the
  row's GEMM. :func:`select_top_k` instead takes the maximum of ``B >= k`` interleaved column buckets
  (contiguous SIMD maxima), whose k-th largest value is a lower bound of the row's k-th largest score;
  only entries at or above it (about k per row) are sorted. Blocks of :data:`BLOCK_BYTES` keep the
  score matrix in cache.
* **Fallback on a stated scale.** Users the model never saw get item popularity in training divided by
  the most popular item's count, so fallback scores lie in (0, 1]; their rows say ``source='fallback'``.
* **Propensity beside the score.** Each model row's score is mapped to a propensity by the model's
  calibration (:func:`recflow.scoring.calibration.propensities`) in one place, :func:`with_propensity`:
  :func:`score_batch` calls it, and so does any step that re-ranks a :class:`TopK` afterwards (the
  exploration slots of :mod:`recflow.scoring.explore`), so batch, streaming and any other path give the
  same propensity for the same pair (NaN where there is no model score to map).
* **An index for large catalogs.** A model whose artifact holds an approximate nearest-neighbour index
  of its item factors (:mod:`recflow.scoring.ann`) and whose catalog has at least ``ann_min_items``
  items gets each known user's candidates from the index; they are then re-scored exactly by the model
  and the seen items removed like any candidate list. Below that size, or without an index, every item
  is scored exactly.
* **Exhausted users are data, not errors.** A user with nothing left to recommend gets 0 rows and is
  counted in :attr:`TopK.exhausted`.

Ties are broken by the lower item code, so the output is a pure function of the inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER
from recflow.scoring.ann import ANN_MIN_ITEMS, CandidateIndex
from recflow.scoring.calibration import Calibration, propensities


class _Catalog(Protocol):
    @property
    def n_items(self) -> int: ...


class ScorableModel(Protocol):
    """What the core needs of a model (:class:`recflow.models.base.Recommender` is one): typed here so the
    core does not import the models, which call it."""

    @property
    def index(self) -> _Catalog: ...

    @property
    def candidate_pool(self) -> int | None: ...

    def score_rows(self, batch: UserBatch) -> np.ndarray: ...

    def score_candidates(self, batch: UserBatch, candidates: np.ndarray) -> np.ndarray: ...

    def fallback_scores(self) -> np.ndarray: ...

    @property
    def calibration(self) -> Calibration | None: ...

    @property
    def candidate_index(self) -> CandidateIndex | None: ...

    def query_vectors(self, batch: UserBatch) -> np.ndarray | None: ...


#: Target size of one block of the (users x items) float32 score matrix: a few L2-sized tiles.
BLOCK_BYTES: Final = 4 << 20
SOURCE_MODEL: Final = "model"
SOURCE_FALLBACK: Final = "fallback"
_FLOAT_MIN: Final = np.float32(np.finfo(np.float32).min)


class ScoringError(RuntimeError):
    """Scoring cannot run (no champion, no active users, unreadable artifact, bad arguments)."""


@dataclass(frozen=True)
class Ragged:
    """One variable-length int array per row: ``values[offsets[i]:offsets[i + 1]]`` is row ``i``.

    The layout of an Arrow ``list<int>`` column, so Spark's arrays arrive without a Python loop.
    """

    offsets: np.ndarray
    values: np.ndarray

    @classmethod
    def empty(cls, n: int) -> Ragged:
        return cls(np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int32))

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> Ragged:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        values = np.fromiter((int(v) for r in rows for v in r), dtype=np.int32, count=int(lengths.sum()))
        return cls(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), values)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def row_ids(self) -> np.ndarray:
        """The row each value belongs to (same length as ``values``)."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.offsets))

    @classmethod
    def from_spans(cls, values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> Ragged:
        """Row ``i`` is ``values[starts[i] : starts[i] + lengths[i]]`` (gathered without a loop)."""
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        within = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        return cls(offsets, values[np.repeat(starts, lengths) + within].astype(np.int32, copy=False))

    def take(self, rows: np.ndarray) -> Ragged:
        """The ragged array of the selected rows, in the given order."""
        starts = self.offsets[:-1][rows]
        return Ragged.from_spans(self.values, starts, self.offsets[1:][rows] - starts)


@dataclass(frozen=True)
class UserBatch:
    """The users of one batch and what the scorer needs about each of them.

    ``codes`` are the model's dense user codes (-1: unknown to the model, scored by the fallback);
    ``factors`` are the users' factor rows when the caller joined them (Spark ships only the rows a
    partition needs), else the model looks codes up itself; ``seen`` holds the item codes to exclude.
    """

    codes: np.ndarray
    seen: Ragged
    factors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.seen.n_rows != len(self.codes):
            raise ValueError(f"seen has {self.seen.n_rows} rows for {len(self.codes)} users")
        if self.factors is not None and len(self.factors) != len(self.codes):
            raise ValueError(f"factors has {len(self.factors)} rows for {len(self.codes)} users")

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, rows: np.ndarray) -> UserBatch:
        return UserBatch(self.codes[rows], self.seen.take(rows), None if self.factors is None else self.factors[rows])


@dataclass(frozen=True)
class TopK:
    """Top-K per user: ``items``/``scores``/``propensity`` are (n x k), padded with -1 / NaN past ``counts``
    (``propensity`` is NaN on fallback rows and for a model without calibration)."""

    items: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    fallback: np.ndarray
    propensity: np.ndarray

    @property
    def exhausted(self) -> int:
        """Users with nothing left to recommend (every item seen or masked)."""
        return int((self.counts == 0).sum())

    def long(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat (row, rank 1..k, item code, score, is_fallback) arrays of the valid entries, row-major."""
        k = self.items.shape[1]
        valid = np.arange(k)[None, :] < self.counts[:, None]
        rows = np.nonzero(valid)[0]
        ranks = (np.nonzero(valid)[1] + 1).astype(np.int32)
        return rows, ranks, self.items[valid], self.scores[valid], self.fallback[rows]

    def long_propensity(self) -> np.ndarray:
        """The propensities of :meth:`long`'s entries, in the same order."""
        valid = np.arange(self.items.shape[1])[None, :] < self.counts[:, None]
        return np.asarray(self.propensity[valid], dtype=np.float64)


def select_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the ``k`` largest finite scores in descending order (ties: lower column first).

    Returns (columns int32 (n x k) padded -1, scores float32 (n x k) padded NaN, counts (n,)). ``-inf``
    and NaN entries are never selected, so masked items cannot come back. Costs a few passes over the
    matrix plus a sort of about ``k`` candidates per row (see the module docstring).
    """
    n, m = scores.shape
    k = min(k, m)
    cols_out = np.full((n, k), -1, dtype=np.int32)
    vals_out = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or k == 0:
        return cols_out, vals_out, np.zeros(n, dtype=np.int32)
    n_buckets = min(m, max(8 * k, 128))
    width = m // n_buckets
    bucket_max = scores[:, : width * n_buckets].reshape(n, width, n_buckets).max(axis=1)
    tail = m - width * n_buckets
    if tail:
        np.maximum(bucket_max[:, :tail], scores[:, width * n_buckets :], out=bucket_max[:, :tail])
    if np.isnan(bucket_max).any():  # a model produced NaN: never select it
        # neginf too: nan_to_num's default turns -inf (a masked, seen item) into the lowest finite float,
        # which the threshold below then lets back in
        np.nan_to_num(scores, copy=False, nan=-np.inf, neginf=-np.inf)
        return select_top_k(scores, k)
    threshold = np.partition(bucket_max, n_buckets - k, axis=1)[:, n_buckets - k]
    threshold = np.maximum(threshold, _FLOAT_MIN)  # rows with fewer than k finite scores: drop the -inf
    flat = np.flatnonzero(scores >= threshold[:, None])
    rows, cols = flat // m, (flat % m).astype(np.int32)
    vals = scores.reshape(-1)[flat]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts_all = np.bincount(rows, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    pos = np.arange(len(rows)) - starts[rows]
    keep = pos < k
    cols_out[rows[keep], pos[keep]] = cols[keep]
    vals_out[rows[keep], pos[keep]] = vals[keep]
    return cols_out, vals_out, np.minimum(counts_all, k).astype(np.int32)


def mask_seen(scores: np.ndarray, seen: Ragged) -> None:
    """Set every seen (row, item) entry of a full-catalog score matrix to ``-inf``, in place."""
    if len(seen.values):
        scores[seen.row_ids(), seen.values] = -np.inf


def _seen_among(candidates: np.ndarray, seen: Ragged, n_items: int) -> np.ndarray:
    """Boolean (n x c): True where the candidate is padding (-1) or in that row's seen items."""
    rows = np.arange(len(candidates), dtype=np.int64)[:, None]
    keys = rows * n_items + candidates
    seen_keys = seen.row_ids() * n_items + seen.values
    return (candidates < 0) | np.isin(keys, seen_keys)


def _writable_float32(block: np.ndarray) -> np.ndarray:
    """The model's scores as a float32 matrix this module may overwrite (no copy when it already is)."""
    if block.dtype == np.float32 and block.flags.writeable and block.flags.c_contiguous:
        return block
    return np.array(block, dtype=np.float32, order="C")


def block_rows(n_items: int) -> int:
    """Users per block so one block of float32 scores is about :data:`BLOCK_BYTES`."""
    return max(16, BLOCK_BYTES // (4 * max(n_items, 1)))


def popular_candidates(model: ScorableModel, n: int) -> np.ndarray:
    """The ``n`` most popular training items (codes), most popular first; ties by lower code."""
    popularity = model.fallback_scores()
    order = np.lexsort((np.arange(len(popularity)), -popularity))
    return order[: min(n, len(popularity))].astype(np.int32)


def score_batch(
    model: ScorableModel,
    batch: UserBatch,
    *,
    k: int,
    candidates: np.ndarray | None = None,
    n_candidates: int | None = None,
    ann_min_items: int = ANN_MIN_ITEMS,
) -> TopK:
    """Top-``k`` unseen items for every user of ``batch``.

    Known users are scored by the model: over the full catalog, or over ``candidates`` (an (n x c) int
    matrix of item codes, -1 padded, e.g. an ALS model's top-200) when given. A model that declares a
    ``candidate_pool`` (NCF) re-ranks the ``n_candidates`` (default: that pool) most popular items when
    no candidates are given; ``n_candidates=0`` asks for the full catalog. Unknown users (code -1) get
    the popularity fallback (:meth:`ScorableModel.fallback_scores`, in (0, 1]); ``candidates`` given by
    the caller bound their rows too (a caller re-ranking its own list: the streaming scorer's
    ``item_ids``). Seen items are always removed, and rows past a user's count are padding. Otherwise a
    model with a :attr:`ScorableModel.candidate_index` and at least ``ann_min_items`` items takes its
    known users' candidates from the index (re-scored exactly) when ``n_candidates`` is None (the model's
    own choice: batch, Kafka and HTTP scoring); metrics ask for the full catalog (``n_candidates=0``).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, n_items = len(batch), model.index.n_items
    k_eff = min(k, n_items)
    items = np.full((n, k_eff), -1, dtype=np.int32)
    scores = np.full((n, k_eff), np.nan, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int32)
    known = batch.codes >= 0
    explicit = candidates is not None
    pool = model.candidate_pool if n_candidates is None else (n_candidates or None)
    if candidates is None and pool is not None and known.any():
        candidates = np.broadcast_to(popular_candidates(model, pool), (n, min(pool, n_items)))
    by_index = candidates is None and n_candidates is None and pool is None and n_items >= ann_min_items
    ann = model.candidate_index if by_index else None
    if ann is not None:
        step = block_rows(ann.params.pool * ann.dim)
    else:
        step = block_rows(n_items if candidates is None else candidates.shape[1])
    for group, by_model in ((np.flatnonzero(known), True), (np.flatnonzero(~known), False)):
        for start in range(0, len(group), step):
            rows = group[start : start + step]
            sub = batch.take(rows)
            if candidates is not None and (by_model or explicit):
                cols, vals, cnt = _top_of_candidates(model, sub, candidates[rows], by_model, k_eff)
            elif ann is not None and by_model:
                cols, vals, cnt = _top_of_index(model, ann, sub, k_eff)
            else:
                cols, vals, cnt = _top_of_catalog(model, sub, by_model, k_eff)
            width = cols.shape[1]
            items[rows, :width], scores[rows, :width], counts[rows] = cols, vals, cnt
    return with_propensity(model, items, scores, counts, ~known)


def with_propensity(
    model: ScorableModel, items: np.ndarray, scores: np.ndarray, counts: np.ndarray, fallback: np.ndarray
) -> TopK:
    """The :class:`TopK` of these lists with each entry's propensity derived from its score by the model's
    calibration: the only place a propensity is computed, after scoring and again after any re-ranking
    (an exploration slot), so no caller maps scores itself. NaN scores (padding, an explored item the model
    has no score for) and fallback rows get NaN."""
    propensity = propensities(model.calibration, scores, fallback)
    return TopK(items=items, scores=scores, counts=counts, fallback=fallback, propensity=propensity)


def _top_of_candidates(
    model: ScorableModel, users: UserBatch, candidates: np.ndarray, by_model: bool, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item codes, scores and counts of the users' top ``k`` among their unseen ``candidates`` (-1 padded),
    scored by the model or, for users it does not know, by the popularity fallback."""
    cand = np.ascontiguousarray(candidates, dtype=np.int32)
    if by_model:
        block = np.asarray(model.score_candidates(users, np.maximum(cand, 0)), dtype=np.float32)
    else:
        block = model.fallback_scores()[np.maximum(cand, 0)].astype(np.float32)
    block[_seen_among(cand, users.seen, model.index.n_items)] = -np.inf
    pos, vals, cnt = select_top_k(block, k)
    return np.where(pos >= 0, np.take_along_axis(cand, np.maximum(pos, 0), axis=1), -1), vals, cnt


def _top_of_index(
    model: ScorableModel, ann: CandidateIndex, users: UserBatch, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The users' top ``k`` among the index's candidates, re-scored exactly with their seen items removed.

    Each user asks for the index's pool plus as many items as the most-seen user of the block has seen,
    so removing seen items never leaves fewer than the pool to choose from.
    """
    queries = model.query_vectors(users)
    if queries is None:
        raise ScoringError("the model has an item index but gives no query vectors for its users")
    most_seen = int(np.diff(users.seen.offsets).max(initial=0))
    candidates = ann.candidates(queries, max(ann.params.pool, k) + most_seen)
    return _top_of_candidates(model, users, candidates, True, k)


def _top_of_catalog(
    model: ScorableModel, users: UserBatch, by_model: bool, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item codes, scores and counts of the users' top ``k`` unseen items of the whole catalog, scored by
    the model or, for users it does not know, by the popularity fallback."""
    if by_model:
        block = _writable_float32(model.score_rows(users))
    else:
        block = np.tile(model.fallback_scores(), (len(users), 1))
    mask_seen(block, users.seen)
    return select_top_k(block, k)


def top_k_frame(top: TopK, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """The long (user, item, score, rank, source, propensity) frame of a :class:`TopK`, ids looked up by code."""
    rows, ranks, items, scores, fallback = top.long()
    return pd.DataFrame(
        {
            COL_USER: user_ids[rows],
            COL_ITEM: item_ids[items],
            COL_SCORE: scores.astype(np.float64),
            COL_RANK: ranks,
            COL_SOURCE: np.where(fallback, SOURCE_FALLBACK, SOURCE_MODEL),
            COL_PROPENSITY: top.long_propensity(),
        }
    )
