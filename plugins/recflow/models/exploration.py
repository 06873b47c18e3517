"""The artifact's ``exploration.json``: the exploration policy and each catalog item's history and tags.

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
    """Write ``exploration.json``: ``history`` has ``item_id, first_seen (date), interactions`` per item."""
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
    """The explorer of the artifact at ``folder`` over ``model``'s catalog, or None without the file."""
    path = Path(folder) / EXPLORATION_FILE
    if not path.is_file():
        return None
    document = json.loads(path.read_text())
    if document.get("schema_version") != EXPLORATION_SCHEMA_VERSION:
        raise ArtifactError(f"{path}: schema_version {document.get('schema_version')!r} is not supported")
    codes = model.index.item_codes(document["items"])
    n = model.index.n_items
    covered = np.zeros(n, dtype=bool)
    covered[codes[codes >= 0]] = True
    if (codes < 0).any() or not covered.all():
        raise ArtifactError(f"{path} lists {len(codes)} items that are not exactly the model's {n} catalog items")
    first_seen = np.empty(n, dtype=np.int64)
    first_seen[codes] = [date.fromisoformat(d).toordinal() for d in document["first_seen"]]
    interactions = np.empty(n, dtype=np.int64)
    interactions[codes] = document["interactions"]
    tags = None
    if document.get("tags") is not None:
        tags = np.zeros((n, max(len(document["tag_names"]), 1)), dtype=np.float32)
        for code, item_tags in zip(codes, document["tags"], strict=True):
            tags[code, item_tags] = 1.0
    return Explorer(ExplorePolicy.from_dict(document["policy"]), ItemHistory(first_seen, interactions, tags))
