"""The artifact's ``exploration.json``: the exploration policy and each catalog item's history and tags.

The items are the model's catalog and every other item the catalog knew at training time (the lake's
``items/``, launches without an interaction yet): those get codes after the model's
(:attr:`recflow.scoring.explore.ItemHistory.extra_ids`), so exploration can show an item the model has
never seen.

Written by the training flow when a spec declares ``exploration:``, read by the batch job and the
streaming scorer, so both explore with the same policy over the same item history
(:class:`recflow.scoring.explore.Explorer`). A model without the file does not explore. Plain JSON, keyed
by item id (not code), so a file that does not match its model's catalog is refused, not misread.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM
from recflow.models.base import Recommender
from recflow.models.index import ArtifactError
from recflow.scoring.explore import Explorer, ItemHistory
from recflow.scoring.explore_policy import ExplorePolicy

EXPLORATION_FILE: Final = "exploration.json"
EXPLORATION_SCHEMA_VERSION: Final = 1


def write_exploration(
    folder: Path,
    policy: ExplorePolicy,
    history: pd.DataFrame,
    tags: dict[str, list[str]] | None,
) -> None:
    """Write ``exploration.json``: ``history`` has ``item_id, first_seen (date), interactions`` per item,
    the model's catalog and any other item the catalog knows (:func:`recflow.data.item_history.catalog_history`)."""
    vocabulary = sorted({t for item_tags in (tags or {}).values() for t in item_tags})
    position = {t: j for j, t in enumerate(vocabulary)}
    items = [str(i) for i in history[COL_ITEM]]
    document: dict[str, Any] = {
        "schema_version": EXPLORATION_SCHEMA_VERSION,
        "policy": policy.as_dict(),
        "items": items,
        "first_seen": [d.isoformat() for d in history["first_seen"]],
        "interactions": [int(n) for n in history["interactions"]],
        "tag_names": vocabulary if tags is not None else None,
        "tags": [[position[t] for t in tags.get(i, [])] for i in items] if tags is not None else None,
    }
    (folder / EXPLORATION_FILE).write_text(json.dumps(document, sort_keys=True))


def read_explorer(folder: Path | str, model: Recommender) -> Explorer | None:
    """The explorer of the artifact at ``folder`` over ``model``'s catalog and the file's other items, or
    None without the file. The file must list every catalog item exactly once."""
    path = Path(folder) / EXPLORATION_FILE
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    if document.get("schema_version") != EXPLORATION_SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema_version {document.get('schema_version')!r} is not supported")
    ids = np.asarray(document["items"], dtype=object)
    found = model.index.item_codes(list(ids))
    n = model.index.n_items
    extra = np.flatnonzero(found < 0)
    covered = np.bincount(found[found >= 0], minlength=n)
    if len(set(ids.tolist())) != len(ids) or len(covered) != n or (covered != 1).any():
        raise ArtifactError(
            f"{path} lists {len(ids)} items that do not cover the model's {n} catalog items exactly once"
        )
    codes = found.copy()
    codes[extra] = n + np.arange(len(extra))
    total = n + len(extra)
    first_seen = np.empty(total, dtype=np.int64)
    first_seen[codes] = [date.fromisoformat(d).toordinal() for d in document["first_seen"]]
    interactions = np.empty(total, dtype=np.int64)
    interactions[codes] = document["interactions"]
    tags = None
    if document.get("tags") is not None:
        tags = np.zeros((total, max(len(document["tag_names"]), 1)), dtype=np.float32)
        for code, item_tags in zip(codes, document["tags"], strict=True):
            tags[code, item_tags] = 1.0
    history = ItemHistory(first_seen, interactions, tags, extra_ids=ids[extra])
    return Explorer(ExplorePolicy.from_dict(document["policy"]), history)
