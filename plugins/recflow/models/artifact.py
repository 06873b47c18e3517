"""The artifact folder every model family writes, and the one way to load it back for scoring.

An artifact is a folder with ``model.json`` (family, schema version, family-specific fields), the id
mappings (``users.json``, ``items.json``, position = dense index), the training interactions as a
compressed sparse row index (so scorers can drop seen items without reading the lake) and the family's
own files. Batch scoring, streaming scoring and evaluation all go through :class:`Recommender`, so a
model is scored the same way everywhere.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER

ARTIFACT_SCHEMA_VERSION = 1
MODEL_FILE = "model.json"


class ArtifactError(ValueError):
    """An artifact folder is missing files, has an unknown family or a newer schema."""


@dataclass(frozen=True)
class IdIndex:
    """Dense 0..n-1 indices for user and item ids, in a fixed (sorted) order so runs are repeatable."""

    users: tuple[str, ...]
    items: tuple[str, ...]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, col_user: str = COL_USER, col_item: str = COL_ITEM) -> IdIndex:
        return cls(
            users=tuple(sorted(df[col_user].astype(str).unique())),
            items=tuple(sorted(df[col_item].astype(str).unique())),
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def user_codes(self, users: Sequence[str] | pd.Series) -> np.ndarray:
        """Dense index per user id; -1 for ids the model never saw."""
        return pd.Index(self.users).get_indexer(pd.Index(users).astype(str))

    def item_codes(self, items: Sequence[str] | pd.Series) -> np.ndarray:
        return pd.Index(self.items).get_indexer(pd.Index(items).astype(str))

    def save(self, folder: Path) -> None:
        (folder / "users.json").write_text(json.dumps(list(self.users)))
        (folder / "items.json").write_text(json.dumps(list(self.items)))

    @classmethod
    def load(cls, folder: Path) -> IdIndex:
        return cls(
            users=tuple(json.loads((folder / "users.json").read_text())),
            items=tuple(json.loads((folder / "items.json").read_text())),
        )


@dataclass(frozen=True)
class SeenItems:
    """Items each user interacted with in training, as CSR arrays (indptr over users, item indices)."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_frame(
        cls, df: pd.DataFrame, index: IdIndex, *, col_user: str = COL_USER, col_item: str = COL_ITEM
    ) -> SeenItems:
        pairs = pd.DataFrame(
            {"u": index.user_codes(df[col_user]), "i": index.item_codes(df[col_item])}
        ).drop_duplicates()
        pairs = pairs[(pairs.u >= 0) & (pairs.i >= 0)].sort_values(["u", "i"])
        counts = np.bincount(pairs.u.to_numpy(), minlength=index.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr=indptr, indices=pairs.i.to_numpy(dtype=np.int32))

    def mask(self, user_codes: np.ndarray, n_items: int) -> np.ndarray:
        """Boolean matrix (len(user_codes) x n_items), True where the user has seen the item."""
        out = np.zeros((len(user_codes), n_items), dtype=bool)
        for row, code in enumerate(user_codes):
            if code >= 0:
                out[row, self.indices[self.indptr[code] : self.indptr[code + 1]]] = True
        return out

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / "seen.npz", indptr=self.indptr, indices=self.indices)

    @classmethod
    def load(cls, folder: Path) -> SeenItems:
        with np.load(folder / "seen.npz") as data:
            return cls(indptr=data["indptr"], indices=data["indices"])


class Recommender(ABC):
    """Scores every catalog item for a batch of users; subclasses only implement :meth:`score`."""

    family: ClassVar[str]

    def __init__(self, index: IdIndex, seen: SeenItems) -> None:
        self.index = index
        self.seen = seen

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Recommender:
        """Rebuild the recommender from an artifact folder."""

    @abstractmethod
    def score(self, user_codes: np.ndarray) -> np.ndarray:
        """Scores (len(user_codes) x n_items); higher is better. Codes are valid (>= 0)."""

    def cold_start_scores(self) -> np.ndarray:
        """Scores for users the model never saw: item popularity in training (seen counts)."""
        return np.bincount(self.seen.indices, minlength=self.index.n_items).astype(np.float32)

    def recommend(
        self, users: Sequence[str], *, k: int, exclude_seen: bool = True, batch_size: int = 1024
    ) -> pd.DataFrame:
        """Top-``k`` items per user as a long frame (user, item, score, rank 1..k).

        Users the model never saw get the popularity ranking (flagged by nothing else: a cold user has
        no seen items to remove). Work is batched so memory stays at ``batch_size x n_items`` floats.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = [str(u) for u in users]
        k_eff = min(k, self.index.n_items)
        frames = []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            codes = self.index.user_codes(batch)
            scores = np.empty((len(batch), self.index.n_items), dtype=np.float32)
            known = codes >= 0
            if known.any():
                scores[known] = self.score(codes[known])
            if (~known).any():
                scores[~known] = self.cold_start_scores()
            if exclude_seen:
                scores[self.seen.mask(codes, self.index.n_items)] = -np.inf
            top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            frame = pd.DataFrame(
                {
                    COL_USER: np.repeat(batch, k_eff),
                    COL_ITEM: np.asarray(self.index.items, dtype=object)[top.ravel()],
                    COL_SCORE: top_scores.ravel().astype(np.float64),
                    COL_RANK: np.tile(np.arange(1, k_eff + 1), len(batch)),
                }
            )
            frames.append(frame[np.isfinite(frame[COL_SCORE])])
        if not frames:
            return pd.DataFrame({COL_USER: [], COL_ITEM: [], COL_SCORE: [], COL_RANK: []})
        return pd.concat(frames, ignore_index=True)


def write_model_json(folder: Path, recommender: type[Recommender], **fields: Any) -> None:
    """Write ``model.json``: the family and the class that scores it, so loading needs no lookup table
    (a new family is a new module, nothing here changes)."""
    payload = {
        "family": recommender.family,
        "recommender": f"{recommender.__module__}.{recommender.__qualname__}",
        "schema_version": ARTIFACT_SCHEMA_VERSION,
        **fields,
    }
    (folder / MODEL_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))


def read_model_json(folder: Path) -> dict[str, Any]:
    path = folder / MODEL_FILE
    if not path.exists():
        raise ArtifactError(f"{folder} is not a model artifact: {MODEL_FILE} is missing")
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("schema_version", 0) > ARTIFACT_SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {meta['schema_version']}, this recflow reads up to "
            f"{ARTIFACT_SCHEMA_VERSION}: upgrade recflow"
        )
    return meta


def load_recommender(folder: Path | str) -> Recommender:
    """Load any family's artifact by the class its ``model.json`` names.

    Only classes inside ``recflow.models`` are accepted: an artifact is data and must not choose
    arbitrary code to import. Families import lazily (NCF pulls in TensorFlow only when needed).
    """
    folder = Path(folder)
    target = str(read_model_json(folder).get("recommender", ""))
    module_name, _, class_name = target.rpartition(".")
    if not module_name.startswith("recflow.models."):
        raise ArtifactError(f"{folder}/{MODEL_FILE} names {target!r}, not a recflow.models class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"{folder}/{MODEL_FILE} names {target!r}, which does not exist") from exc
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ArtifactError(f"{target!r} is not a Recommender")
    loaded: Recommender = cls.load(folder)
    return loaded
