"""A spec's ``segmentation`` as plain values (no NumPy or model imports), so the training DAG can read
specs at parse time; :mod:`recflow.training.segments` fits it. The family is checked against the fitters
when the training job starts (:func:`recflow.training.entry.main`), before Spark does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from recflow.constants import DEFAULT_SEED
from recflow.data.user_features import FEATURES

_KMEANS_KEYS: Final = frozenset({"k", "features", "seed", "max_iter"})


@dataclass(frozen=True)
class Segmentation:
    """A spec's ``segmentation``: the family fitted per segment and the KMeans that makes the segments."""

    family: str
    k: int = 2
    features: tuple[str, ...] = ("activity", "spend", "recency")
    seed: int = DEFAULT_SEED
    max_iter: int = 30

    def __post_init__(self) -> None:
        if not self.family:
            raise ValueError("segmentation needs the family to fit per segment")
        if not 2 <= self.k <= 64 or self.max_iter < 1:
            raise ValueError(f"kmeans k must be in 2..64 and max_iter >= 1, got {self.k}, {self.max_iter}")
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
            k=int(kmeans.get("k", cls.k)),
            features=tuple(kmeans.get("features", cls.features)),
            seed=int(kmeans.get("seed", cls.seed)),
            max_iter=int(kmeans.get("max_iter", cls.max_iter)),
        )
