"""Per-user facts of a staged batch-score file against the run's inputs: the ``batch_scores`` check frame.

The suite (``expectations/batch_scores.json``) runs on one row per user (:data:`CHECK_COLUMNS`):
what the inputs say the user should get (``expected_rows`` = ``min(k, unseen)`` from the catalog or the
candidate pool minus the seen items, and the expected source) beside counts of what the user's staged
rows break (duplicate or missing ranks, unsorted scores, seen, unknown or duplicate items, the wrong
source, non-finite scores) and the ranges they span (ranks, scores by source, versions). Rules about
rows are per-user counts that must be 0, so the suite still judges every staged row, on k times fewer
rows, and a failure names the users.

Why NumPy in the Python worker: the worker that wrote a file reads it back from disk and checks it
against the input batches it was handed (never against the scorer's in-memory output), one vectorised
pass per file. The same frame built by a Spark aggregation over the staged files and a join to the
inputs cost a second pass over every row: ~17 s of the 70 s job at 10^6 users on 2 cores.

Staged rows may come in any order and hold any defect: users not requested (no expected values), null
fields (``incomplete_rows``), NaN scores (ordered above every number, as Spark orders them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER, COL_VERSION
from recflow.scoring.core import SOURCE_FALLBACK, SOURCE_MODEL, Ragged, ScorableModel, popular_candidates

if TYPE_CHECKING:
    import pyarrow as pa


CHECK_COLUMNS: Final = (
    COL_USER,
    "expected_rows",
    "expected_source",
    "user_rows",
    "min_rank",
    "max_rank",
    "incomplete_rows",
    "duplicate_ranks",
    "duplicate_items",
    "scores_out_of_order",
    "nonfinite_scores",
    "seen_items",
    "unknown_items",
    "wrong_source_rows",
    "model_score_min",
    "model_score_max",
    "fallback_score_min",
    "fallback_score_max",
    "version_min",
    "version_max",
)


def check_schema() -> pa.Schema:
    import pyarrow as pa

    ints = ("user_rows", "max_rank", "incomplete_rows", "duplicate_ranks", "duplicate_items",
            "scores_out_of_order", "nonfinite_scores", "seen_items", "unknown_items", "wrong_source_rows")  # fmt: skip
    types = {COL_USER: pa.string(), "expected_rows": pa.int64(), "expected_source": pa.string(),
             "min_rank": pa.int64(), "version_min": pa.string(), "version_max": pa.string(),
             **dict.fromkeys(ints, pa.int64())}  # fmt: skip
    return pa.schema([(name, types.get(name, pa.float64())) for name in CHECK_COLUMNS])


@dataclass(frozen=True)
class ExpectedUsers:
    """The users of a scored batch and what the inputs say each should get.

    ``ids`` are distinct; ``fallback`` marks users unknown to the model (their rows must be fallback
    rows); ``rows`` is ``min(k, unseen)``; ``seen`` their seen item codes, sorted within each user.
    """

    ids: pa.Array
    fallback: np.ndarray
    rows: np.ndarray
    seen: Ragged

    @classmethod
    def of_batch(cls, model: ScorableModel, k: int, ids: pa.Array, codes: np.ndarray, seen: Ragged) -> ExpectedUsers:
        """From the users' ids, model codes (-1: unknown) and seen item codes."""
        import pyarrow as pa

        fallback = codes < 0
        flat = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        return cls(flat.cast(pa.string()), fallback, expected_rows(model, k, fallback, seen), seen)


def expected_rows(model: ScorableModel, k: int, fallback: np.ndarray, seen: Ragged) -> np.ndarray:
    """``min(k, items the user could still get)``: the catalog minus the seen items, or for a model that
    re-ranks a candidate pool (and a user it knows) the pool minus the seen items."""
    catalog_left = model.index.n_items - np.diff(seen.offsets)
    if model.candidate_pool is None:
        available = catalog_left
    else:
        pool = popular_candidates(model, model.candidate_pool)
        in_pool = np.bincount(seen.row_ids()[np.isin(seen.values, pool)], minlength=seen.n_rows)
        available = np.where(fallback, catalog_left, len(pool) - in_pool)
    return np.minimum(k, available).astype(np.int64)


def _per_group(values: np.ndarray, starts: np.ndarray, reduce: np.ufunc, present: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if len(starts):
        out[present] = reduce.reduceat(values, starts)
    return out


def _rank_order(group: np.ndarray, rank: np.ndarray, rank_valid: np.ndarray, descent: np.ndarray) -> np.ndarray:
    """Row order by user, then rank (null ranks last), ties by descending score. Files come sorted by
    user and rank, so that order is checked first (linear) and the sort runs only when it fails."""
    if len(group) < 2 or (
        rank_valid.all()
        and bool(np.all((group[1:] > group[:-1]) | ((group[1:] == group[:-1]) & (rank[1:] > rank[:-1]))))
    ):
        return np.arange(len(group))
    return np.lexsort((descent, rank, ~rank_valid, group))


def _nullable(values: np.ndarray, none: np.ndarray, type_: pa.DataType) -> pa.Array:
    import pyarrow as pa

    return pa.array(np.where(none, 0, values).astype(type_.to_pandas_dtype()), type=type_, mask=none)


def user_checks(staged: pa.Table, expected: ExpectedUsers, items: pa.Array) -> pa.Table:
    """The check frame (:data:`CHECK_COLUMNS`) of ``staged`` score rows: one row per expected user (in
    ``expected`` order), then one per other user id the rows hold (a null id included).

    ``items`` are the model's item ids by code (an unknown item id has no code)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n_in = len(expected.ids)
    expected_ids = expected.ids.cast(pa.string())
    user = staged.column(COL_USER).combine_chunks().cast(pa.string())
    position = np.asarray(pc.index_in(user, value_set=expected_ids).fill_null(-1), dtype=np.int64)
    extra = position < 0
    extra_ids = pc.unique(user.filter(pa.array(extra)))
    group = position.copy()
    if len(extra_ids):
        group[extra] = n_in + np.asarray(pc.index_in(user.filter(pa.array(extra)), value_set=extra_ids), dtype=np.int64)
    n = n_in + len(extra_ids)

    rank_col = staged.column(COL_RANK).combine_chunks()
    rank_valid = np.asarray(rank_col.is_valid(), dtype=bool)
    rank = np.asarray(rank_col.fill_null(0), dtype=np.int64)
    item_col = staged.column(COL_ITEM).combine_chunks().cast(pa.string())
    code_col = pc.index_in(item_col, value_set=items.cast(pa.string()))
    code_valid = np.asarray(code_col.is_valid(), dtype=bool)
    code = np.asarray(code_col.fill_null(-1), dtype=np.int64)
    score_col = staged.column(COL_SCORE).combine_chunks().cast(pa.float64())
    score_valid = np.asarray(score_col.is_valid(), dtype=bool)
    score = np.asarray(score_col.fill_null(0.0), dtype=np.float64)
    version_col = pc.dictionary_encode(staged.column(COL_VERSION).combine_chunks().cast(pa.string()))
    source_col = staged.column(COL_SOURCE).combine_chunks().cast(pa.string())
    is_model = np.asarray(pc.equal(source_col, SOURCE_MODEL).fill_null(False), dtype=bool)
    is_fallback = np.asarray(pc.equal(source_col, SOURCE_FALLBACK).fill_null(False), dtype=bool)
    item_valid = np.asarray(item_col.is_valid(), dtype=bool)
    version_valid = np.asarray(version_col.is_valid(), dtype=bool)

    def count(mask: np.ndarray, groups: np.ndarray = group) -> np.ndarray:
        return np.bincount(groups[mask], minlength=n).astype(np.int64)

    user_rows = count(np.ones(len(group), dtype=bool))
    # rank order within a user, ties (a duplicate rank) by descending score so a tie is not also unsorted
    descent = np.where(score_valid, -score, -np.inf)  # a null score: incomplete, not also unsorted
    order = _rank_order(group, rank, rank_valid, descent)
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]]) if len(order) else np.zeros(0, np.int64)
    present = g_sorted[starts]
    same = g_sorted[1:] == g_sorted[:-1]
    r_sorted, rv_sorted = rank[order], rank_valid[order]
    min_rank = _per_group(np.where(rv_sorted, r_sorted, np.inf), starts, np.fmin, present, n)
    max_rank = _per_group(np.where(rv_sorted, r_sorted, -np.inf), starts, np.fmax, present, n)
    min_rank[~np.isfinite(min_rank)] = np.nan
    max_rank[~np.isfinite(max_rank)] = np.nan
    duplicate_ranks = count(same & (r_sorted[1:] == r_sorted[:-1]) & rv_sorted[1:] & rv_sorted[:-1], g_sorted[1:])
    d_sorted = descent[order]
    first, second = d_sorted[:-1], d_sorted[1:]
    in_order = np.isnan(second) | (~np.isnan(first) & (first <= second))
    scores_out_of_order = (count(same & ~in_order, g_sorted[1:]) > 0).astype(np.int64)

    # (user, item) pairs as one sorted int64 key: adjacent equal keys are duplicate items, and the
    # distinct keys are what is looked up among the seen pairs (sorted the same way)
    n_items = len(items)
    pairs = np.sort(group[code_valid] * n_items + code[code_valid])
    repeated = pairs[1:] == pairs[:-1]
    duplicate_items = np.bincount(pairs[1:][repeated] // n_items, minlength=n).astype(np.int64)
    keys = pairs[np.r_[True, ~repeated]] if len(pairs) else pairs
    keys = keys[keys < n_in * n_items]  # users not requested have no seen items
    seen_keys = expected.seen.row_ids() * n_items + expected.seen.values.astype(np.int64)
    if len(seen_keys) > 1 and not np.all(seen_keys[1:] >= seen_keys[:-1]):
        seen_keys = np.sort(seen_keys)
    hit = np.searchsorted(seen_keys, keys)
    is_seen = hit < len(seen_keys)
    is_seen[is_seen] = seen_keys[hit[is_seen]] == keys[is_seen]
    seen_items = np.bincount(keys[is_seen] // n_items, minlength=n).astype(np.int64)

    finite = np.isfinite(score)
    complete = rank_valid & item_valid & score_valid & version_valid
    model_rows, fallback_rows = count(is_model), count(is_fallback)

    def score_range(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # over the rows of ``mask`` with a number (NaN is counted by nonfinite_scores); none: null
        chosen = mask & score_valid & ~np.isnan(score)
        in_order = chosen[order]
        low = _per_group(np.where(in_order, score[order], np.inf), starts, np.minimum, present, n)
        high = _per_group(np.where(in_order, score[order], -np.inf), starts, np.maximum, present, n)
        none = count(chosen) == 0
        low[none], high[none] = np.nan, np.nan
        return low, high

    # versions ranked by their sorted dictionary, so min/max are integer reductions
    names = np.array(version_col.dictionary.to_pylist(), dtype=object)
    rank_of = np.argsort(np.argsort(names)) if len(names) else np.zeros(1, dtype=np.int64)
    v_code = np.asarray(version_col.indices.fill_null(-1), dtype=np.int64)
    v_rank = np.where(v_code >= 0, rank_of[np.maximum(v_code, 0)], -1)[order]
    v_low = _per_group(np.where(v_rank >= 0, v_rank, np.inf), starts, np.fmin, present, n)
    v_high = _per_group(np.where(v_rank >= 0, v_rank, -np.inf), starts, np.fmax, present, n)
    by_rank = pa.array(sorted(names.tolist()), type=pa.string())

    def version(values: np.ndarray) -> pa.Array:
        none = ~np.isfinite(values)
        return by_rank.take(pa.array(np.where(none, 0, values).astype(np.int64), mask=none))

    requested = np.arange(n) < n_in
    pad = n - n_in
    exp_rows = np.concatenate([expected.rows, np.zeros(pad, dtype=np.int64)])
    exp_fallback = np.concatenate([expected.fallback, np.zeros(pad, dtype=bool)])
    own = np.where(exp_fallback, fallback_rows, model_rows)
    model_low, model_high = score_range(is_model)
    fallback_low, fallback_high = score_range(is_fallback)
    sources = pa.array([SOURCE_MODEL, SOURCE_FALLBACK], type=pa.string())
    columns = {
        COL_USER: pa.concat_arrays([expected_ids, extra_ids.cast(pa.string())]),
        "expected_rows": _nullable(exp_rows, ~requested, pa.int64()),
        "expected_source": sources.take(pa.array(exp_fallback.astype(np.int8), mask=~requested)),
        "user_rows": pa.array(user_rows),
        "min_rank": _nullable(np.nan_to_num(min_rank), np.isnan(min_rank), pa.int64()),
        "max_rank": pa.array(np.nan_to_num(max_rank).astype(np.int64)),
        "incomplete_rows": pa.array(count(~complete)),
        "duplicate_ranks": pa.array(duplicate_ranks),
        "duplicate_items": pa.array(duplicate_items),
        "scores_out_of_order": pa.array(scores_out_of_order),
        "nonfinite_scores": pa.array(count(score_valid & ~finite)),
        "seen_items": pa.array(seen_items),
        "unknown_items": pa.array(count(item_valid & ~code_valid)),
        "wrong_source_rows": _nullable(user_rows - own, ~requested, pa.int64()),
        "model_score_min": pa.array(model_low, from_pandas=True),
        "model_score_max": pa.array(model_high, from_pandas=True),
        "fallback_score_min": pa.array(fallback_low, from_pandas=True),
        "fallback_score_max": pa.array(fallback_high, from_pandas=True),
        "version_min": version(v_low),
        "version_max": version(v_high),
    }
    return pa.Table.from_pydict(columns, schema=check_schema())
