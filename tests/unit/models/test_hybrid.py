"""The ALS + EASE hybrid without Spark: EASE's closed form, the blend and the artifact round trip.

EASE is checked against its definition (the minimiser of ||X - XB||^2 + lambda ||B||^2 with a zero
diagonal), not against a second copy of its formula.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_USER
from recflow.models import hybrid
from recflow.models.als import AlsRecommender
from recflow.models.artifact import load_recommender
from recflow.models.hybrid import HybridParams, HybridRecommender, ease_weights
from recflow.models.index import IdIndex, SeenItems

PAIRS = pd.DataFrame(
    {
        COL_USER: ["a", "a", "a", "b", "b", "c", "c", "d"],
        COL_ITEM: ["x", "y", "z", "x", "y", "y", "w", "w"],
    }
)


def _index() -> tuple[IdIndex, SeenItems, np.ndarray]:
    index = IdIndex.from_frame(PAIRS)
    seen = SeenItems.from_frame(PAIRS, index)
    x = np.zeros((index.n_users, index.n_items))
    x[index.user_codes(PAIRS[COL_USER]), index.item_codes(PAIRS[COL_ITEM])] = 1.0
    return index, seen, x


@pytest.mark.parametrize("lam", [0.5, 3.0, 50.0])
def test_ease_weights_solve_the_constrained_least_squares(lam: float) -> None:
    index, seen, x = _index()
    b = ease_weights(seen, index.n_users, index.n_items, lam).astype(np.float64)
    assert np.all(np.diag(b) == 0)
    # Stationarity of ||X - XB||^2 + lam ||B||^2 in every free entry B[i, j], i != j:
    # ((X^T X + lam I) B - X^T X)[i, j] = 0 (the diagonal carries the constraint's multiplier).
    gram = x.T @ x
    residual = (gram + lam * np.eye(index.n_items)) @ b - gram
    off_diagonal = ~np.eye(index.n_items, dtype=bool)
    np.testing.assert_allclose(residual[off_diagonal], 0.0, atol=1e-5)


def test_ease_weights_grow_as_lambda_shrinks() -> None:
    index, seen, _ = _index()
    weak = ease_weights(seen, index.n_users, index.n_items, 1000.0)
    strong = ease_weights(seen, index.n_users, index.n_items, 1.0)
    assert np.abs(weak).max() < np.abs(strong).max()


def test_ease_refuses_a_catalog_too_large_for_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    index, seen, _ = _index()
    monkeypatch.setattr(hybrid, "MAX_EASE_ITEMS", 3)
    with pytest.raises(ValueError, match="at most 3 items: use the als family"):
        ease_weights(seen, index.n_users, index.n_items, 1.0)


def _model(als_weight: float) -> HybridRecommender:
    index, seen, _ = _index()
    rng = np.random.default_rng(0)
    params = HybridParams(rank=2, als_weight=als_weight, ease_lambda=1.0)
    als = AlsRecommender(
        index,
        seen,
        rng.normal(size=(index.n_users, 2)).astype(np.float32),
        rng.normal(size=(index.n_items, 2)).astype(np.float32),
        params.als_params(),
    )
    return HybridRecommender(als, ease_weights(seen, index.n_users, index.n_items, 1.0), params)


def test_blend_weight_one_ranks_like_als_and_zero_like_ease() -> None:
    codes = np.arange(4)
    only_als, only_ease = _model(1.0), _model(0.0)
    assert np.array_equal(np.argsort(-only_als.score(codes)), np.argsort(-only_als.als.score(codes)))
    ease_raw = only_ease.seen.mask(codes, only_ease.index.n_items).astype(np.float32) @ only_ease.ease
    assert np.array_equal(np.argsort(-only_ease.score(codes), kind="stable"), np.argsort(-ease_raw, kind="stable"))
    blended = _model(0.5).score(codes)
    assert blended.shape == (4, 4) and np.all(np.isfinite(blended))
    np.testing.assert_allclose(blended.mean(axis=1), 0.0, atol=1e-5)  # a mean of zero-mean rows


def test_artifact_round_trip_scores_the_same(tmp_path: Path) -> None:
    model = _model(0.3)
    model.save(tmp_path / "artifact")
    loaded = load_recommender(tmp_path / "artifact")
    assert isinstance(loaded, HybridRecommender) and loaded.params == model.params
    codes = np.arange(4)
    np.testing.assert_array_equal(loaded.score(codes), model.score(codes))
    recs = loaded.recommend(["a", "d", "new-user"], k=2)
    assert set(recs[COL_USER]) == {"a", "d", "new-user"}
    assert not ((recs[COL_USER] == "a") & recs[COL_ITEM].isin(["x", "y", "z"])).any()  # seen items removed


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rnak": 4}, "unknown hybrid parameters"),
        ({"als_weight": 1.5}, "als_weight must be in"),
        ({"ease_lambda": 0.0}, "ease_lambda must be > 0"),
        ({"rank": 0}, "ALS parameters out of range"),
    ],
)
def test_bad_parameters_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HybridParams.from_dict(raw)  # type: ignore[arg-type]
