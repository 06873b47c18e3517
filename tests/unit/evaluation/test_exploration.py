"""A new item reaches a top-K only through exploration, and the evaluation never counts it as the model's hit."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_RANK, COL_SOURCE, COL_USER
from recflow.evaluation.exploration import exploration_cost, explore_line, model_slots_ndcg
from recflow.evaluation.metrics import ndcg_at_k
from recflow.models.popularity import PopularityRecommender
from recflow.scoring.core import Ragged, UserBatch, score_batch, top_k_frame
from recflow.scoring.explore import SOURCE_EXPLORE, Explorer, ItemHistory, slate_frame
from recflow.scoring.explore_policy import ExplorePolicy

DAY = date(2026, 11, 10)


def test_a_new_item_reaches_top_k_through_exploration_and_is_never_a_model_hit() -> None:
    rows = [(f"u{u}", f"o{i}") for i in range(12) for u in range(20 - i)] + [("u0", "fresh")]
    model = PopularityRecommender.fit(pd.DataFrame(rows, columns=[COL_USER, COL_ITEM]))
    n_items = model.index.n_items
    first_seen = np.full(n_items, DAY.toordinal() - 30, dtype=np.int64)
    first_seen[model.index.item_codes(["fresh"])] = DAY.toordinal()
    history = ItemHistory(first_seen, np.full(n_items, 100, dtype=np.int64))
    explorer = Explorer(ExplorePolicy(new_within_days=1, slots=(3,), user_share=1.0), history)
    users = np.asarray([f"w{i}" for i in range(30)], dtype=object)  # users the model never saw
    batch = UserBatch(codes=np.full(len(users), -1, dtype=np.int64), seen=Ragged.empty(len(users)))
    top = score_batch(model, batch, k=5)
    without = top_k_frame(top, users, model.index.item_array)
    slates = slate_frame(explorer.apply(model, top, batch, users, DAY), users, model.index.item_array)
    assert "fresh" not in set(without[COL_ITEM])  # popularity alone never shows it
    fresh = slates[slates[COL_ITEM] == "fresh"]
    assert len(fresh) == len(users) and set(fresh[COL_SOURCE]) == {SOURCE_EXPLORE} and set(fresh[COL_RANK]) == {3}
    assert (fresh["logging_propensity"] == 1.0).all()

    # every user takes the new item and the model's first item
    truth = pd.DataFrame({COL_USER: np.repeat(users, 2), COL_ITEM: ["fresh", "o0"] * len(users)})
    line = explore_line(slates, truth, k=5)
    assert line == {"rows": 30, "users": 30, "hits": 30, "hit_rate": 1.0}
    # the model's nDCG counts o0 at rank 1 only: 1 / idcg(2 relevant) whether or not "fresh" was taken
    expected = 1.0 / (1.0 + 1.0 / np.log2(3.0))
    assert model_slots_ndcg(slates, truth, k=5) == pytest.approx(expected)
    # counted as a hit, the explore row would have lifted it: the metric would have lied
    as_scores = slates.assign(score=-slates[COL_RANK].astype(float))
    assert ndcg_at_k(truth, as_scores, k=5) > expected + 0.1
    cost = exploration_cost(slates, without, truth, k=5)
    assert cost["ndcg@5_off"] == pytest.approx(expected) and cost["relative_loss"] == pytest.approx(0.0)


def test_the_cost_is_what_the_model_loses_when_its_items_move_down() -> None:
    without = pd.DataFrame(
        {COL_USER: ["a"] * 3, COL_ITEM: ["x", "y", "z"], COL_RANK: [1, 2, 3], COL_SOURCE: ["model"] * 3}
    )
    with_explore = pd.DataFrame(
        {
            COL_USER: ["a"] * 3,
            COL_ITEM: ["new", "x", "y"],
            COL_RANK: [1, 2, 3],
            COL_SOURCE: [SOURCE_EXPLORE, "model", "model"],
        }
    )
    truth = pd.DataFrame({COL_USER: ["a"], COL_ITEM: ["x"]})
    cost = exploration_cost(with_explore, without, truth, k=3)
    assert cost["ndcg@3_off"] == 1.0 and cost["ndcg@3_on_model_slots"] == pytest.approx(1 / np.log2(3))
    assert cost["relative_loss"] == pytest.approx(1 - 1 / np.log2(3)) and cost["explore"]["hits"] == 0
    with pytest.raises(ValueError, match="lack columns"):
        model_slots_ndcg(without.drop(columns=[COL_SOURCE]), truth, k=3)
