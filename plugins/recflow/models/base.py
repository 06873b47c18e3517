"""The base class every model family implements, and the ``model.json`` that names a family's class.

Batch scoring, streaming scoring and evaluation all go through :class:`Recommender`, so a model is scored
the same way everywhere: a family implements :meth:`Recommender.score` (and may override the batch hooks);
top-K selection, seen removal and the fallback live in one place, the scoring core
(:func:`recflow.scoring.core.score_batch`).
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from recflow.models.index import ArtifactError, IdIndex, SeenItems
from recflow.scoring.ann import CandidateIndex
from recflow.scoring.calibration import Calibration
from recflow.scoring.core import Ragged, UserBatch, score_batch, top_k_frame

#: 2: ALS and NCF artifacts keep ids, factors and seen items in Parquet tables (recflow.models.tables);
#: this code reads 1 and 2, and an older recflow refuses a 2 with a clear error instead of a missing file.
ARTIFACT_SCHEMA_VERSION = 2

MODEL_FILE = "model.json"


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

    #: The score-to-propensity map fitted at training time (``calibration.json`` in the artifact, set by
    #: :func:`recflow.models.artifact.load_recommender`); None: propensities are unknown (NaN).
    calibration: Calibration | None = None

    #: The approximate nearest-neighbour index of the item vectors (``ann.faiss`` in the artifact, built
    #: at training time for large catalogs and attached by the loader); None: every item is scored.
    candidate_index: CandidateIndex | None = None

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

    def item_vectors(self) -> np.ndarray | None:
        """The item matrix whose inner product with :meth:`query_vectors` is the model's score (a factor
        model's item factors), which an index can search; None for a family whose score is not one dot
        product (it never gets an index)."""
        return None

    def query_vectors(self, batch: UserBatch) -> np.ndarray | None:
        """The users' side of :meth:`item_vectors` (their factor rows); None when the family has none."""
        return None

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
