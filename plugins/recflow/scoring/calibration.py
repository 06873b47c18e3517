"""A model's map from score to propensity, as plain data the scoring core applies.

Why a map at all: ALS scores are dot products, NCF's an uncalibrated sigmoid, popularity a share of
users; none is a probability, so a threshold on the raw score means something different for every family
and every night. The map turns a model score into P(the user interacts with the item in the next window)
(see :mod:`recflow.evaluation.calibration` for how it is fitted and on which pairs).

Why plain data: the map is stored in the artifact as ``calibration.json`` (covered by the registry's
manifest digest like every other file), so it is read without unpickling anything, and applying it is a
NumPy expression with no scikit-learn import on a Spark worker or in the Kafka scorer:

* ``isotonic``: piecewise linear through ``(x, y)`` knots, flat beyond the end knots. That is
  ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip").predict`` on the fitted
  ``X_thresholds_`` / ``y_thresholds_``.
* ``platt``: ``1 / (1 + exp(-(a * score + b)))`` with ``a >= 0``.

Both are non-decreasing in the score, so calibration never reorders a ranking.

Only model-sourced rows are mapped: the popularity fallback (users the model never saw) has a score on
another scale that no labelled pair measured, so its rows get ``NaN`` (unknown propensity, never an
offer) rather than a number the map was not fitted for. A model without a map (an artifact written
before calibration existed) gives ``NaN`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

CALIBRATION_FILE: Final = "calibration.json"
CALIBRATION_SCHEMA_VERSION: Final = 1

Method = Literal["isotonic", "platt"]


class CalibrationError(ValueError):
    """A calibration file or map that cannot be applied (unknown method, knots out of order, bad numbers)."""


@dataclass(frozen=True)
class Calibration:
    """One fitted map; ``x``/``y`` are the isotonic knots, ``a``/``b`` the Platt coefficients.

    ``fit`` records what it was fitted on (pairs, positives, fold), for the report and for anyone who
    reads the JSON.
    """

    method: Method
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method == "isotonic":
            xs, ys = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
            if len(xs) == 0 or len(xs) != len(ys):
                raise CalibrationError(f"isotonic map needs as many x as y knots (>= 1), got {len(xs)} and {len(ys)}")
            if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
                raise CalibrationError("isotonic knots must be finite numbers")
            if np.any(np.diff(xs) < 0) or np.any(np.diff(ys) < 0):
                raise CalibrationError("isotonic knots must be non-decreasing in x and in y")
            if ys[0] < 0 or ys[-1] > 1:
                raise CalibrationError(f"isotonic y knots must lie in [0, 1], got [{ys[0]}, {ys[-1]}]")
        elif self.method == "platt":
            if not (np.isfinite(self.a) and np.isfinite(self.b)):
                raise CalibrationError(f"Platt coefficients must be finite, got a={self.a}, b={self.b}")
            if self.a < 0:
                raise CalibrationError(f"Platt slope a={self.a} < 0 would reverse the ranking")
        else:
            raise CalibrationError(f"unknown calibration method {self.method!r}: expected 'isotonic' or 'platt'")

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Propensities in [0, 1] (float64) for model scores; NaN scores (padding) stay NaN."""
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            out = np.interp(s, np.asarray(self.x), np.asarray(self.y))
        else:
            with np.errstate(over="ignore"):
                out = 1.0 / (1.0 + np.exp(-(self.a * s + self.b)))
        return np.where(np.isnan(s), np.nan, out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": CALIBRATION_SCHEMA_VERSION,
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("schema_version") != CALIBRATION_SCHEMA_VERSION:
            found = data.get("schema_version")
            raise CalibrationError(
                f"calibration schema_version {found!r}; this recflow reads {CALIBRATION_SCHEMA_VERSION}"
            )
        try:
            return cls(
                method=data["method"],
                x=tuple(float(v) for v in data.get("x", ())),
                y=tuple(float(v) for v in data.get("y", ())),
                a=float(data.get("a", 0.0)),
                b=float(data.get("b", 0.0)),
                fit=dict(data.get("fit", {})),
            )
        except CalibrationError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"calibration data is malformed: {exc}") from exc

    def save(self, folder: Path) -> Path:
        """Write ``calibration.json`` into an artifact folder (sorted keys: re-runs write the same bytes)."""
        path = folder / CALIBRATION_FILE
        path.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        """The artifact's map, or None when it has none (written before calibration existed)."""
        path = folder / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CalibrationError(f"{path} holds {type(data).__name__}, expected an object")
        return cls.from_dict(data)


def propensities(calibration: Calibration | None, scores: np.ndarray, fallback_rows: np.ndarray) -> np.ndarray:
    """The core's step: the map applied to a (n x k) score matrix, NaN on fallback rows and without a map."""
    out = np.full(scores.shape, np.nan, dtype=np.float64)
    if calibration is None:
        return out
    model_rows = ~np.asarray(fallback_rows, dtype=bool)
    out[model_rows] = calibration.apply(scores[model_rows])
    return out
