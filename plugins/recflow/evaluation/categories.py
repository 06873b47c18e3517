"""The purchase-card demo's table "by mid": per item (merchant category), how the offer decision did.

For each item: ``pos_count`` = judged hold-out pairs of the item (users who took it in the hold-out);
from the top-``k`` model rows of the hold-out users (the calibration's labelled pairs,
:func:`recflow.evaluation.calibration.labelled_pairs`), a pair is *predicted positive* when it is eligible
for the item's offer (``int(1000 * propensity) >= threshold``, :func:`recflow.data.offers.is_eligible`):

* ``tp`` = eligible pairs the user took; ``fp`` = eligible pairs the user did not take;
* ``fn`` = ``pos_count - tp`` (positives not offered: below the threshold or not in the top-K);
* ``precision`` = tp / (tp + fp), ``recall`` = tp / pos_count (NaN when the denominator is 0);
* ``precision_at_k`` = hits / times the item was in a top-K, ``recall_at_k`` = hits / pos_count: the
  ranking alone, without the threshold.

Items without an offer (no threshold) are left out of the offer columns (NaN) and keep the @K columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_USER
from recflow.data.offers import is_eligible
from recflow.evaluation.calibration import COL_LABEL, labelled_pairs

CATEGORY_COLUMNS: Final = (
    "pos_count",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "precision_at_k",
    "recall_at_k",
)


def category_table(
    recs: pd.DataFrame, truth: pd.DataFrame, *, k: int, thresholds: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """One row per item of ``truth`` or of the top-``k`` lists, indexed by item (see the module docstring)."""
    pairs = labelled_pairs(recs, truth, k=k)
    pos = truth[[COL_USER, COL_ITEM]].drop_duplicates().astype(str).groupby(COL_ITEM).size()
    items = sorted(set(pos.index) | set(pairs[COL_ITEM]))
    table = pd.DataFrame(index=pd.Index(items, name=COL_ITEM))
    table["pos_count"] = pos.reindex(items, fill_value=0).astype(np.int64)
    shown = pairs.groupby(COL_ITEM).size().reindex(items, fill_value=0)
    hits = pairs[pairs[COL_LABEL] == 1].groupby(COL_ITEM).size().reindex(items, fill_value=0)
    if thresholds is not None and COL_PROPENSITY in pairs:
        threshold = pairs[COL_ITEM].map(thresholds).astype(np.float64).to_numpy()
        eligible = is_eligible(pairs[COL_PROPENSITY].to_numpy(dtype=np.float64), threshold)
        offered = pairs[eligible]
        tp = offered[offered[COL_LABEL] == 1].groupby(COL_ITEM).size().reindex(items, fill_value=0)
        fp = offered[offered[COL_LABEL] == 0].groupby(COL_ITEM).size().reindex(items, fill_value=0)
        has_offer = pd.Series(items, index=items).isin(list(thresholds))
        table["tp"] = tp.where(has_offer)
        table["fp"] = fp.where(has_offer)
        table["fn"] = (table["pos_count"] - tp).where(has_offer)
    else:
        table["tp"] = table["fp"] = table["fn"] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        table["precision"] = table["tp"] / (table["tp"] + table["fp"])
        table["recall"] = table["tp"] / table["pos_count"].where(table["pos_count"] > 0)
        table["precision_at_k"] = hits / shown.where(shown > 0)
        table["recall_at_k"] = hits / table["pos_count"].where(table["pos_count"] > 0)
    return table[list(CATEGORY_COLUMNS)]


def weakest_categories(table: pd.DataFrame, n: int = 5, *, min_positives: int = 1) -> pd.DataFrame:
    """The ``n`` items with the lowest recall@K among those with at least ``min_positives`` positives
    (ties: more positives first, then the item id)."""
    judged = table[table["pos_count"] >= min_positives].reset_index()
    ordered = judged.sort_values(["recall_at_k", "pos_count", COL_ITEM], ascending=[True, False, True])
    return ordered.head(n).set_index(COL_ITEM)
