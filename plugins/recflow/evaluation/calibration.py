"""Fitting a candidate's score-to-propensity map, and measuring how well calibrated it is.

Labelled pairs (what the map is fitted and judged on)
------------------------------------------------------
The pairs an offer can be made on are the top-K lists, so those are the pairs labelled: for every
hold-out user (a user with at least one judgeable hold-out pair, :mod:`recflow.evaluation.python_holdout`),
the model's top ``k`` over the full catalog with the user's training items removed, ranks 1..k, model
rows only. A pair is **positive** when the user interacts with the item in the hold-out window (it is
among the judged hold-out pairs), **negative** otherwise. Negatives are therefore not sampled at random
from the catalog: they are the items the model itself put at ranks 1..k that the user did not take, which
is the population a threshold on the propensity will decide on.

Fitted on data its figures are never measured on
------------------------------------------------
The hold-out users are split in two folds by the first byte of ``sha256(user_id)`` (even: the
*calibration* fold, odd: the *evaluation* fold), a rule that depends on nothing but the id, so a re-run
splits the same way. The map is fitted on the calibration fold's pairs only; every figure (ECE, MCE,
Brier, reliability diagram), before and after, is measured on the evaluation fold's pairs only.

Method: isotonic regression (:class:`sklearn.isotonic.IsotonicRegression`) when the calibration fold
holds at least :data:`ISOTONIC_MIN_PAIRS` labelled pairs, else Platt scaling (a one-feature
:class:`sklearn.linear_model.LogisticRegression` on the score; a fitted negative slope, a model whose
scores anti-correlate with interactions, is replaced by the constant base rate so the map never reverses
a ranking). A fold with one class only gets the constant map at its base rate.

Figures (``15`` equal-width bins over [0, 1]; "before" reads the raw score clipped to [0, 1] as a
probability, which is what a threshold on the raw score does):

* ECE = sum over bins of (pairs in bin / pairs) * |positive rate - mean prediction|;
* MCE = max over non-empty bins of |positive rate - mean prediction|;
* Brier = mean of (prediction - label)^2.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER
from recflow.scoring.calibration import Calibration
from recflow.scoring.core import SOURCE_MODEL

ISOTONIC_MIN_PAIRS: Final = 1_000
N_BINS: Final = 15
COL_LABEL: Final = "label"


class CalibrationFitError(ValueError):
    """No map can be fitted: the calibration fold has no labelled pair."""


def labelled_pairs(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int) -> pd.DataFrame:
    """The top-``k`` model rows of ``recs`` (user, item, score, rank, and propensity when ``recs`` has it)
    with ``label`` 1 when the pair is in ``truth`` (the judged hold-out pairs), else 0 (see the module
    docstring)."""
    columns = [c for c in (COL_USER, COL_ITEM, COL_SCORE, COL_RANK, COL_PROPENSITY) if c in recs.columns]
    top = recs[(recs[COL_RANK] <= k) & (recs[COL_SOURCE] == SOURCE_MODEL)][columns]
    top = top.astype({COL_USER: str, COL_ITEM: str})
    positive = truth[[COL_USER, COL_ITEM]].astype(str).drop_duplicates().assign(**{COL_LABEL: 1})
    out = top.merge(positive, on=[COL_USER, COL_ITEM], how="left")
    out[COL_LABEL] = out[COL_LABEL].fillna(0).astype(np.int8)
    return out.sort_values([COL_USER, COL_RANK], kind="stable").reset_index(drop=True)


def in_calibration_fold(users: pd.Series) -> np.ndarray:
    """True for users of the calibration fold (first byte of sha256(user_id) even), False for evaluation."""
    return np.fromiter(
        (hashlib.sha256(str(u).encode()).digest()[0] % 2 == 0 for u in users), dtype=bool, count=len(users)
    )


def fit_calibration(scores: np.ndarray, labels: np.ndarray, *, fit: dict[str, Any] | None = None) -> Calibration:
    """The map for these labelled scores: isotonic from :data:`ISOTONIC_MIN_PAIRS` pairs, else Platt."""
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(x) == 0:
        raise CalibrationFitError("no labelled pairs to fit a calibration on: the calibration fold is empty")
    info = {"pairs": len(x), "positives": int(y.sum()), **(fit or {})}
    if len(x) >= ISOTONIC_MIN_PAIRS:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(x, y)
        knots_x = tuple(float(v) for v in iso.X_thresholds_)
        knots_y = tuple(float(v) for v in iso.y_thresholds_)
        return Calibration("isotonic", x=knots_x, y=knots_y, fit=info)
    rate = float(y.mean())
    if 0.0 < rate < 1.0:
        lr = LogisticRegression(C=1e6).fit(x.reshape(-1, 1), y)
        a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
        if a >= 0:
            return Calibration("platt", a=a, b=b, fit=info)
        info["note"] = f"fitted slope {a:.4g} < 0 (scores anti-correlate with interactions): constant base rate"
    clipped = min(max(rate, 1e-6), 1 - 1e-6)
    return Calibration("platt", a=0.0, b=float(np.log(clipped / (1 - clipped))), fit=info)


@dataclass(frozen=True)
class CalibrationFigures:
    """ECE, MCE and Brier of predictions against labels, with the reliability diagram's bins."""

    ece: float
    mce: float
    brier: float
    pairs: int
    positives: int
    #: One entry per non-empty bin: lower edge, upper edge, pairs, mean prediction, positive rate.
    bins: tuple[dict[str, float], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ece": self.ece,
            "mce": self.mce,
            "brier": self.brier,
            "pairs": self.pairs,
            "positives": self.positives,
            "bins": list(self.bins),
        }


def calibration_figures(predictions: np.ndarray, labels: np.ndarray, *, n_bins: int = N_BINS) -> CalibrationFigures:
    """ECE / MCE over ``n_bins`` equal-width bins of [0, 1] and the Brier score (all in [0, 1]).

    Predictions are clipped to [0, 1]; a prediction of exactly 1 falls in the last bin.
    """
    p = np.clip(np.asarray(predictions, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} labels")
    if len(p) == 0:
        raise ValueError("no labelled pairs to measure calibration on")
    if np.isnan(p).any():
        raise ValueError("predictions contain NaN: a pair without a propensity cannot be measured")
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.float64)
    mean_p = np.asarray(np.bincount(which, weights=p, minlength=n_bins), dtype=np.float64)
    rate = np.asarray(np.bincount(which, weights=y, minlength=n_bins), dtype=np.float64)
    used = counts > 0
    mean_p[used] /= counts[used]
    rate[used] /= counts[used]
    gaps = np.abs(rate - mean_p)
    bins = tuple(
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "pairs": int(counts[b]),
            "mean_prediction": float(mean_p[b]),
            "positive_rate": float(rate[b]),
        }
        for b in np.flatnonzero(used)
    )
    return CalibrationFigures(
        ece=float((counts[used] / len(p) * gaps[used]).sum()),
        mce=float(gaps[used].max()),
        brier=float(np.mean((p - y) ** 2)),
        pairs=len(p),
        positives=int(y.sum()),
        bins=bins,
    )


@dataclass(frozen=True)
class CalibrationResult:
    """The fitted map and its figures before and after, measured on the evaluation fold."""

    calibration: Calibration
    before: CalibrationFigures
    after: CalibrationFigures

    def report(self) -> dict[str, Any]:
        """The ``calibration`` section of ``metrics.json``."""
        return {
            "method": self.calibration.method,
            "fitted_on": self.calibration.fit,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "definitions": {
                "pairs": "top-k model rows of each hold-out user; positive = the user interacts with the item in "
                "the hold-out, negative = a top-k item the user did not take",
                "folds": "hold-out users split by sha256(user_id)[0] % 2: even fits the map, odd measures it",
                "figures": f"ECE and MCE over {N_BINS} equal-width bins of [0, 1]; Brier = mean squared error; "
                "'before' reads the raw score clipped to [0, 1] as a probability",
            },
        }


def calibrate_on_holdout(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int) -> CalibrationResult:
    """Fit the map on the calibration fold's labelled pairs and measure it on the evaluation fold's."""
    pairs = labelled_pairs(recs, truth, k=k)
    fold = in_calibration_fold(pairs[COL_USER])
    fit_part, measure_part = pairs[fold], pairs[~fold]
    if measure_part.empty:
        raise CalibrationFitError("the evaluation fold has no labelled pairs: too few hold-out users to measure on")
    calibration = fit_calibration(
        fit_part[COL_SCORE].to_numpy(),
        fit_part[COL_LABEL].to_numpy(),
        fit={"fold": "sha256(user_id)[0] % 2 == 0", "users": int(fit_part[COL_USER].nunique()), "k": k},
    )
    scores, labels = measure_part[COL_SCORE].to_numpy(), measure_part[COL_LABEL].to_numpy()
    return CalibrationResult(
        calibration=calibration,
        before=calibration_figures(scores, labels),
        after=calibration_figures(calibration.apply(scores), labels),
    )


def holdout_figures(recs: pd.DataFrame, truth: pd.DataFrame, *, k: int) -> dict[str, Any] | None:
    """Figures of a stored map on a hold-out (the compare step's, for every candidate and the champion):
    the evaluation fold's labelled pairs only, since a candidate's map was fitted on the other fold of
    this same hold-out. None when the model has no map (no propensity) or the fold has no pair."""
    pairs = labelled_pairs(recs, truth, k=k)
    measured = pairs[~in_calibration_fold(pairs[COL_USER])]
    if measured.empty or COL_PROPENSITY not in measured or measured[COL_PROPENSITY].isna().any():
        return None
    labels = measured[COL_LABEL].to_numpy()
    return {
        "before": calibration_figures(measured[COL_SCORE].to_numpy(), labels).as_dict(),
        "after": calibration_figures(measured[COL_PROPENSITY].to_numpy(), labels).as_dict(),
    }
