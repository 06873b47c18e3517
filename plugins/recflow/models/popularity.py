"""Popularity baseline: every user gets the most-interacted items they have not seen.

Always trained beside the learned models, because a model that cannot beat it is not worth promoting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.base import write_model_json
from recflow.models.index import IdIndex, SeenItems, read_items
from recflow.models.tables import TableBackedRecommender, coded_pairs, write_pair_tables

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame


class PopularityRecommender(TableBackedRecommender):
    """Scores an item by its number of distinct training users, divided by the most popular item's
    (in [0, 1]: the same numbers as the fallback every family uses for unknown users).

    :meth:`fit_spark` keeps the data in Spark, as ALS does: dense codes, the per-item counts and the seen
    items are computed there and written as the artifact's tables; the driver reads back the item side
    only (bounded by the catalog). :meth:`fit` builds the same model from a small in-memory frame.
    """

    family = "popularity"
    user_factors_in_table = False

    def __init__(
        self, index: IdIndex, seen: SeenItems, *, popularity: np.ndarray | None = None, tables: Path | None = None
    ) -> None:
        super().__init__(index, seen, popularity=popularity, tables=tables)

    @classmethod
    def fit(cls, train: pd.DataFrame, *, col_user: str = COL_USER, col_item: str = COL_ITEM) -> PopularityRecommender:
        """From an in-memory frame of interactions (tests, small tools)."""
        index = IdIndex.from_frame(train, col_user=col_user, col_item=col_item)
        return cls(index, SeenItems.from_frame(train, index, col_user=col_user, col_item=col_item))

    @classmethod
    def fit_spark(cls, train: DataFrame, work_dir: Path) -> PopularityRecommender:
        """From a Spark frame of interactions; the tables go to ``work_dir`` and the model holds the item
        side (codes in sorted id order, as :meth:`fit` numbers them, so ties rank the same)."""
        users, items, pairs = coded_pairs(train)
        try:
            write_pair_tables(work_dir, users, items, pairs)
        finally:
            pairs.unpersist()
        return cls._item_side(read_items(work_dir), work_dir)

    def _fields(self, user_factors: np.ndarray | None) -> dict[str, Any]:
        return {}

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.fallback_scores(), (len(user_codes), self.index.n_items))

    def for_workers(self) -> PopularityRecommender:
        return self.item_side_copy()

    def save(self, folder: Path) -> None:
        """The tables (copied as Spark wrote them, or written from memory) and ``model.json``."""
        self._save_tables(folder)
        write_model_json(folder, type(self))

    @classmethod
    def load(cls, folder: Path) -> PopularityRecommender:
        return cls.load_item_side(folder).with_user_side()

    @classmethod
    def load_item_side(cls, folder: Path) -> PopularityRecommender:
        if (folder / "users.json").exists():  # schema 1: JSON ids, NumPy seen index
            return cls(IdIndex.load(folder), SeenItems.load(folder))
        return cls._item_side(read_items(folder), folder)
