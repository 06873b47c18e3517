"""A synthetic world where new items launch during a simulated run, each liked by a known set of users.

Why: exploration (:mod:`recflow.scoring.explore`) is judged by how soon a new item finds the users who
like it and by what it costs the model's own slots. That needs ground truth nobody has for real data:
who would like an item nobody has bought. Here it is by construction.

The generative model (all of it fixed by ``seed``; each day is computable on its own):

* **Populations with different tastes.** User ``u`` belongs to population ``u % populations`` and
  buys from "its" category (``c == population``) with probability ``taste``, else from any category.
  Items ``o000 ..`` belong to category ``i % populations``; within a category, popularity is Zipf.
* **Activity.** On each day a user makes one purchase with probability ``activity``; these organic
  events do not depend on what any recommender showed, so a run with exploration and a run without
  face the same users and the same truth.
* **Launches.** New item ``new-d`` (category ``d % populations``) launches on day ``d`` of the run
  (``d < launches``) with one event by the ``launcher`` (a desk, not a customer), which puts it in the
  next model's catalog. Its **likers** are the users of its category's population. A liker finds it
  by other means with probability ``discovery`` a day; a liker shown it takes it with ``take_liked``,
  anyone else with ``take_other``.
* **Tags**: each item's category, as item metadata (``items/`` in a lake).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_TS, COL_USER, DEFAULT_SEED

LAUNCHER: Final = "launcher"
EPOCH: Final = date(2026, 1, 1)


@dataclass(frozen=True)
class LaunchWorld:
    """The world's parameters (see the module docstring); day 0 is the run's first day, warm-up days
    are negative."""

    n_users: int = 600
    populations: int = 3
    n_old_items: int = 120
    launches: int = 10
    activity: float = 0.3
    taste: float = 0.85
    discovery: float = 0.0005
    take_liked: float = 0.5
    take_other: float = 0.02
    zipf: float = 1.1
    seed: int = DEFAULT_SEED

    @property
    def users(self) -> np.ndarray:
        return np.asarray([f"u{u:04d}" for u in range(self.n_users)], dtype=object)

    @property
    def old_items(self) -> np.ndarray:
        return np.asarray([f"o{i:03d}" for i in range(self.n_old_items)], dtype=object)

    @property
    def new_items(self) -> np.ndarray:
        return np.asarray([f"new-{d:02d}" for d in range(self.launches)], dtype=object)

    def category(self, item: str) -> int:
        """The category of an old (``o<i>``) or new (``new-<d>``) item."""
        return int(item.split("-")[1] if item.startswith("new-") else item[1:]) % self.populations

    def likers(self, item: str) -> np.ndarray:
        """The users who like ``item``: its category's population."""
        return self.users[np.arange(self.n_users) % self.populations == self.category(item)]

    def tags(self) -> dict[str, list[str]]:
        """Every item's category as its one tag."""
        items = [*self.old_items.tolist(), *self.new_items.tolist()]
        return {item: [f"category-{self.category(item)}"] for item in items}

    def day(self, d: int) -> date:
        return EPOCH + timedelta(days=d)

    def organic(self, d: int) -> pd.DataFrame:
        """Day ``d``'s purchases nobody recommended: old items by taste, and new items found by likers."""
        rng = np.random.default_rng([self.seed, d + 10_000])
        active = np.flatnonzero(rng.random(self.n_users) < self.activity)
        population = active % self.populations
        own = rng.random(len(active)) < self.taste
        category = np.where(own, population, rng.integers(0, self.populations, len(active)))
        per_category = -(-self.n_old_items // self.populations)
        weights = 1.0 / np.arange(1, per_category + 1) ** self.zipf
        rank = rng.choice(per_category, size=len(active), p=weights / weights.sum())
        item = np.minimum(rank * self.populations + category, self.n_old_items - 1)
        users, items = list(self.users[active]), list(self.old_items[item])
        for launched in range(min(d, self.launches)):
            new = self.new_items[launched]
            likers = self.likers(new)
            found = likers[rng.random(len(likers)) < self.discovery]
            users += list(found)
            items += [new] * len(found)
        if d < self.launches and d >= 0:
            users.append(LAUNCHER)
            items.append(self.new_items[d])
        return self._events(users, items, d)

    def takes(self, users: np.ndarray, items: np.ndarray, d: int) -> np.ndarray:
        """Whether each user takes the item shown to them on day ``d`` (a pure function of the pairs)."""
        rng = np.random.default_rng([self.seed, d + 20_000])
        liked = np.asarray(
            [self.category(str(i)) == int(str(u)[1:]) % self.populations for u, i in zip(users, items, strict=True)],
            dtype=bool,
        )
        order = np.lexsort((np.asarray(items, dtype=str), np.asarray(users, dtype=str)))
        draws = np.empty(len(users))
        draws[order] = rng.random(len(users))
        return draws < np.where(liked, self.take_liked, self.take_other)

    def _events(self, users: list[str], items: list[str], d: int) -> pd.DataFrame:
        noon = pd.Timestamp(self.day(d), tz="UTC") + pd.Timedelta(hours=12)
        return pd.DataFrame({COL_USER: users, COL_ITEM: items, COL_TS: noon})

    def events_of_shown(self, users: np.ndarray, items: np.ndarray, d: int) -> pd.DataFrame:
        """The purchases the shown items led to on day ``d``."""
        took = self.takes(users, items, d)
        return self._events(list(users[took]), list(items[took]), d)
