"""A model per user segment behind one router: the purchase-card demo's KMeans segments, as one artifact.

The seed demo clustered cardholders with KMeans (2 clusters, 30 iterations) and trained one ALS per
cluster. Here the router is plain data in the artifact (``router.json``: the feature names, the
scaler's mean and scale, the centroids) with each training user's segment, and each segment's model is
a normal artifact of any family under ``segments/<s>/``. Scoring goes through the one core: the router
is a lookup of the user's code, so batch (the Arrow workers get this whole model) and streaming route a
user identically. A user the model never saw has no features and gets the core's popularity fallback
(the global fallback), as for any family.

Why items outside a segment's catalog still get a score: batch checks (and users) expect
``min(k, unseen)`` items whatever the segment, so those items rank below every item of the segment's
model, by global popularity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np

from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender, read_model_json, write_model_json
from recflow.models.index import ArtifactError, IdIndex, SeenItems
from recflow.scoring.core import Ragged, UserBatch

ROUTER_FILE: Final = "router.json"
SEGMENTS_DIR: Final = "segments"


@dataclass(frozen=True)
class SegmentRouter:
    """Standardise a user's features with the training scaler, then take the nearest centroid.

    ``selection`` records how the number of segments was chosen (``k``, the criterion, each k's score),
    for ``metrics.json`` and anyone reading the artifact; routing does not read it."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray
    selection: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        d = len(self.features)
        if self.mean.shape != (d,) or self.scale.shape != (d,) or self.centroids.ndim != 2:
            raise ValueError(f"router shapes do not match {d} features: {self.mean.shape}, {self.centroids.shape}")
        if self.centroids.shape[1] != d:
            raise ValueError(f"centroids have {self.centroids.shape[1]} columns for {d} features")

    def route(self, features: np.ndarray) -> np.ndarray:
        """The segment of each row of ``features`` (n x d); -1 where a feature is missing (NaN)."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / np.where(self.scale > 0, self.scale, 1.0)
        distances = ((x[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        segment = distances.argmin(axis=1) if len(x) else np.zeros(0, dtype=np.int64)
        return np.where(np.isnan(x).any(axis=1), -1, segment).astype(np.int64)

    def as_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "centroids": self.centroids.tolist(),
            "selection": self.selection,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SegmentRouter:
        return cls(
            tuple(raw["features"]),
            np.asarray(raw["mean"], dtype=np.float64),
            np.asarray(raw["scale"], dtype=np.float64),
            np.asarray(raw["centroids"], dtype=np.float64),
            raw.get("selection"),
        )


class SegmentedRecommender(Recommender):
    """One model per segment; ``user_segment[code]`` is each training user's segment (-1: none)."""

    family: ClassVar[str] = "segmented"

    def __init__(
        self,
        index: IdIndex,
        seen: SeenItems,
        router: SegmentRouter,
        user_segment: np.ndarray,
        segments: list[Recommender],
    ) -> None:
        super().__init__(index, seen)
        if len(user_segment) != index.n_users:
            raise ArtifactError(f"{len(user_segment)} user segments for {index.n_users} users")
        if len(segments) != len(router.centroids):
            raise ArtifactError(f"{len(segments)} segment models for {len(router.centroids)} centroids")
        self.router = router
        self.user_segment = np.asarray(user_segment, dtype=np.int64)
        self.segments = segments
        # per segment: its item codes in the global catalog, and each global user's code in it
        self._items = [index.item_codes(list(m.index.items)) for m in segments]
        self._users = [m.index.user_codes(list(index.users)) for m in segments]

    def segments_of(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Each user's segment (-1: a user the model never saw, served by the global fallback)."""
        codes = self.index.user_codes(list(user_ids))
        return np.where(codes >= 0, self.user_segment[np.maximum(codes, 0)], -1)

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        return self.score_rows(UserBatch(codes=user_codes, seen=Ragged.empty(len(user_codes))))

    def score_rows(self, batch: UserBatch) -> np.ndarray:
        """Each user's scores from their segment's model; items that model does not know rank below its
        own by global popularity (users without a segment: popularity)."""
        popularity = self.fallback_scores()
        out = np.tile(popularity, (len(batch), 1)).astype(np.float32)
        segment = self.user_segment[batch.codes]
        for s, model in enumerate(self.segments):
            rows = np.flatnonzero(segment == s)
            codes = self._users[s][batch.codes[rows]]
            rows, codes = rows[codes >= 0], codes[codes >= 0]
            if not len(rows):
                continue
            block = np.asarray(model.score_rows(UserBatch(codes=codes, seen=Ragged.empty(len(codes)))), np.float32)
            floor = np.nanmin(block, axis=1, keepdims=True) - 1.0
            out[rows] = floor + 0.5 * popularity[None, :]
            out[rows[:, None], self._items[s][None, :]] = block
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        self.seen.save(folder)
        np.save(folder / "user_segment.npy", self.user_segment)
        (folder / ROUTER_FILE).write_text(json.dumps(self.router.as_dict(), sort_keys=True))
        for s, model in enumerate(self.segments):
            model.save(folder / SEGMENTS_DIR / str(s))  # type: ignore[attr-defined]
        write_model_json(folder, type(self), segments=len(self.segments))

    @classmethod
    def load(cls, folder: Path) -> SegmentedRecommender:
        meta = read_model_json(folder)
        router = SegmentRouter.from_dict(json.loads((folder / ROUTER_FILE).read_text()))
        segments = [load_recommender(folder / SEGMENTS_DIR / str(s)) for s in range(int(meta["segments"]))]
        index = IdIndex.load(folder)
        seen = SeenItems.load(folder, index.n_users)
        return cls(index, seen, router, np.load(folder / "user_segment.npy"), segments)
