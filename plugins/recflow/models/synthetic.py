"""Random-factor ALS artifacts for benchmarks and fault tests.

Why random: a scorer's cost and behaviour depend on the shapes (users, items, rank, seen items per
user), not on what was learnt, and a real fit would cost minutes per test. The artifact is a normal
``AlsRecommender`` folder, loaded and served exactly like a trained one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.artifact import save_candidate_index
from recflow.models.index import IdIndex, SeenItems
from recflow.scoring.ann import AnnParams


def random_als(
    folder: Path,
    *,
    n_users: int = 1000,
    n_items: int = 500,
    rank: int = 32,
    seen_per_user: int = 10,
    seed: int = 0,
    ann: AnnParams | None = None,
) -> AlsRecommender:
    """Write an ALS artifact with users ``u0..``, items ``i0..`` and seeded random factors into ``folder``
    (with ``ann``: and its item index, whatever the catalog size, as training writes it for a large one)."""
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(n_users)]
    items = [f"i{i}" for i in range(n_items)]
    pairs = pd.DataFrame(
        {
            COL_USER: np.repeat(users, seen_per_user),
            # Zipf-like popularity, so the fallback ranking is not flat.
            COL_ITEM: np.asarray(items)[np.minimum(rng.zipf(1.3, n_users * seen_per_user) - 1, n_items - 1)],
        }
    )
    index = IdIndex(users=tuple(sorted(users)), items=tuple(sorted(items)))
    model = AlsRecommender(
        index,
        SeenItems.from_frame(pairs, index),
        (rng.standard_normal((n_users, rank)) / np.sqrt(rank)).astype(np.float32),
        (rng.standard_normal((n_items, rank)) / np.sqrt(rank)).astype(np.float32),
        AlsParams(rank=rank),
    )
    model.save(folder)
    if ann is not None:
        save_candidate_index(model, folder, min_items=0, params=ann)
    return model
