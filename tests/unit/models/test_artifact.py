"""Artifacts written before the package layout changed still load: ``model.json`` names a class path, and the
loader accepts only ``recflow.models.*`` classes.

Why pinned as text: the registry holds artifacts for as long as a rollback may need them, and each one's
``model.json`` says which class scores it. Moving a family's class would make every stored version of it
unloadable, so the paths below are the ones written since artifact schema 1 and must keep resolving.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from recflow.models.artifact import load_recommender
from recflow.models.base import MODEL_FILE, Recommender, write_model_json
from recflow.models.index import ArtifactError

#: The class paths in the ``model.json`` of artifacts already in registries (schema 1 and 2).
STORED_CLASS_PATHS = {
    "als": "recflow.models.als.AlsRecommender",
    "ncf": "recflow.models.ncf.NcfRecommender",
    "hybrid": "recflow.models.hybrid.HybridRecommender",
    "sequence": "recflow.models.sequence.SequenceRecommender",
    "popularity": "recflow.models.popularity.PopularityRecommender",
}


def _class(path: str) -> type[Recommender]:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Recommender)
    return cls


@pytest.mark.parametrize("family", sorted(STORED_CLASS_PATHS))
def test_stored_class_paths_still_name_the_family(family: str, tmp_path: Path) -> None:
    cls = _class(STORED_CLASS_PATHS[family])
    assert cls.family == family
    write_model_json(tmp_path, cls)  # what a new artifact of the family writes: the same path
    assert json.loads((tmp_path / MODEL_FILE).read_text())["recommender"] == STORED_CLASS_PATHS[family]


def test_the_loader_refuses_a_class_outside_recflow_models(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_text(json.dumps({"family": "x", "recommender": "os.system", "schema_version": 2}))
    with pytest.raises(ArtifactError, match=r"not a recflow\.models class"):
        load_recommender(tmp_path)


def test_the_loader_refuses_a_path_that_no_longer_exists(tmp_path: Path) -> None:
    meta = {"family": "als", "recommender": "recflow.models.artifact.AlsRecommender", "schema_version": 2}
    (tmp_path / MODEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="does not exist"):
        load_recommender(tmp_path)
