"""Calibration figures by hand, labelled pairs, folds, and the fit-here-measure-there rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER
from recflow.evaluation.calibration import (
    COL_LABEL,
    calibrate_on_holdout,
    calibration_figures,
    in_calibration_fold,
    labelled_pairs,
)


def test_figures_match_a_hand_computation() -> None:
    # bins of width 1/15: 0.1 -> bin 1, 0.9 -> bin 13, 1.0 -> bin 14 (the last bin is closed)
    p = np.array([0.1, 0.1, 0.9, 0.9, 1.0])
    y = np.array([0, 1, 1, 1, 0])
    figures = calibration_figures(p, y)
    # bin 1: mean 0.1, rate 0.5 (gap 0.4, 2 pairs); bin 13: mean 0.9, rate 1 (gap 0.1, 2); bin 14: gap 1 (1)
    assert figures.ece == pytest.approx((2 * 0.4 + 2 * 0.1 + 1 * 1.0) / 5)
    assert figures.mce == pytest.approx(1.0)
    assert figures.brier == pytest.approx((0.01 + 0.81 + 0.01 + 0.01 + 1.0) / 5)
    assert [b["pairs"] for b in figures.bins] == [2, 2, 1]
    assert figures.positives == 3


def test_figures_refuse_nan_and_empty_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        calibration_figures(np.array([np.nan]), np.array([1]))
    with pytest.raises(ValueError, match="no labelled pairs"):
        calibration_figures(np.array([]), np.array([]))


def _recs(users: list[str], k: int, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            COL_USER: np.repeat(users, k),
            COL_ITEM: [f"i{r}" for _ in users for r in range(k)],
            COL_SCORE: scores,
            COL_RANK: np.tile(np.arange(1, k + 1), len(users)),
            COL_SOURCE: "model",
        }
    )


def test_labelled_pairs_are_the_top_k_model_rows_labelled_by_the_holdout() -> None:
    recs = _recs(["a", "b"], 3, np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.0]))
    recs.loc[5, COL_SOURCE] = "fallback"
    truth = pd.DataFrame({COL_USER: ["a", "b", "c"], COL_ITEM: ["i1", "i0", "i0"]})
    pairs = labelled_pairs(recs, truth, k=2)
    assert list(zip(pairs[COL_USER], pairs[COL_ITEM], pairs[COL_LABEL], strict=True)) == [
        ("a", "i0", 0),
        ("a", "i1", 1),
        ("b", "i0", 1),
        ("b", "i1", 0),
    ]


def test_folds_depend_on_the_id_only() -> None:
    users = pd.Series([f"u{n}" for n in range(1000)])
    fold = in_calibration_fold(users)
    assert 400 < fold.sum() < 600
    np.testing.assert_array_equal(fold, in_calibration_fold(users[::-1])[::-1])


def test_the_map_is_fitted_on_one_fold_and_measured_on_the_other() -> None:
    rng = np.random.default_rng(4)
    users = [f"u{n}" for n in range(800)]
    k = 5
    scores = rng.normal(0, 2, len(users) * k)
    recs = _recs(users, k, scores)
    hit = rng.random(len(recs)) < 1 / (1 + np.exp(-(scores - 1)))
    truth = recs.loc[hit, [COL_USER, COL_ITEM]]
    result = calibrate_on_holdout(recs, truth, k=k)
    fit_users = result.calibration.fit["users"]
    measured = result.after.pairs
    in_fit = in_calibration_fold(pd.Series(users))
    assert fit_users == in_fit.sum() and measured == (~in_fit).sum() * k
    assert result.calibration.method == "isotonic" and result.calibration.fit["pairs"] >= 1000
    assert result.after.ece < result.before.ece
    assert result.after.brier < result.before.brier
