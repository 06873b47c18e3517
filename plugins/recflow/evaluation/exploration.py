"""What exploration costs and finds: the model's own slots judged apart from the exploration slots.

An exploration row (``source == "explore"``, :mod:`recflow.scoring.explore`) is never a hit of the model:
:func:`model_slots_ndcg` scores each list at the positions it was shown, with explore rows giving no gain
even when the user took the item, so the model's metric falls only because its items moved down or out.
The explore rows get their own line (:func:`explore_line`), and :func:`exploration_cost` sets the
model's nDCG with exploration on beside the same model's lists with it off.

Definitions (binary relevance, as :func:`recflow.evaluation.metrics.ndcg_at_k`): users are the truth's
users with at least one relevant item; DCG sums ``1 / log2(rank + 1)`` over the model rows at
``rank <= k`` whose item is relevant; the ideal DCG puts ``min(relevant, k)`` hits at ranks 1, 2, ...
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_RANK, COL_SOURCE, COL_USER, DEFAULT_K
from recflow.scoring.explore import SOURCE_EXPLORE


def _hits(slates: pd.DataFrame, truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """The slate rows at ``rank <= k`` whose (user, item) pair is in the truth."""
    missing = {COL_USER, COL_ITEM, COL_RANK, COL_SOURCE} - set(slates.columns)
    if missing:
        raise ValueError(f"slates lack columns {sorted(missing)}; they have {list(slates.columns)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pairs = truth[[COL_USER, COL_ITEM]].drop_duplicates()
    shown = slates.loc[slates[COL_RANK] <= k, [COL_USER, COL_ITEM, COL_RANK, COL_SOURCE]]
    return shown.merge(pairs, on=[COL_USER, COL_ITEM], how="inner")


def model_slots_ndcg(slates: pd.DataFrame, truth: pd.DataFrame, *, k: int = DEFAULT_K) -> float:
    """nDCG@k (min=0, max=1) of the model's own rows at their shown ranks; explore rows never count."""
    relevant = truth[[COL_USER, COL_ITEM]].drop_duplicates().groupby(COL_USER).size()
    if relevant.empty:
        raise ValueError("the truth has no (user, item) pairs to judge against")
    hits = _hits(slates, truth, k)
    hits = hits[hits[COL_SOURCE] != SOURCE_EXPLORE]
    gain = pd.Series(1.0 / np.log2(hits[COL_RANK].to_numpy() + 1.0), index=hits[COL_USER].to_numpy())
    dcg = gain.groupby(level=0).sum().reindex(relevant.index, fill_value=0.0)
    ideal_prefix = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = ideal_prefix[np.minimum(relevant.to_numpy(), k) - 1]
    return float((dcg.to_numpy() / idcg).mean())


def explore_line(slates: pd.DataFrame, truth: pd.DataFrame, *, k: int = DEFAULT_K) -> dict[str, Any]:
    """The exploration rows on their own line: how many were shown (to how many users), how many the
    users then took (``hits``, a (user, item) pair of the truth) and ``hit_rate = hits / rows``."""
    shown = slates[(slates[COL_SOURCE] == SOURCE_EXPLORE) & (slates[COL_RANK] <= k)]
    hits = _hits(slates, truth, k)
    n_hits = int((hits[COL_SOURCE] == SOURCE_EXPLORE).sum())
    return {
        "rows": len(shown),
        "users": int(shown[COL_USER].nunique()),
        "hits": n_hits,
        "hit_rate": n_hits / len(shown) if len(shown) else 0.0,
    }


def exploration_cost(
    with_explore: pd.DataFrame, without: pd.DataFrame, truth: pd.DataFrame, *, k: int = DEFAULT_K
) -> dict[str, Any]:
    """The model's nDCG@k with exploration off and on (its own slots only), the relative loss
    ``1 - on / off`` (0 when off is 0), and the explore line of ``with_explore``."""
    off = model_slots_ndcg(without, truth, k=k)
    on = model_slots_ndcg(with_explore, truth, k=k)
    return {
        f"ndcg@{k}_off": off,
        f"ndcg@{k}_on_model_slots": on,
        "relative_loss": 1.0 - on / off if off > 0 else 0.0,
        "explore": explore_line(with_explore, truth, k=k),
    }
