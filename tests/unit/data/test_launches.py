"""The launch world: populations with different tastes, new items with known likers, reproducible days."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.data.launches import LAUNCHER, LaunchWorld


def test_populations_buy_mostly_their_own_category() -> None:
    world = LaunchWorld(n_users=300, seed=3)
    events = pd.concat([world.organic(d) for d in range(-20, 0)], ignore_index=True)
    customers = events[events[COL_USER] != LAUNCHER]
    population = customers[COL_USER].str[1:].astype(int) % world.populations
    category = customers[COL_ITEM].map(world.category)
    own = float((population == category).mean())
    # taste 0.85 plus a third of the rest landing on the own category by chance: about 0.9
    assert 0.85 < own < 0.95, own
    assert len(customers) > 0.25 * 300 * 20 * 0.9  # activity 0.3 a day


def test_a_day_is_the_same_whenever_it_is_generated_and_launches_are_known() -> None:
    world = LaunchWorld(seed=5, discovery=0.0)
    pd.testing.assert_frame_equal(world.organic(3), LaunchWorld(seed=5, discovery=0.0).organic(3))
    day = world.organic(2)
    assert day.loc[day[COL_USER] == LAUNCHER, COL_ITEM].tolist() == ["new-02"]
    assert not day[COL_ITEM].isin(world.new_items[:2]).any()  # nobody finds them with discovery 0
    assert world.organic(world.launches)[COL_USER].ne(LAUNCHER).all()  # no launch after the last
    likers = world.likers("new-04")
    assert len(likers) == world.n_users // world.populations
    assert {int(u[1:]) % world.populations for u in likers} == {world.category("new-04")} == {1}
    assert world.tags()["new-04"] == ["category-1"] and world.tags()["o005"] == ["category-2"]


def test_likers_take_a_shown_item_far_more_often_and_the_draws_are_pure() -> None:
    world = LaunchWorld(seed=9)
    likers, others = world.likers("new-00"), np.setdiff1d(world.users, world.likers("new-00"))
    users = np.concatenate([likers, others])
    items = np.asarray(["new-00"] * len(users), dtype=object)
    took = world.takes(users, items, 4)
    assert 0.4 < took[: len(likers)].mean() < 0.6 and took[len(likers) :].mean() < 0.06
    order = np.random.default_rng(0).permutation(len(users))
    np.testing.assert_array_equal(world.takes(users[order], items[order], 4), took[order])
