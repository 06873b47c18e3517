"""The artifact folder every model family writes, and the one way to load it back for scoring.

An artifact is a folder with ``model.json`` (family, schema version, family-specific fields), the id
mappings, the training interactions (so scorers can drop seen items without reading the lake) and the
family's own files. Two layouts, both read by :meth:`IdIndex.load` and :meth:`SeenItems.load`:

- JSON + NumPy (``users.json``, ``items.json``, position = dense index; ``seen.npz``, a CSR index),
  written on the driver by the families that fit there (popularity, hybrid, sequence);
- Parquet tables written by Spark (``users.parquet``, ``items.parquet``, ``seen.parquet``, see
  :mod:`recflow.models.tables`), for ALS and NCF, which train without collecting to the driver.

Batch scoring, streaming scoring and evaluation all go through :class:`Recommender`, so a
model is scored the same way everywhere.
"""

from __future__ import annotations

import copy
import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER

if TYPE_CHECKING:
    from recflow.scoring.core import Ragged, UserBatch

#: 2: ALS and NCF artifacts keep ids, factors and seen items in Parquet tables (recflow.models.tables);
#: this code reads 1 and 2, and an older recflow refuses a 2 with a clear error instead of a missing file.
ARTIFACT_SCHEMA_VERSION = 2
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

    @cached_property
    def _user_index(self) -> pd.Index:
        # Built once per loaded model (a hash table, linear in users); every lookup after that is
        # linear in the ids looked up. Rebuilding it per batch made scoring quadratic in users.
        return pd.Index(self.users)

    @cached_property
    def _item_index(self) -> pd.Index:
        return pd.Index(self.items)

    @cached_property
    def item_array(self) -> np.ndarray:
        """Item ids as an object array, for turning item codes back into ids with one ``take``."""
        return np.asarray(self.items, dtype=object)

    def user_codes(self, users: Sequence[str] | pd.Series) -> np.ndarray:
        """Dense index per user id; -1 for ids the model never saw."""
        return self._user_index.get_indexer(pd.Index(users).astype(str))

    def item_codes(self, items: Sequence[str] | pd.Series) -> np.ndarray:
        return self._item_index.get_indexer(pd.Index(items).astype(str))

    def save(self, folder: Path) -> None:
        (folder / "users.json").write_text(json.dumps(list(self.users)))
        (folder / "items.json").write_text(json.dumps(list(self.items)))

    @classmethod
    def load(cls, folder: Path) -> IdIndex:
        if not (folder / "users.json").exists():
            from recflow.models.tables import read_items, read_users

            return cls(users=read_users(folder, factors=False)[0], items=read_items(folder).items)
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

    @classmethod
    def empty(cls) -> SeenItems:
        return cls(indptr=np.zeros(1, dtype=np.int64), indices=np.zeros(0, dtype=np.int32))

    def ragged(self, user_codes: np.ndarray) -> Ragged:
        """The training items of each given user (none for code -1), as the scoring core's ragged array."""
        from recflow.scoring.core import Ragged

        codes = np.asarray(user_codes, dtype=np.int64)
        known = codes >= 0
        starts = np.where(known, self.indptr[np.maximum(codes, 0)], 0)
        lengths = np.where(known, self.indptr[np.maximum(codes, 0) + 1] - starts, 0)
        return Ragged.from_spans(self.indices, starts, lengths)

    def mask(self, user_codes: np.ndarray, n_items: int) -> np.ndarray:
        """Boolean matrix (len(user_codes) x n_items), True where the user has seen the item."""
        out = np.zeros((len(user_codes), n_items), dtype=bool)
        seen = self.ragged(user_codes)
        out[seen.row_ids(), seen.values] = True
        return out

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / "seen.npz", indptr=self.indptr, indices=self.indices)

    @classmethod
    def load(cls, folder: Path, n_users: int | None = None) -> SeenItems:
        if not (folder / "seen.npz").exists():
            from recflow.models.tables import read_seen

            if n_users is None:
                raise ArtifactError(f"{folder}: seen.parquet needs the number of users to build its index")
            return read_seen(folder, n_users)
        with np.load(folder / "seen.npz") as data:
            return cls(indptr=data["indptr"], indices=data["indices"])


class Recommender(ABC):
    """Scores catalog items for a batch of users; subclasses implement :meth:`score` (and may override
    the batch hooks below). Top-K selection, seen removal and the fallback live in one place, the
    scoring core :func:`recflow.scoring.core.score_batch`."""

    family: ClassVar[str]
    #: When set, the scoring core re-ranks this many candidates per user instead of the full catalog
    #: (a model whose per-item cost is a network forward pass, not a dot product).
    candidate_pool: ClassVar[int | None] = None

    #: False for a model that holds the item side only (a worker's copy, or ALS / NCF just after a
    #: Spark fit, whose user side is still in Parquet): such a model scores users whose codes, factor
    #: rows and seen items the caller ships, and refuses :meth:`recommend`.
    has_user_side: bool = True

    def __init__(self, index: IdIndex, seen: SeenItems) -> None:
        self.index = index
        self.seen = seen

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Recommender:
        """Rebuild the recommender from an artifact folder."""

    @classmethod
    def load_item_side(cls, folder: Path) -> Recommender:
        """What a driver that ships each user's state with its batch needs (the batch job): by default
        the whole model; families whose user side is a Parquet table (ALS, NCF) skip reading it, which
        at 10^6 users is 4 s and a factor matrix on the driver."""
        return cls.load(folder)

    @abstractmethod
    def score(self, user_codes: np.ndarray) -> np.ndarray:
        """Scores (len(user_codes) x n_items); higher is better. Codes are valid (>= 0)."""

    def score_rows(self, batch: UserBatch) -> np.ndarray:
        """Full-catalog scores for a batch of known users; factor models use ``batch.factors`` when the
        caller shipped them, so a worker needs no user-side state."""
        return self.score(batch.codes)

    def score_candidates(self, batch: UserBatch, candidates: np.ndarray) -> np.ndarray:
        """Scores (n x c) of each user's candidate item codes (all valid codes)."""
        return np.take_along_axis(self.score_rows(batch), candidates, axis=1)

    def item_popularity(self) -> np.ndarray:
        """Distinct training users per item code (from the seen index; Spark-fitted families store it)."""
        return np.bincount(self.seen.indices, minlength=self.index.n_items).astype(np.float32)

    @cached_property
    def _fallback(self) -> np.ndarray:
        counts = np.asarray(self.item_popularity(), dtype=np.float32)
        top = counts.max() if len(counts) else 0.0
        fallback: np.ndarray = counts / top if top > 0 else counts
        fallback.setflags(write=False)
        return fallback

    def fallback_scores(self) -> np.ndarray:
        """Scores for users the model never saw: each item's count of distinct training users divided by
        the most popular item's, so in [0, 1] whatever the model's own scale (rows say ``fallback``)."""
        return self._fallback

    def for_workers(self) -> Recommender:
        """What batch workers receive. Default: the whole model. A family whose scores need only what
        the batch ships with each user (code, factor row, seen items) returns :meth:`item_side_copy`,
        so a worker's memory does not grow with the number of users."""
        return self

    def with_user_side(self) -> Recommender:
        """This model with every user's state in memory (families fitted into Parquet tables read them
        back here); for in-process scoring of any user, e.g. a benchmark or the hybrid's EASE."""
        if not self.has_user_side:
            raise ArtifactError(f"this {self.family} model holds the item side only and cannot read its users")
        return self

    def item_side_copy(self) -> Self:
        """A shallow copy without the user ids and the training seen index (the fallback is kept)."""
        self.fallback_scores()  # computed from the full seen index before it is dropped
        slim = copy.copy(self)
        slim.index = IdIndex(users=(), items=self.index.items)
        slim.seen = SeenItems.empty()
        slim.has_user_side = False
        return slim

    def recommend(
        self, users: Sequence[str], *, k: int, exclude_seen: bool = True, n_candidates: int | None = 0
    ) -> pd.DataFrame:
        """Top-``k`` items per user as a long frame (user, item, score, rank 1..k, source).

        The in-process path (evaluation, quality benchmark): the seen items removed are the training
        interactions in the artifact, which is the ``exclude_seen`` policy when the scored day is the
        end of the training window. Batch scoring passes the lake's seen items to the core instead.
        Ranks the full catalog by default, as the metrics' definitions require (``n_candidates=None``:
        the model's own candidate pool).
        """
        from recflow.scoring.core import Ragged, UserBatch, score_batch, top_k_frame

        if not self.has_user_side:
            raise ArtifactError(
                f"this {self.family} model holds the item side only; load the artifact to score users in "
                "process, or ship their codes, factor rows and seen items to the scoring core"
            )
        ids = np.asarray([str(u) for u in users], dtype=object)
        codes = self.index.user_codes(ids)
        seen = self.seen.ragged(codes) if exclude_seen else Ragged.empty(len(codes))
        top = score_batch(self, UserBatch(codes=codes, seen=seen), k=k, n_candidates=n_candidates)
        return top_k_frame(top, ids, self.index.item_array)


def write_user_table(folder: Path, index: IdIndex, factors: np.ndarray | None = None) -> None:
    """``users.parquet``: (user_id, u[, features]) so Spark joins users to codes and factor rows itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, pa.Array] = {
        COL_USER: pa.array(index.users, type=pa.string()),
        "u": pa.array(np.arange(index.n_users, dtype=np.int32)),
    }
    if factors is not None:
        rank = factors.shape[1]
        offsets = np.arange(index.n_users + 1, dtype=np.int32) * rank
        values = np.ascontiguousarray(factors, dtype=np.float32).reshape(-1)
        columns["features"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    pq.write_table(pa.table(columns), folder / "users.parquet")


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


def load_recommender(folder: Path | str, *, item_side: bool = False) -> Recommender:
    """Load any family's artifact by the class its ``model.json`` names (``item_side``: only what
    :meth:`Recommender.load_item_side` reads).

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
    loaded: Recommender = cls.load_item_side(folder) if item_side else cls.load(folder)
    return loaded
