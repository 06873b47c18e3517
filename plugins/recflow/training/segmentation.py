"""A spec's ``segmentation`` as plain values (no NumPy or model imports), so the training DAG can read
specs at parse time; :mod:`recflow.training.segments` fits it. The family is checked against the fitters
when the training job starts (:func:`recflow.training.entry.main`), before Spark does.

``k`` is searched: ``kmeans: {k: 2..8}`` (an inclusive range), a list ``[2, 4, 6]`` or one integer. The
fit clusters the training users' standardised features once per ``k`` and keeps the ``k`` with the
highest silhouette (:func:`choose_k`), measured on those same training features only: the hold-out that
judges the candidate never enters the choice. A ``k`` that leaves a segment with fewer than
:data:`MIN_SEGMENT_USERS` users cannot fit a model per segment and is not eligible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from recflow.constants import DEFAULT_SEED
from recflow.data.user_features import FEATURES

_KMEANS_KEYS: Final = frozenset({"k", "features", "seed", "max_iter"})
_RANGE: Final = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")
#: The fewest users a segment needs for a model of its own (a smaller one fails the fit).
MIN_SEGMENT_USERS: Final = 2
#: How the fit chooses ``k``, as recorded in the artifact and ``metrics.json``.
CRITERION: Final = (
    "highest silhouette (squared Euclidean, Spark ClusteringEvaluator) of the KMeans assignment of the "
    "training users' standardised features; ties: the smaller k; a k with a segment of fewer than "
    f"{MIN_SEGMENT_USERS} users is not eligible"
)


def parse_k(raw: Any) -> tuple[int, ...]:
    """``k`` as the sorted distinct values to search: an int, ``"lo..hi"`` (inclusive) or a list of ints."""
    if isinstance(raw, bool):
        raise ValueError(f"kmeans k must be an integer, a range 'lo..hi' or a list, got {raw!r}")
    if isinstance(raw, int):
        return (raw,)
    if isinstance(raw, str) and (match := _RANGE.match(raw)):
        lo, hi = int(match.group(1)), int(match.group(2))
        if lo > hi:
            raise ValueError(f"kmeans k range {raw!r} is empty")
        return tuple(range(lo, hi + 1))
    if isinstance(raw, (list, tuple)) and raw and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        return tuple(sorted(set(raw)))
    raise ValueError(f"kmeans k must be an integer, a range 'lo..hi' or a non-empty list of integers, got {raw!r}")


def choose_k(scores: Mapping[int, float | None]) -> int:
    """The ``k`` with the highest score (silhouette), the smaller on ties; None scores are not eligible."""
    eligible = {k: v for k, v in scores.items() if v is not None}
    if not eligible:
        raise ValueError(f"no k is eligible: every k tried ({sorted(scores)}) left a segment too small")
    return min(eligible, key=lambda k: (-eligible[k], k))


@dataclass(frozen=True)
class Segmentation:
    """A spec's ``segmentation``: the family fitted per segment and the KMeans that makes the segments
    (``ks``: the values of k searched)."""

    family: str
    ks: tuple[int, ...] = (2,)
    features: tuple[str, ...] = ("activity", "spend", "recency")
    seed: int = DEFAULT_SEED
    max_iter: int = 30

    def __post_init__(self) -> None:
        if not self.family:
            raise ValueError("segmentation needs the family to fit per segment")
        if not self.ks or not all(2 <= k <= 64 for k in self.ks) or self.max_iter < 1:
            raise ValueError(f"kmeans k must be in 2..64 and max_iter >= 1, got {list(self.ks)}, {self.max_iter}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown or not self.features:
            raise ValueError(f"kmeans features must be a non-empty subset of {FEATURES}, got {list(self.features)}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Segmentation:
        if set(raw) != {"family", "kmeans"} or not isinstance(raw["kmeans"], Mapping):
            raise ValueError(f"segmentation takes family and kmeans (a mapping), got {dict(raw)!r}")
        kmeans = raw["kmeans"]
        unknown = sorted(set(kmeans) - _KMEANS_KEYS)
        if unknown:
            raise ValueError(f"kmeans takes {sorted(_KMEANS_KEYS)}, got unknown keys {unknown}")
        return cls(
            family=str(raw["family"]),
            ks=parse_k(kmeans.get("k", cls.ks[0])),
            features=tuple(kmeans.get("features", cls.features)),
            seed=int(kmeans.get("seed", cls.seed)),
            max_iter=int(kmeans.get("max_iter", cls.max_iter)),
        )
