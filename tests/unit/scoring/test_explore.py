"""Exploration slots: which items are new, who explores, where the item goes, its propensity, and seeding."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.popularity import PopularityRecommender
from recflow.scoring.core import Ragged, UserBatch, score_batch
from recflow.scoring.explore import EPSILON, Explorer, ItemHistory, uniform_draws
from recflow.scoring.explore_policy import ExplorePolicy

DAY = date(2026, 11, 10)
N_OLD, N_NEW = 20, 4


def popularity_model() -> PopularityRecommender:
    """Items o00..o19 bought often (o00 most), n0..n3 bought once each: popularity ranks them last."""
    rows = [(f"u{u}", f"o{i:02d}") for i in range(N_OLD) for u in range(N_OLD + 5 - i)]
    rows += [("u0", f"n{j}") for j in range(N_NEW)]
    return PopularityRecommender.fit(pd.DataFrame(rows, columns=[COL_USER, COL_ITEM]))


def history(model: PopularityRecommender, *, tags: np.ndarray | None = None) -> ItemHistory:
    """Old items first seen 60 days ago with many interactions; new item n<j> first seen j days ago, once."""
    first_seen = np.full(model.index.n_items, DAY.toordinal() - 60, dtype=np.int64)
    interactions = np.full(model.index.n_items, 100, dtype=np.int64)
    for j in range(N_NEW):
        code = int(model.index.item_codes([f"n{j}"])[0])
        first_seen[code], interactions[code] = DAY.toordinal() - j, 1
    return ItemHistory(first_seen, interactions, tags)


def users(n: int) -> tuple[UserBatch, np.ndarray]:
    ids = np.asarray([f"user-{i}" for i in range(n)], dtype=object)
    return UserBatch(codes=np.full(n, -1, dtype=np.int64), seen=Ragged.empty(n)), ids


def test_new_means_recent_or_rarely_bought_and_never_from_the_future() -> None:
    model = popularity_model()
    explorer = Explorer(ExplorePolicy(new_within_days=2, min_interactions=0), history(model))
    new = set(model.index.item_array[explorer.new_items(DAY)])
    assert new == {"n0", "n1"}  # first seen 0 and 1 days ago; n2, n3 are older than 2 days
    explorer = Explorer(ExplorePolicy(new_within_days=0, min_interactions=5), history(model))
    assert set(model.index.item_array[explorer.new_items(DAY)]) == {"n0", "n1", "n2", "n3"}
    # scoring a day before n0..n2 existed (a backfill): they are not shown
    assert set(model.index.item_array[explorer.new_items(date.fromordinal(DAY.toordinal() - 3))]) == {"n3"}


def test_a_new_item_takes_the_slot_and_the_model_items_move_down() -> None:
    model = popularity_model()
    batch, ids = users(50)
    explorer = Explorer(ExplorePolicy(slots=(5,), user_share=1.0), history(model))
    top = score_batch(model, batch, k=10)
    slate = explorer.apply(model, top, batch, ids, DAY)
    names = model.index.item_array
    assert not any(name.startswith("n") for name in names[top.items].ravel())  # popularity never shows them
    assert slate.explore[:, 4].all() and slate.explore.sum() == 50
    shown = names[slate.top.items[:, 4]]
    assert all(name.startswith("n") for name in shown)
    # the model's own items keep their order around the slot, and the 10th model item drops off
    np.testing.assert_array_equal(slate.top.items[:, :4], top.items[:, :4])
    np.testing.assert_array_equal(slate.top.items[:, 5:], top.items[:, 4:9])
    assert np.isnan(slate.propensity[~slate.explore]).all()
    p = slate.propensity[:, 4]
    assert ((p > 0) & (p <= 1)).all()
    # recency weights 1 / (1 + age): n0 (age 0) has weight 1 of 1 + 1/2 + 1/3 + 1/4
    total = sum(1 / (1 + a) for a in range(N_NEW))
    np.testing.assert_allclose(p[shown == "n0"], 1 / total)
    np.testing.assert_allclose(p[shown == "n3"], (1 / 4) / total)
    # the explore row's score is the fallback's score of that item, since these users are unknown
    np.testing.assert_allclose(slate.top.scores[:, 4], model.fallback_scores()[slate.top.items[:, 4]])


def test_only_the_configured_share_explores_and_the_choice_is_seeded_by_user_and_day() -> None:
    model = popularity_model()
    batch, ids = users(4000)
    explorer = Explorer(ExplorePolicy(slots=(10,), user_share=0.25, seed=7), history(model))
    top = score_batch(model, batch, k=10)
    first = explorer.apply(model, top, batch, ids, DAY)
    share = first.explore.any(axis=1).mean()
    assert 0.22 < share < 0.28, share
    again = explorer.apply(model, top, batch, ids, DAY)
    np.testing.assert_array_equal(first.top.items, again.top.items)
    np.testing.assert_array_equal(first.propensity, again.propensity)
    # the same users in another order and another batch split choose the same
    order = np.random.default_rng(1).permutation(len(ids))
    shuffled = explorer.apply(model, score_batch(model, batch.take(order), k=10), batch.take(order), ids[order], DAY)
    np.testing.assert_array_equal(shuffled.top.items, first.top.items[order])
    next_day = explorer.apply(model, top, batch, ids, date.fromordinal(DAY.toordinal() + 1))
    assert (next_day.explore.any(axis=1) != first.explore.any(axis=1)).any()
    np.testing.assert_allclose(np.nanmax(first.propensity), 0.25 * 1 / sum(1 / (1 + a) for a in range(N_NEW)))
    nobody = Explorer(ExplorePolicy(user_share=0.0), history(model)).apply(model, top, batch, ids, DAY)
    assert not nobody.explore.any()


def test_metadata_picks_items_like_the_users_history() -> None:
    model = popularity_model()
    tags = np.zeros((model.index.n_items, 2), dtype=np.float32)
    codes = model.index.item_codes
    tags[codes([f"o{i:02d}" for i in range(0, N_OLD, 2)]), 0] = 1.0  # even old items: tag A
    tags[codes([f"o{i:02d}" for i in range(1, N_OLD, 2)]), 1] = 1.0  # odd: tag B
    tags[codes(["n0", "n2"]), 0] = 1.0
    tags[codes(["n1", "n3"]), 1] = 1.0
    explorer = Explorer(ExplorePolicy(slots=(3,), user_share=1.0), history(model, tags=tags))
    n = 400
    seen = Ragged.from_lists([codes(["o00", "o02"]).tolist()] * n)  # a tag-A history
    batch = UserBatch(codes=np.full(n, -1, dtype=np.int64), seen=seen)
    ids = np.asarray([f"a{i}" for i in range(n)], dtype=object)
    slate = explorer.apply(model, score_batch(model, batch, k=10), batch, ids, DAY)
    shown = model.index.item_array[slate.top.items[:, 2]]
    like = (1 + EPSILON) / (2 * (1 + EPSILON) + 2 * EPSILON)
    np.testing.assert_allclose(slate.propensity[np.isin(shown, ["n0", "n2"]), 2], like)
    assert np.isin(shown, ["n0", "n2"]).mean() > 0.85


def test_nothing_seen_or_already_listed_is_explored_and_short_lists_are_left_alone() -> None:
    model = popularity_model()
    codes = model.index.item_codes
    n = 200
    seen = Ragged.from_lists([codes(["n0", "n1", "n2"]).tolist()] * n)
    batch = UserBatch(codes=np.full(n, -1, dtype=np.int64), seen=seen)
    ids = np.asarray([f"s{i}" for i in range(n)], dtype=object)
    explorer = Explorer(ExplorePolicy(slots=(2, 4), user_share=1.0), history(model))
    slate = explorer.apply(model, score_batch(model, batch, k=10), batch, ids, DAY)
    names = model.index.item_array
    # only n3 is left: the first slot takes it, the second has nothing left
    assert (names[slate.top.items[:, 1]] == "n3").all() and not slate.explore[:, 3].any()
    np.testing.assert_allclose(slate.propensity[:, 1], 1.0)
    # a list shorter than k already holds everything the user could get: no slot
    tiny = explorer.apply(model, score_batch(model, batch, k=len(names)), batch, ids, DAY)
    assert not tiny.explore.any()


def test_policy_rejects_bad_values_and_unknown_keys() -> None:
    assert ExplorePolicy.from_dict({"slots": 5}).slots == (5,)
    assert ExplorePolicy.from_dict(ExplorePolicy(slots=(9, 5)).as_dict()).slots == (5, 9)
    with pytest.raises(ValueError, match="unknown keys"):
        ExplorePolicy.from_dict({"slot": 5})
    for bad in ({"slots": [0]}, {"slots": [3, 3]}, {"user_share": 1.5}, {"new_within_days": -1}):
        with pytest.raises(ValueError):
            ExplorePolicy.from_dict(bad)


def test_draws_are_uniform_and_depend_on_purpose_seed_and_day() -> None:
    ids = np.asarray([f"x{i}" for i in range(20000)], dtype=object)
    u = uniform_draws(ids, "share", 1, DAY)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01
    assert not np.array_equal(u, uniform_draws(ids, "slot5", 1, DAY))
    assert not np.array_equal(u, uniform_draws(ids, "share", 2, DAY))
    np.testing.assert_array_equal(u[:10], uniform_draws(ids[:10], "share", 1, DAY))
