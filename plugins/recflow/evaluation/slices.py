"""Metrics per slice of the hold-out (TFMA-style slicing), so an average cannot hide a broken segment.

Slices are declared in ``models/slices.yaml``. Each splits users or items into buckets by their
*training* interactions (so the buckets do not depend on the model judged, and candidate and champion
are judged on the same buckets):

* ``item_popularity``: items ranked by distinct training users, most first (ties: lower id); an item is
  in the first bucket whose upper edge is >= its rank share ``rank / n_items`` (head = the top 20%).
* ``user_activity``: users ranked by training interactions, the same way.

Per bucket, every metric of :func:`recflow.evaluation.metrics.evaluate` at ``k``:

* a *user* slice keeps the bucket's users (their judged pairs and their top-K lists);
* an *item* slice keeps the judged pairs whose item is in the bucket, and the top-K lists of the users
  who have one: recall@k is then "of the bucket's relevant items, the share the top-K caught"
  (precision@k and nDCG@k are diluted by the other items of the list, alike for every model).

Keys: ``"<metric>@<k>[<slice>=<bucket>]"`` and ``"size[<slice>=<bucket>]"``, the number of users the
bucket's metrics average over. A bucket without judged pairs is absent (size 0 is not a measurement).

A segmented model (:mod:`recflow.models.segmented`) adds one more user slice, ``segment``, whose buckets
are its own segments (:func:`segment_metrics`; ``none``: users it routes to the global fallback), keyed
the same way, so the report and the slice thresholds treat it like the declared slices.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import yaml

from recflow.constants import COL_ITEM, COL_USER
from recflow.evaluation.metrics import evaluate

SLICES_SCHEMA_VERSION: Final = 1
Kind = Literal["item_popularity", "user_activity"]
_KINDS: Final = ("item_popularity", "user_activity")


class SliceSpecError(ValueError):
    """``models/slices.yaml`` is malformed; the message names the slice and key."""


@dataclass(frozen=True)
class SliceSpec:
    """One slice: its kind and its buckets as (label, upper edge of the rank share), edges increasing to 1."""

    name: str
    kind: Kind
    buckets: tuple[tuple[str, float], ...]

    @property
    def column(self) -> str:
        return COL_ITEM if self.kind == "item_popularity" else COL_USER


def load_slices(path: str | Path) -> tuple[SliceSpec, ...]:
    """Read and check a slices file (see the module docstring)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SliceSpecError(f"{path}: cannot read the slices: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("schema_version") != SLICES_SCHEMA_VERSION:
        raise SliceSpecError(f"{path}: expected a mapping with schema_version {SLICES_SCHEMA_VERSION}")
    slices = raw.get("slices")
    if not isinstance(slices, dict) or not slices:
        raise SliceSpecError(f"{path}: 'slices' must be a non-empty mapping")
    return tuple(_spec(path, str(name), body) for name, body in slices.items())


def _spec(path: Path, name: str, body: Any) -> SliceSpec:
    where = f"{path}: slices.{name}"
    if not isinstance(body, dict) or body.get("kind") not in _KINDS:
        raise SliceSpecError(f"{where}: kind must be one of {list(_KINDS)}")
    buckets = body.get("buckets")
    if not isinstance(buckets, dict) or not buckets:
        raise SliceSpecError(f"{where}.buckets: a non-empty mapping of label to upper edge is required")
    edges = [(str(label), edge) for label, edge in buckets.items()]
    values = [e for _, e in edges]
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 1 for e in values):
        raise SliceSpecError(f"{where}.buckets: every edge must be a number in (0, 1], got {values}")
    if values != sorted(values) or len(set(values)) != len(values) or values[-1] != 1:
        raise SliceSpecError(f"{where}.buckets: edges must increase strictly and end at 1, got {values}")
    return SliceSpec(name, body["kind"], tuple((label, float(e)) for label, e in edges))


def bucket_of(counts: pd.Series, spec: SliceSpec) -> pd.Series:
    """Each id's bucket label (index: the ids of ``counts``, their training counts)."""
    frame = pd.DataFrame({"id": counts.index.astype(str), "n": counts.to_numpy()})
    frame = frame.sort_values(["n", "id"], ascending=[False, True], kind="stable")
    share = np.arange(1, len(frame) + 1) / max(len(frame), 1)
    edges = np.asarray([e for _, e in spec.buckets])
    labels = np.asarray([label for label, _ in spec.buckets], dtype=object)
    frame["bucket"] = labels[np.searchsorted(edges, share - 1e-12, side="left")]
    return frame.set_index("id")["bucket"]


def training_counts(train: pd.DataFrame, spec: SliceSpec) -> pd.Series:
    """Distinct training users per item (item slices) or training interactions per user (user slices)."""
    if spec.kind == "item_popularity":
        return train.drop_duplicates([COL_USER, COL_ITEM]).groupby(COL_ITEM).size()
    return train.groupby(COL_USER).size()


def slice_metrics(
    truth: pd.DataFrame,
    recs: pd.DataFrame,
    train: pd.DataFrame,
    specs: Iterable[SliceSpec],
    *,
    k: int,
    catalog: Iterable[Hashable] | None = None,
) -> dict[str, float]:
    """Every metric at ``k`` per bucket of every slice, with the bucket's size (see the module docstring)."""
    out: dict[str, float] = {}
    items = None if catalog is None else list(catalog)
    for spec in specs:
        buckets = bucket_of(training_counts(train, spec), spec)
        labels = truth[spec.column].astype(str).map(buckets)
        for label, _ in spec.buckets:
            out.update(_bucket_metrics(truth[(labels == label).to_numpy()], recs, f"{spec.name}={label}", k, items))
    return out


SEGMENT_SLICE: Final = "segment"


def segment_metrics(
    truth: pd.DataFrame,
    recs: pd.DataFrame,
    segment_of: pd.Series,
    *,
    k: int,
    catalog: Iterable[Hashable] | None = None,
) -> dict[str, float]:
    """Every metric at ``k`` per segment of a segmented model (``segment_of``: user id -> segment label),
    keyed ``"<metric>@<k>[segment=<label>]"`` like the declared slices; users without one are ``none``."""
    items = None if catalog is None else list(catalog)
    labels = truth[COL_USER].map(segment_of).fillna("none").astype(str).to_numpy()
    out: dict[str, float] = {}
    for label in sorted(set(labels)):
        out.update(_bucket_metrics(truth[labels == label], recs, f"{SEGMENT_SLICE}={label}", k, items))
    return out


def _bucket_metrics(
    part: pd.DataFrame, recs: pd.DataFrame, key: str, k: int, items: list[Hashable] | None
) -> dict[str, float]:
    """One bucket's metrics over its judged pairs and their users' lists, and its size (none when empty)."""
    if part.empty:
        return {}
    users = part[COL_USER].unique()
    out = {f"{metric}[{key}]": value for metric, value in evaluate(part, recs[recs[COL_USER].isin(users)], k=k,
                                                                  catalog=items).items()}  # fmt: skip
    out[f"size[{key}]"] = float(len(users))
    return out
