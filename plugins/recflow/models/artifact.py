"""The one way to load a model artifact back for scoring: by the class its ``model.json`` names.

An artifact is a folder with ``model.json`` (family, schema version, family-specific fields; see
:mod:`recflow.models.base`), the id/seen index in one of its two layouts (:mod:`recflow.models.index`)
and the family's own files, and, since calibration, ``calibration.json`` (the score-to-propensity map,
:mod:`recflow.scoring.calibration`), which every family shares and the loader attaches.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from recflow.models.base import MODEL_FILE, Recommender, read_model_json
from recflow.models.index import ArtifactError
from recflow.scoring.ann import ANN_META_FILE, ANN_MIN_ITEMS, AnnParams, CandidateIndex
from recflow.scoring.calibration import Calibration
from recflow.scoring.core import UserBatch


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
    loaded.calibration = Calibration.load(folder)
    vectors = loaded.item_vectors()
    if vectors is not None:
        loaded.candidate_index = CandidateIndex.load(folder, vectors)
    elif (folder / ANN_META_FILE).exists():
        raise ArtifactError(f"{folder} holds {ANN_META_FILE}, but a {loaded.family} model has no item vectors to index")
    return loaded


#: Known users whose exact top-10 the index's search depth is tuned on (:meth:`CandidateIndex.tune`).
TUNING_USERS = 300


def save_candidate_index(
    model: Recommender, folder: Path, *, min_items: int = ANN_MIN_ITEMS, params: AnnParams | None = None
) -> CandidateIndex | None:
    """Build the item index of a model with at least ``min_items`` items and item vectors, tune its search
    depth on a seeded sample of the model's users, write it into its artifact ``folder`` and attach it to
    ``model`` (so what is recorded next, e.g. the canary, is scored as the artifact will be); None, and
    nothing written, for any other model."""
    vectors = model.item_vectors()
    if vectors is None or model.index.n_items < min_items:
        return None
    index = CandidateIndex.build(vectors, params)
    n_users = model.index.n_users
    if n_users:
        codes = np.sort(np.random.default_rng(0).permutation(n_users)[:TUNING_USERS])
        queries = model.query_vectors(UserBatch(codes=codes, seen=model.seen.ragged(codes)))
        if queries is not None:
            index.tune(vectors, queries)
    index.save(folder)
    model.candidate_index = index
    return index
