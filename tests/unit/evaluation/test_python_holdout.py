"""The hold-out rule in pandas (``recflow.evaluation.python_holdout``), on pairs small enough to check by hand."""

from __future__ import annotations

import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.evaluation.python_holdout import judgeable, judgeable_given_training
from recflow.models.index import IdIndex, SeenItems

TRAIN = pd.DataFrame({COL_USER: ["a", "a", "b", "a"], COL_ITEM: ["x", "y", "x", "x"]})
#: (b, y) twice, then seen (a, x), unknown user (c, x), unknown item (b, w), (a, y) seen, (b, x) seen
HELD_OUT = pd.DataFrame(
    {COL_USER: ["b", "a", "b", "c", "b", "a", "b"], COL_ITEM: ["y", "x", "y", "x", "w", "y", "x"]},
    index=[7, 6, 5, 4, 3, 2, 1],
)


def test_the_training_pairs_keep_known_unseen_distinct_pairs_in_first_seen_order() -> None:
    truth = judgeable_given_training(HELD_OUT, TRAIN)
    assert truth.values.tolist() == [["b", "y"]]
    assert truth.index.tolist() == [0]


def test_without_seen_items_repeats_stay_and_unknown_ids_still_go() -> None:
    index = IdIndex.from_frame(TRAIN)
    assert judgeable(HELD_OUT, index, None).values.tolist() == [["b", "y"], ["a", "x"], ["a", "y"], ["b", "x"]]
    assert judgeable(HELD_OUT, index, SeenItems.from_frame(TRAIN, index)).values.tolist() == [["b", "y"]]


def test_no_training_pairs_or_no_held_out_pairs_leave_nothing_to_judge() -> None:
    assert judgeable_given_training(HELD_OUT, TRAIN.iloc[:0]).empty
    assert judgeable_given_training(HELD_OUT.iloc[:0], TRAIN).empty
