"""Per-user facts of a staged batch-score file against the run's inputs: the ``batch_scores`` check frame.

The suite (``expectations/batch_scores.json``) runs on one row per user (:data:`CHECK_COLUMNS`):
what the inputs say the user should get (``expected_rows`` = ``min(k, unseen)`` from the catalog or the
candidate pool minus the seen items, and the expected source) beside counts of what the user's staged
rows break (duplicate or missing ranks, unsorted scores, seen, unknown or duplicate items, the wrong
source, non-finite scores, a missing or stray logging propensity, a calibrated propensity that is
missing, stray or outside [0, 1]) and the ranges they span (ranks,
scores by source, versions). Rules about rows are per-user counts that must be 0, so the suite still
judges every staged row, on k times fewer rows, and a failure names the users.

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

from recflow.constants import (
    COL_ITEM,
    COL_LOGGING_PROPENSITY,
    COL_PROPENSITY,
    COL_RANK,
    COL_SCORE,
    COL_SOURCE,
    COL_USER,
    COL_VERSION,
)
from recflow.scoring.core import SOURCE_FALLBACK, SOURCE_MODEL, Ragged, ScorableModel, popular_candidates
from recflow.scoring.explore import SOURCE_EXPLORE

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
    "bad_propensity_rows",
    "bad_calibrated_propensity_rows",
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
            "scores_out_of_order", "nonfinite_scores", "seen_items", "unknown_items", "wrong_source_rows",
            "bad_propensity_rows", "bad_calibrated_propensity_rows")  # fmt: skip
    types = {COL_USER: pa.string(), "expected_rows": pa.int64(), "expected_source": pa.string(),
             "min_rank": pa.int64(), "version_min": pa.string(), "version_max": pa.string(),
             **dict.fromkeys(ints, pa.int64())}  # fmt: skip
    return pa.schema([(name, types.get(name, pa.float64())) for name in CHECK_COLUMNS])


@dataclass(frozen=True)
class ExpectedUsers:
    """The users of a scored batch and what the inputs say each should get.

    ``ids`` are distinct; ``fallback`` marks users unknown to the model (their rows must be fallback
    rows); ``rows`` is ``min(k, unseen)``; ``seen`` their seen item codes, sorted within each user;
    ``calibrated``: the model carries a calibration map, so its rows must carry a ``propensity``;
    ``trained`` their training items, which exploration draws against (None: ``seen`` judges explore rows too).
    """

    ids: pa.Array
    fallback: np.ndarray
    rows: np.ndarray
    seen: Ragged
    calibrated: bool
    trained: Ragged | None = None

    @classmethod
    def of_batch(
        cls, model: ScorableModel, k: int, ids: pa.Array, codes: np.ndarray, seen: Ragged, trained: Ragged | None = None
    ) -> ExpectedUsers:
        """From the users' ids, model codes (-1: unknown), seen item codes and training items."""
        import pyarrow as pa

        fallback = codes < 0
        flat = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        rows = expected_rows(model, k, fallback, seen)
        return cls(flat.cast(pa.string()), fallback, rows, seen, model.calibration is not None, trained)


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


def user_checks(staged: pa.Table, expected: ExpectedUsers, items: pa.Array) -> pa.Table:
    """The check frame (:data:`CHECK_COLUMNS`) of ``staged`` score rows: one row per expected user (in
    ``expected`` order), then one per other user id the rows hold (a null id included).

    ``items`` are the model's item ids by code (an unknown item id has no code)."""
    import pyarrow as pa

    rows = _StagedRows.decode(staged, expected.ids, items)
    by_rank = _ByRank.of(rows)
    requested, expected_rows, expected_fallback = _expected_per_check_row(expected, rows.n)
    user_rows = rows.count(np.ones(len(rows.group), dtype=bool))
    own_source = np.where(expected_fallback, rows.count(rows.is_fallback), rows.count(rows.is_model))
    own_source += rows.count(rows.is_explore)  # an exploration slot is right for any user
    min_rank, max_rank = by_rank.span(rows.rank, rows.rank_valid)
    duplicate_items, seen_items = _repeated_and_seen_items(rows, expected, len(items))
    numbers = rows.score_valid & ~np.isnan(rows.score)  # NaN is counted by nonfinite_scores, not ranged
    model_low, model_high = by_rank.span(rows.score, rows.is_model & numbers)
    fallback_low, fallback_high = by_rank.span(rows.score, rows.is_fallback & numbers)
    version_min, version_max = _version_range(rows, by_rank)
    sources = pa.array([SOURCE_MODEL, SOURCE_FALLBACK], type=pa.string())
    columns = {
        COL_USER: rows.ids,
        "expected_rows": _nullable(expected_rows, ~requested, pa.int64()),
        "expected_source": sources.take(pa.array(expected_fallback.astype(np.int8), mask=~requested)),
        "user_rows": pa.array(user_rows),
        "min_rank": _nullable(np.nan_to_num(min_rank), np.isnan(min_rank), pa.int64()),
        "max_rank": pa.array(np.nan_to_num(max_rank).astype(np.int64)),
        "incomplete_rows": pa.array(rows.count(~rows.complete)),
        "duplicate_ranks": pa.array(_duplicate_ranks(rows, by_rank)),
        "duplicate_items": pa.array(duplicate_items),
        "scores_out_of_order": pa.array(_scores_out_of_order(rows, by_rank)),
        "nonfinite_scores": pa.array(rows.count(rows.score_valid & ~np.isfinite(rows.score))),
        "seen_items": pa.array(seen_items),
        "unknown_items": pa.array(rows.count(rows.item_valid & ~rows.code_valid)),
        "wrong_source_rows": _nullable(user_rows - own_source, ~requested, pa.int64()),
        "bad_propensity_rows": pa.array(rows.count(_bad_propensity(rows))),
        "bad_calibrated_propensity_rows": pa.array(
            rows.count(_bad_calibrated_propensity(rows, expected.calibrated, expected_fallback))
        ),
        "model_score_min": pa.array(model_low, from_pandas=True),
        "model_score_max": pa.array(model_high, from_pandas=True),
        "fallback_score_min": pa.array(fallback_low, from_pandas=True),
        "fallback_score_max": pa.array(fallback_high, from_pandas=True),
        "version_min": version_min,
        "version_max": version_max,
    }
    return pa.Table.from_pydict(columns, schema=check_schema())


@dataclass(frozen=True)
class _StagedRows:
    """The staged rows' fields as NumPy arrays, nulls filled beside a validity mask, and each row's check
    row (``group``): its user's place among the expected users, else one after them per other user id."""

    ids: pa.Array  # the user id of each check row
    n_expected: int  # check rows of expected users (the first ones)
    group: np.ndarray
    rank: np.ndarray
    rank_valid: np.ndarray
    item_valid: np.ndarray
    code: np.ndarray  # the item's code in the model
    code_valid: np.ndarray  # a known item (a null item has no code either)
    score: np.ndarray
    score_valid: np.ndarray
    descent: np.ndarray  # -score: sorts a user's rows by descending score; a null score sorts first
    version: pa.DictionaryArray
    version_valid: np.ndarray
    is_model: np.ndarray
    is_fallback: np.ndarray
    is_explore: np.ndarray
    propensity: np.ndarray  # the logging propensity, NaN where null
    calibrated: np.ndarray  # the calibrated propensity, NaN where null

    @classmethod
    def decode(cls, staged: pa.Table, expected_ids: pa.Array, items: pa.Array) -> _StagedRows:
        import pyarrow as pa
        import pyarrow.compute as pc

        def column(name: str, type_: pa.DataType | None = None) -> pa.Array:
            values = staged.column(name).combine_chunks()
            return values if type_ is None else values.cast(type_)

        def valid(values: pa.Array) -> np.ndarray:
            return np.asarray(values.is_valid(), dtype=bool)

        ids, group = _check_rows(column(COL_USER, pa.string()), expected_ids.cast(pa.string()))
        rank, item, score = column(COL_RANK), column(COL_ITEM, pa.string()), column(COL_SCORE, pa.float64())
        code = pc.index_in(item, value_set=items.cast(pa.string()))
        version = pc.dictionary_encode(column(COL_VERSION, pa.string()))
        source = column(COL_SOURCE, pa.string())
        score_values = np.asarray(score.fill_null(0.0), dtype=np.float64)
        return cls(
            ids=ids,
            n_expected=len(expected_ids),
            group=group,
            rank=np.asarray(rank.fill_null(0), dtype=np.int64),
            rank_valid=valid(rank),
            item_valid=valid(item),
            code=np.asarray(code.fill_null(-1), dtype=np.int64),
            code_valid=valid(code),
            score=score_values,
            score_valid=valid(score),
            descent=np.where(valid(score), -score_values, -np.inf),  # a null score: incomplete, not also unsorted
            version=version,
            version_valid=valid(version),
            is_model=np.asarray(pc.equal(source, SOURCE_MODEL).fill_null(False), dtype=bool),
            is_fallback=np.asarray(pc.equal(source, SOURCE_FALLBACK).fill_null(False), dtype=bool),
            is_explore=np.asarray(pc.equal(source, SOURCE_EXPLORE).fill_null(False), dtype=bool),
            propensity=np.asarray(column(COL_LOGGING_PROPENSITY, pa.float64()).fill_null(np.nan), dtype=np.float64),
            calibrated=np.asarray(column(COL_PROPENSITY, pa.float64()).fill_null(np.nan), dtype=np.float64),
        )

    @property
    def n(self) -> int:
        """Check rows: the expected users, then the other user ids."""
        return len(self.ids)

    @property
    def complete(self) -> np.ndarray:
        """Rows with a rank, an item, a score and a version (a null source counts as the wrong source); an
        explore row of an item outside the model's catalog has no score, and that is complete."""
        return self.rank_valid & self.item_valid & (self.score_valid | self.is_explore) & self.version_valid

    def count(self, mask: np.ndarray) -> np.ndarray:
        """The rows of ``mask`` per check row."""
        return np.bincount(self.group[mask], minlength=self.n).astype(np.int64)


def _check_rows(user: pa.Array, expected_ids: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The check rows' user ids (the expected ones, then the other ids of ``user``) and each row's check row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    position = np.asarray(pc.index_in(user, value_set=expected_ids).fill_null(-1), dtype=np.int64)
    extra = position < 0
    extra_ids = pc.unique(user.filter(pa.array(extra)))
    group = position.copy()
    if len(extra_ids):
        others = pc.index_in(user.filter(pa.array(extra)), value_set=extra_ids)
        group[extra] = len(expected_ids) + np.asarray(others, dtype=np.int64)
    return pa.concat_arrays([expected_ids, extra_ids.cast(pa.string())]), group


def _expected_per_check_row(expected: ExpectedUsers, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which check rows are requested users, their expected rows and whether they are fallback users
    (0 and False for the other ids)."""
    pad = n - len(expected.ids)
    rows = np.concatenate([expected.rows, np.zeros(pad, dtype=np.int64)])
    fallback = np.concatenate([expected.fallback, np.zeros(pad, dtype=bool)])
    return np.arange(n) < len(expected.ids), rows, fallback


@dataclass(frozen=True)
class _ByRank:
    """The staged rows in rank order within each check row (:func:`_rank_order`): ``order`` of the rows,
    their check rows in that order, where each check row's run ``starts`` and which check rows are
    ``present``. Ties on rank come by descending score, so a duplicate rank is not also unsorted."""

    order: np.ndarray
    group: np.ndarray
    starts: np.ndarray
    present: np.ndarray
    n: int

    @classmethod
    def of(cls, rows: _StagedRows) -> _ByRank:
        order = _rank_order(rows.group, rows.rank, rows.rank_valid, rows.descent)
        group = rows.group[order]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(order) else np.zeros(0, np.int64)
        return cls(order, group, starts, group[starts], rows.n)

    def span(self, values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and highest of ``values`` (given in row order) over the rows of ``valid``, per check
        row; NaN where a check row has none."""
        chosen, ordered = valid[self.order], values[self.order]
        low = _per_group(np.where(chosen, ordered, np.inf), self.starts, np.fmin, self.present, self.n)
        high = _per_group(np.where(chosen, ordered, -np.inf), self.starts, np.fmax, self.present, self.n)
        none = np.bincount(self.group[chosen], minlength=self.n) == 0
        low[none], high[none] = np.nan, np.nan
        return low, high

    def count_neighbours(self, mask: np.ndarray) -> np.ndarray:
        """Per check row, its pairs of neighbouring rows (in this order) for which ``mask`` holds; ``mask``
        has one entry per pair, counted with the pair's second row."""
        same = self.group[1:] == self.group[:-1]
        return np.bincount(self.group[1:][same & mask], minlength=self.n).astype(np.int64)


def _duplicate_ranks(rows: _StagedRows, by_rank: _ByRank) -> np.ndarray:
    """Per user: neighbouring rows (in rank order) with the same rank."""
    rank, valid = rows.rank[by_rank.order], rows.rank_valid[by_rank.order]
    return by_rank.count_neighbours((rank[1:] == rank[:-1]) & valid[1:] & valid[:-1])


def _scores_out_of_order(rows: _StagedRows, by_rank: _ByRank) -> np.ndarray:
    """Per user: 1 if a score rises with rank (a NaN score, ordered above every number, is a rise), else 0.

    Exploration rows sit in their slot whatever their score, so the order is judged over the other rows."""
    order = by_rank.order[~rows.is_explore[by_rank.order]]
    descent, group = rows.descent[order], rows.group[order]
    first, second = descent[:-1], descent[1:]
    in_order = np.isnan(second) | (~np.isnan(first) & (first <= second))
    rises = (group[1:] == group[:-1]) & ~in_order
    return (np.bincount(group[1:][rises], minlength=rows.n) > 0).astype(np.int64)


def _bad_propensity(rows: _StagedRows) -> np.ndarray:
    """Rows whose logging propensity breaks its rule: an explore row needs one in (0, 1], any other row none."""
    p = rows.propensity
    in_range = (p > 0) & (p <= 1)  # False for NaN (null)
    return np.where(rows.is_explore, ~in_range, ~np.isnan(p))


def _bad_calibrated_propensity(rows: _StagedRows, calibrated: bool, user_fallback: np.ndarray) -> np.ndarray:
    """Rows whose calibrated propensity breaks the scoring core's rule: null on fallback rows, on the
    explore rows of a user the fallback scored, on explore rows of an item outside the model's catalog
    (no model score to calibrate), and for a model without a calibration map; within [0, 1] on every
    other row (NaN counts as missing)."""
    p = rows.calibrated
    unscored_explore = rows.is_explore & (user_fallback[rows.group] | ~rows.score_valid)
    needs = calibrated & ~rows.is_fallback & ~unscored_explore
    in_range = (p >= 0) & (p <= 1)  # False for NaN (null)
    return np.where(needs, ~in_range, ~np.isnan(p))


def _repeated_and_seen_items(rows: _StagedRows, expected: ExpectedUsers, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user: rows repeating an item of an earlier row, and distinct items among the user's seen ones:
    the model's and fallback rows against ``expected.seen``, explore rows against ``expected.trained``
    (the training items the draw excludes in batch and streaming alike; ``seen`` when not given).

    The (user, item) pairs as one sorted int64 key: adjacent equal keys are duplicate items, and the
    distinct keys are what is looked up among the seen pairs (sorted the same way)."""
    pairs = np.sort(rows.group[rows.code_valid] * n_items + rows.code[rows.code_valid])
    repeated = pairs[1:] == pairs[:-1]
    duplicate_items = np.bincount(pairs[1:][repeated] // n_items, minlength=rows.n).astype(np.int64)
    trained = expected.seen if expected.trained is None else expected.trained
    hits = [
        _seen_keys(rows, rows.code_valid & ~rows.is_explore, expected.seen, n_items),
        _seen_keys(rows, rows.code_valid & rows.is_explore, trained, n_items),
    ]
    keys = np.unique(np.concatenate(hits))
    return duplicate_items, np.bincount(keys // n_items, minlength=rows.n).astype(np.int64)


def _seen_keys(rows: _StagedRows, mask: np.ndarray, seen: Ragged, n_items: int) -> np.ndarray:
    """The distinct (check row, item) keys of the rows of ``mask`` whose item is among the user's ``seen``."""
    keys = np.unique(rows.group[mask] * n_items + rows.code[mask])
    keys = keys[keys < rows.n_expected * n_items]  # users not requested have no seen items
    seen_keys = seen.row_ids() * n_items + seen.values.astype(np.int64)
    if len(seen_keys) > 1 and not np.all(seen_keys[1:] >= seen_keys[:-1]):
        seen_keys = np.sort(seen_keys)
    hit = np.searchsorted(seen_keys, keys)
    is_seen = hit < len(seen_keys)
    is_seen[is_seen] = seen_keys[hit[is_seen]] == keys[is_seen]
    return keys[is_seen]


def _version_range(rows: _StagedRows, by_rank: _ByRank) -> tuple[pa.Array, pa.Array]:
    """Per user: the lowest and highest model version (string order) of its rows; null: none.

    Versions are ranked by their sorted dictionary, so min and max are integer reductions."""
    import pyarrow as pa

    names = np.array(rows.version.dictionary.to_pylist(), dtype=object)
    rank_of = np.argsort(np.argsort(names)) if len(names) else np.zeros(1, dtype=np.int64)
    code = np.asarray(rows.version.indices.fill_null(-1), dtype=np.int64)
    low, high = by_rank.span(np.where(code >= 0, rank_of[np.maximum(code, 0)], -1), code >= 0)
    by_name = pa.array(sorted(names.tolist()), type=pa.string())

    def named(values: np.ndarray) -> pa.Array:
        none = ~np.isfinite(values)
        return by_name.take(pa.array(np.where(none, 0, values).astype(np.int64), mask=none))

    return named(low), named(high)


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
