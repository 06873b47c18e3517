"""Unit tests for recflow.evaluation.splitters: hand-worked splits, determinism, and no overlap or loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_RATING, COL_TS, COL_USER
from recflow.evaluation.splitters import (
    SplitInputError,
    stratified_split,
    user_chrono_split,
)


# --------------------------------------------------------------------------------------------------
# stratified (Microsoft Recommenders' python_stratified_split)
# --------------------------------------------------------------------------------------------------
def _groups(sizes: dict[str, int]) -> pd.DataFrame:
    rows = [(user, f"{user}-item{j}") for user, n in sizes.items() for j in range(n)]
    return pd.DataFrame(rows, columns=[COL_USER, COL_ITEM])


# --------------------------------------------------------------------------------------------------
# per-user chronological split (ratio 0.8 unless said)
#
#   index | user | item | ts | order within user        | n, n_train = max(1, round(0.8 n)) | goes to
#   ------+------+------+----+--------------------------+-----------------------------------+--------
#     0   |  a   |  i5  |  5 | 5th                      | 5, 4                              | test
#     1   |  a   |  i1  |  1 | 1st                      |                                   | train
#     2   |  a   |  i3  |  3 | 3rd                      |                                   | train
#     3   |  a   |  i2  |  2 | 2nd                      |                                   | train
#     4   |  a   |  i4  |  4 | 4th                      |                                   | train
#     5   |  b   |  i1  |  9 | 2nd                      | 2, 2 (round(1.6))                 | train
#     6   |  b   |  i2  |  8 | 1st                      |                                   | train
#     7   |  c   |  z   |  7 | 2nd (tie on ts: z > y)   | 3, 2 (round(2.4))                 | train
#     8   |  c   |  y   |  7 | 1st                      |                                   | train
#     9   |  c   |  x   |  9 | 3rd                      |                                   | test
#    10   |  d   |  q   | 10 | 2nd (all tied: by item)  | 4, 3 (round(3.2))                 | train
#    11   |  d   |  p   | 10 | 1st                      |                                   | train
#    12   |  d   |  s   | 10 | 4th                      |                                   | test
#    13   |  d   |  r   | 10 | 3rd                      |                                   | train
#    14   |  e   |  i1  |  3 | only                     | 1, 1 (max(1, round(0.8)))         | train
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def histories() -> pd.DataFrame:
    return pd.DataFrame(
        {
            COL_USER: [*"aaaaa", *"bb", *"ccc", *"dddd", "e"],
            COL_ITEM: ["i5", "i1", "i3", "i2", "i4", "i1", "i2", "z", "y", "x", "q", "p", "s", "r", "i1"],
            COL_TS: [5, 1, 3, 2, 4, 9, 8, 7, 7, 9, 10, 10, 10, 10, 3],
        }
    )


def test_user_chrono_split_by_hand(histories: pd.DataFrame) -> None:
    train, test = user_chrono_split(histories)
    assert test.index.tolist() == [0, 9, 12]
    assert train.index.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14]  # input order kept


def test_user_chrono_split_rounds_half_to_even_and_keeps_one_training_row() -> None:
    # ratio 0.25: n=2 -> round(0.5)=0 -> max(1, 0)=1 train; n=6 -> round(1.5)=2 train; n=10 -> round(2.5)=2 train
    sizes = {"two": 2, "six": 6, "ten": 10}
    df = pd.DataFrame(
        {
            COL_USER: [user for user, n in sizes.items() for _ in range(n)],
            COL_ITEM: [f"i{j}" for n in sizes.values() for j in range(n)],
            COL_TS: [j for n in sizes.values() for j in range(n)],
        }
    )
    train, _ = user_chrono_split(df, ratio=0.25)
    assert train.groupby(COL_USER).size().to_dict() == {"six": 2, "ten": 2, "two": 1}
    assert (train.groupby(COL_USER)[COL_TS].max() < 2).all(), "train must be each user's earliest events"


def test_user_chrono_split_ignores_input_order_and_takes_datetimes(histories: pd.DataFrame) -> None:
    stamped = histories.assign(**{COL_TS: pd.to_datetime(histories[COL_TS], unit="D", utc=True)})
    shuffled = stamped.sample(frac=1.0, random_state=5)
    train, test = user_chrono_split(shuffled)
    assert sorted(test.index) == [0, 9, 12]
    assert sorted([*train.index, *test.index]) == list(range(len(histories)))  # no overlap, no loss


def test_user_chrono_split_errors(histories: pd.DataFrame) -> None:
    with pytest.raises(SplitInputError, match="ratio must be in"):
        user_chrono_split(histories, ratio=1.0)
    with pytest.raises(SplitInputError, match=r"missing column\(s\) \['event_ts'\]"):
        user_chrono_split(histories.drop(columns=[COL_TS]))
    with pytest.raises(SplitInputError, match="null 'event_ts'"):
        user_chrono_split(histories.assign(**{COL_TS: [None, *histories[COL_TS].iloc[1:]]}))


def test_stratified_counts_by_hand() -> None:
    df = _groups({"A": 4, "B": 2, "C": 1, "D": 3, "E": 6})
    train, test = stratified_split(df, ratio=0.75, seed=1)
    # n_train = max(1, round(0.75 n)), numpy rounds half to even:
    # A: round(3.0)=3; B: round(1.5)=2; C: max(1, round(0.75)=1)=1; D: round(2.25)=2; E: round(4.5)=4
    assert train[COL_USER].value_counts().to_dict() == {"A": 3, "B": 2, "C": 1, "D": 2, "E": 4}
    assert test[COL_USER].value_counts().to_dict() == {"A": 1, "D": 1, "E": 2}


def test_stratified_every_group_keeps_a_training_row() -> None:
    df = _groups({"A": 4, "E": 6})
    train, _ = stratified_split(df, ratio=0.1, seed=0)
    # A: round(0.4)=0 -> 1; E: round(0.6)=1
    assert train[COL_USER].value_counts().to_dict() == {"A": 1, "E": 1}


@pytest.fixture
def ratings() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 3000
    return pd.DataFrame(
        {
            COL_USER: rng.integers(0, 80, n),
            COL_ITEM: rng.integers(0, 300, n),
            COL_RATING: rng.integers(1, 6, n),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


@pytest.mark.parametrize("filter_by", ["user", "item"])
def test_stratified_partitions_without_overlap_or_loss(ratings: pd.DataFrame, filter_by: str) -> None:
    train, test = stratified_split(ratings, ratio=0.75, filter_by=filter_by, seed=42)  # type: ignore[arg-type]
    assert not set(train.index) & set(test.index)
    pd.testing.assert_frame_equal(pd.concat([train, test]).sort_index(), ratings)
    group = COL_USER if filter_by == "user" else COL_ITEM
    assert set(train[group]) == set(ratings[group])
    assert train.index.is_monotonic_increasing and test.index.is_monotonic_increasing


def test_stratified_is_deterministic_per_seed(ratings: pd.DataFrame) -> None:
    first, _ = stratified_split(ratings, seed=5)
    again, _ = stratified_split(ratings, seed=5)
    other, _ = stratified_split(ratings, seed=6)
    assert first.index.equals(again.index)
    assert not first.index.equals(other.index)


def _recommenders_reference(df: pd.DataFrame, ratio: float, seed: int, group: str) -> set[int]:
    """Train-row index of Recommenders' _do_stratification, re-typed here step by step."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        data = df.copy()
        data["random"] = np.random.rand(data.shape[0])
    finally:
        np.random.set_state(state)
    data = data.sort_values([group, "random"])
    groups = data.groupby(group)
    data["count"] = groups[group].transform("count")
    data["rank"] = groups.cumcount() + 1
    return set(data.index[data["rank"] <= round(ratio * data["count"])])


@pytest.mark.parametrize(("filter_by", "seed"), [("user", 42), ("item", 42), ("item", 7)])
def test_stratified_matches_recommenders_row_for_row(ratings: pd.DataFrame, filter_by: str, seed: int) -> None:
    # every group here has ratio * n >= 0.5, where the max(1, ...) guard never applies
    group = COL_USER if filter_by == "user" else COL_ITEM
    train, _ = stratified_split(ratings, ratio=0.75, filter_by=filter_by, seed=seed)  # type: ignore[arg-type]
    assert set(train.index) == _recommenders_reference(ratings, 0.75, seed, group)


def test_stratified_min_rating_filter() -> None:
    df = _groups({"A": 4, "B": 2, "C": 1})
    train, test = stratified_split(df, min_rating=2, seed=0)
    # C has 1 row < 2: dropped before splitting; A 3+1, B 2+0
    assert sorted([*train[COL_USER], *test[COL_USER]]) == ["A"] * 4 + ["B"] * 2


def test_stratified_errors(ratings: pd.DataFrame) -> None:
    with pytest.raises(SplitInputError, match="ratio"):
        stratified_split(ratings, ratio=1.0)
    with pytest.raises(SplitInputError, match="filter_by"):
        stratified_split(ratings, filter_by="rating")  # type: ignore[arg-type]
    with pytest.raises(SplitInputError, match="min_rating"):
        stratified_split(ratings, min_rating=0)
    with pytest.raises(SplitInputError, match="missing"):
        stratified_split(ratings.drop(columns=[COL_ITEM]))
    with pytest.raises(SplitInputError, match="null"):
        stratified_split(ratings.astype({COL_USER: float}).assign(**{COL_USER: np.nan}))
