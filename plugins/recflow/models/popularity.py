"""Popularity baseline: every user gets the most-interacted items they have not seen.

Always trained beside the learned models, because a model that cannot beat it is not worth promoting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.artifact import IdIndex, Recommender, SeenItems, write_model_json, write_user_table


class PopularityRecommender(Recommender):
    """Scores an item by its number of distinct training users, divided by the most popular item's
    (in [0, 1]: the same numbers as the fallback every family uses for unknown users)."""

    family = "popularity"

    @classmethod
    def fit(cls, train: pd.DataFrame, *, col_user: str = COL_USER, col_item: str = COL_ITEM) -> PopularityRecommender:
        index = IdIndex.from_frame(train, col_user=col_user, col_item=col_item)
        return cls(index, SeenItems.from_frame(train, index, col_user=col_user, col_item=col_item))

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.fallback_scores(), (len(user_codes), self.index.n_items))

    def for_workers(self) -> PopularityRecommender:
        return self.item_side_copy()

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        self.seen.save(folder)
        write_user_table(folder, self.index)
        write_model_json(folder, type(self))

    @classmethod
    def load(cls, folder: Path) -> PopularityRecommender:
        return cls(IdIndex.load(folder), SeenItems.load(folder))
