"""The score-to-propensity map: monotone, plain data that survives a save and reload, applied by the core."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recflow.evaluation.calibration import ISOTONIC_MIN_PAIRS, fit_calibration
from recflow.models.artifact import load_recommender
from recflow.models.synthetic import random_als
from recflow.scoring.calibration import CALIBRATION_FILE, Calibration, CalibrationError
from recflow.scoring.core import Ragged, UserBatch, score_batch


def _labelled(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores on an arbitrary scale whose true P(positive) is a logistic curve of the score."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0.0, 3.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(scores - 2.0)))).astype(np.int8)
    return scores, labels


@pytest.mark.parametrize(("n", "method"), [(ISOTONIC_MIN_PAIRS, "isotonic"), (ISOTONIC_MIN_PAIRS - 1, "platt")])
def test_fitted_map_is_monotone_and_survives_save_and_reload(tmp_path: Path, n: int, method: str) -> None:
    scores, labels = _labelled(n)
    fitted = fit_calibration(scores, labels)
    assert fitted.method == method
    grid = np.linspace(-20, 20, 4001)
    mapped = fitted.apply(grid)
    assert np.all(np.diff(mapped) >= 0)
    assert mapped.min() >= 0 and mapped.max() <= 1
    assert mapped[-1] > mapped[0]  # it is not a constant: the scores carry signal
    fitted.save(tmp_path)
    reloaded = Calibration.load(tmp_path)
    assert reloaded == fitted
    np.testing.assert_array_equal(reloaded.apply(grid), mapped)


def test_isotonic_map_equals_scikit_learns_prediction() -> None:
    from sklearn.isotonic import IsotonicRegression

    scores, labels = _labelled(3000, seed=1)
    fitted = fit_calibration(scores, labels)
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, labels)
    probe = np.linspace(-15, 15, 301)
    np.testing.assert_allclose(fitted.apply(probe), reference.predict(probe), rtol=0, atol=1e-12)


def test_one_class_and_anticorrelated_scores_get_a_constant_base_rate() -> None:
    assert np.all(fit_calibration(np.arange(10.0), np.zeros(10)).apply(np.arange(10.0)) < 1e-5)
    scores = np.arange(100.0)
    reversed_labels = (scores < 30).astype(np.int8)  # higher score, fewer interactions
    fitted = fit_calibration(scores, reversed_labels)
    assert fitted.a == 0.0 and "note" in fitted.fit
    np.testing.assert_allclose(fitted.apply(scores), 0.3)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"method": "magic"}, "unknown calibration method"),
        ({"method": "isotonic", "x": [0, 1], "y": [0.5]}, "as many x as y"),
        ({"method": "isotonic", "x": [1, 0], "y": [0.1, 0.2]}, "non-decreasing"),
        ({"method": "isotonic", "x": [0, 1], "y": [0.1, 1.5]}, r"\[0, 1\]"),
        ({"method": "platt", "a": -1.0}, "reverse the ranking"),
        ({"method": "platt", "a": "x"}, "malformed"),
    ],
)
def test_a_bad_calibration_file_is_refused_clearly(tmp_path: Path, payload: dict[str, object], message: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"schema_version": 1, **payload}))
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(tmp_path)


def test_the_core_gives_each_model_row_its_mapped_score_and_fallback_rows_none(tmp_path: Path) -> None:
    folder = tmp_path / "als"
    random_als(folder, n_users=20, n_items=30, rank=4, seen_per_user=3, seed=5)
    Calibration("platt", a=0.7, b=-0.2).save(folder)
    model = load_recommender(folder)
    assert model.calibration == Calibration("platt", a=0.7, b=-0.2)
    codes = np.asarray([0, 1, -1, 2], dtype=np.int64)
    top = score_batch(model, UserBatch(codes=codes, seen=Ragged.empty(4)), k=5)
    model_rows = ~top.fallback
    expected = 1 / (1 + np.exp(-(0.7 * top.scores[model_rows].astype(np.float64) - 0.2)))
    np.testing.assert_allclose(top.propensity[model_rows], expected, rtol=1e-12)
    assert np.isnan(top.propensity[top.fallback]).all()
    frame = model.recommend(list(model.index.users[:3]), k=5)
    assert frame["propensity"].between(0, 1).all()


def test_a_model_without_calibration_has_no_propensity(tmp_path: Path) -> None:
    folder = tmp_path / "als"
    random_als(folder, n_users=5, n_items=10, rank=2, seen_per_user=1, seed=1)
    model = load_recommender(folder)
    assert model.calibration is None
    top = score_batch(model, UserBatch(codes=np.arange(3), seen=Ragged.empty(3)), k=3)
    assert np.isnan(top.propensity).all()
