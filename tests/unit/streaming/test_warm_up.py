"""The warm-up every serving process runs on a new model before it may replace the serving one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.synthetic import random_als
from recflow.streaming.follower import WarmUpFailed, warm_up_model


def _model(tmp_path: Path, items: float | None = None) -> Recommender:
    """A random ALS artifact, loaded; with ``items``, every item factor is that value and every user
    factor positive (so a huge value overflows to +inf without a NaN)."""
    model = random_als(tmp_path / "model", n_users=50, n_items=20, rank=4, seed=1)
    if items is None:
        return load_recommender(tmp_path / "model")
    model.item_factors[:] = items
    np.abs(model.user_factors, out=model.user_factors)
    model.save(tmp_path / "broken")
    return load_recommender(tmp_path / "broken")


def test_a_working_model_passes(tmp_path: Path) -> None:
    warm_up_model(_model(tmp_path))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize(
    ("items", "message"),
    [
        (np.nan, "no item for any of the 32 known probe users"),  # a diverged fit; was served as -3.4e38 scores
        (3e38, "scores that are not finite numbers"),  # scores overflow float32
    ],
)
def test_a_model_that_loads_but_cannot_serve_fails(tmp_path: Path, items: float, message: str) -> None:
    with pytest.raises(WarmUpFailed, match=message):
        warm_up_model(_model(tmp_path, items))
