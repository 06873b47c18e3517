"""The per-category table of the offer decision, written by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER
from recflow.evaluation.categories import category_table, weakest_categories


def _recs(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(u, i, r, p, p, "model") for u, i, r, p in rows],
        columns=[COL_USER, COL_ITEM, COL_RANK, COL_SCORE, COL_PROPENSITY, COL_SOURCE],
    )


def test_the_table_counts_offers_by_item() -> None:
    recs = _recs([("a", "x", 1, 0.9), ("a", "y", 2, 0.3), ("b", "x", 1, 0.4), ("b", "y", 2, 0.2), ("c", "z", 1, 0.9)])
    truth = pd.DataFrame({COL_USER: ["a", "b", "c", "c"], COL_ITEM: ["x", "y", "x", "w"]})
    table = category_table(recs, truth, k=2, thresholds={"x": 500, "y": 100, "z": 0})
    # x: positives a, c; offered to a (0.9 >= .5, taken) only, b's 0.4 < .5 -> tp 1, fp 0, fn 1
    assert table.loc["x", ["pos_count", "tp", "fp", "fn"]].tolist() == [2, 1, 0, 1]
    assert table.loc["x", "precision"] == 1.0 and table.loc["x", "recall"] == 0.5
    # y: offered to a (0.3, not taken) and b (0.2, taken) -> tp 1, fp 1
    assert table.loc["y", ["pos_count", "tp", "fp", "fn"]].tolist() == [1, 1, 1, 0]
    # z: offered to c, not taken; no positives
    assert table.loc["z", ["pos_count", "tp", "fp"]].tolist() == [0, 0, 1] and math.isnan(table.loc["z", "recall"])
    # w: a positive no list held, and no offer in the catalog
    assert table.loc["w", "pos_count"] == 1 and math.isnan(table.loc["w", "tp"])
    assert table.loc["w", "recall_at_k"] == 0.0
    assert table.loc["x", "precision_at_k"] == pytest.approx(0.5) and table.loc["x", "recall_at_k"] == 0.5


def test_weakest_categories_rank_by_recall_at_k() -> None:
    recs = _recs([("a", "x", 1, 0.9), ("b", "y", 1, 0.9)])
    truth = pd.DataFrame({COL_USER: ["a", "b", "b", "c"], COL_ITEM: ["x", "x", "y", "w"]})
    weakest = weakest_categories(category_table(recs, truth, k=1), n=2)
    assert weakest.index.tolist() == ["w", "x"]  # w: 0/1, x: 1/2, y: 1/1
