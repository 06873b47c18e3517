"""Train/test splitters of the quality benchmark (``bench/quality.py``), for datasets without the pipeline's
calendar.

The pipeline's own hold-out is a time cut of its training window (:mod:`recflow.data.window`) judged by the
one hold-out rule of :mod:`recflow.evaluation.python_holdout` and its Spark twin; the benchmark judges its
splits by that same rule. Two protocols here, because they answer different questions:

* :func:`user_chrono_split` holds out each user's LAST events (by timestamp): the production question
  "what will this user take next?" asked of a dataset without a common calendar, such as MovieLens,
  whose users rated over different months. The quality benchmark reports it beside the random split.
* :func:`stratified_split` reproduces Microsoft Recommenders' ``python_stratified_split`` so the
  MovieLens benchmark is comparable with their published numbers.

Pandas and numpy only: no Airflow, no Spark. Every random choice takes an explicit seed. Rows keep
their original index and order, so ``train`` and ``test`` partition the input exactly (no overlap, no
loss) apart from the rows a documented rule removes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_TS, COL_USER, DEFAULT_SEED


class SplitInputError(ValueError):
    """A splitter got input it cannot split meaningfully (missing columns, bad ratio, empty train...)."""


def _require_columns(df: pd.DataFrame, columns: Iterable[str], *, what: str) -> None:
    """Fail with the names of the missing columns, rather than a bare ``KeyError`` later on."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SplitInputError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")


def user_chrono_split(
    df: pd.DataFrame,
    *,
    ratio: float = 0.8,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
    col_ts: str = COL_TS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, the earliest ``ratio`` of the events train and the rest (the latest) test.

    Protocol, per user (Recommenders' ``python_chrono_split`` with ``filter_by="user"``, made exact):

    1. the user's events are ordered by ``col_ts``; events with the same timestamp by ``col_item``,
       then by input order, so the split never depends on how the rows happened to arrive;
    2. the first ``n_train = max(1, round(ratio * n))`` go to train (numpy's round-half-to-even, as
       :func:`stratified_split`), the rest to test. With the default 0.8 a user with 5 events keeps
       4, with 2 events keeps 2 (round(1.6)), with 1 event keeps it.

    No seed: the split is fixed by the data, so repeated benchmark runs vary only the models' seeds.
    Test is not filtered; the evaluation drops what no model can be judged on (items unseen in train,
    pairs the user already has in train), as the pipeline's hold-out does.

    Returns:
        ``(train, test)``, each with the original index and row order; together exactly the input.

    Raises:
        SplitInputError: a bad ratio, missing columns, or null users or timestamps.
    """
    if not 0.0 < ratio < 1.0:
        raise SplitInputError(f"ratio must be in (0, 1), got {ratio}")
    _require_columns(df, [col_user, col_item, col_ts], what="interactions")
    for column in (col_user, col_ts):
        if df[column].isna().any():
            raise SplitInputError(f"{int(df[column].isna().sum())} row(s) have a null {column!r}")
    # Sort keys as integer codes (any sortable dtype, tz-aware timestamps included); np.lexsort sorts
    # by the LAST key first: user, then timestamp, then item, then input position.
    user_code = pd.factorize(df[col_user], sort=True)[0]
    ts_code = pd.factorize(df[col_ts], sort=True)[0]
    item_code = pd.factorize(df[col_item].astype(str), sort=True)[0]
    order = np.lexsort((np.arange(len(df)), item_code, ts_code, user_code))
    users = user_code[order]
    position = pd.Series(users).groupby(users).cumcount().to_numpy()
    size = pd.Series(users).groupby(users).transform("size").to_numpy()
    in_train = np.empty(len(df), dtype=bool)
    in_train[order] = position < np.maximum(1, np.round(ratio * size))
    return df.loc[in_train], df.loc[~in_train]


def stratified_split(
    df: pd.DataFrame,
    *,
    ratio: float = 0.75,
    filter_by: Literal["user", "item"] = "user",
    min_rating: int = 1,
    seed: int = DEFAULT_SEED,
    col_user: str = COL_USER,
    col_item: str = COL_ITEM,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random split stratified per user (or per item): Microsoft Recommenders' ``python_stratified_split``.

    Protocol, per group (all rows of one user if ``filter_by="user"``, of one item if ``"item"``):

    1. groups with fewer than ``min_rating`` rows are dropped first (Recommenders' ``min_rating_filter``);
    2. the rows are shuffled with the seed (one uniform draw per row from
       ``np.random.RandomState(seed)``, in input order, which is exactly what Recommenders draws after
       ``np.random.seed(seed)``, without touching numpy's global state);
    3. the first ``n_train = max(1, round(ratio * n))`` go to train, the rest to test, with numpy's
       round-half-to-even as in Recommenders. The ``max(1, ...)`` guarantees every group has at least
       one training row; Recommenders can give a group none when ``ratio * n < 0.5``, otherwise the two
       agree row for row.

    The MovieLens benchmark uses ``ratio=0.75, filter_by="item"``. Test is not filtered to users seen
    in train; use :func:`drop_cold_start` if needed.

    Returns:
        ``(train, test)``, each with the original index and row order; together they are exactly the
        rows kept by the ``min_rating`` filter.
    """
    if filter_by not in ("user", "item"):
        raise SplitInputError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    if not 0.0 < ratio < 1.0:
        raise SplitInputError(f"ratio must be in (0, 1), got {ratio}")
    if min_rating < 1:
        raise SplitInputError(f"min_rating must be >= 1, got {min_rating}")
    _require_columns(df, [col_user, col_item], what="interactions")
    group_col = col_user if filter_by == "user" else col_item
    if df[group_col].isna().any():
        raise SplitInputError(f"{int(df[group_col].isna().sum())} row(s) have a null {group_col!r}")
    if min_rating > 1:
        df = df.loc[df.groupby(group_col)[group_col].transform("size") >= min_rating]
    in_train = _first_fraction_per_group(df[group_col], ratio=ratio, seed=seed)
    return df.loc[in_train], df.loc[~in_train]


def _first_fraction_per_group(groups: pd.Series, *, ratio: float, seed: int) -> np.ndarray:
    """Boolean mask: the first ``max(1, round(ratio * n))`` rows of each group after a seeded shuffle.

    The shuffle position of a row is the rank of its uniform draw within its group; a vectorised
    groupby rank, so no per-group Python loop.
    """
    draws = np.random.RandomState(seed).rand(len(groups))
    frame = pd.DataFrame({"g": groups.to_numpy(), "r": draws})
    position = frame.groupby("g")["r"].rank(method="first").to_numpy()
    size = frame.groupby("g")["g"].transform("size").to_numpy()
    n_train = np.maximum(1, np.round(ratio * size))
    return np.asarray(position <= n_train)
