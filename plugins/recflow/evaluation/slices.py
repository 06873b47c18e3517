"""Metrics per slice of the hold-out (TFMA-style slicing), so an average cannot hide a broken segment.

Slices are declared in ``models/slices.yaml``. Each splits the hold-out's users or items into buckets
that do not depend on the model judged, so candidate and champion are judged on the same buckets:

* ``item_popularity``: items ranked by distinct training users, most first (ties: lower id); an item is
  in the first bucket whose upper edge is >= its rank share ``rank / n_items`` (head = the top 20%).
* ``user_activity``: users ranked by training interactions, the same way.
* ``user_tenure`` (new versus returning): a user is ``new`` when its first training interaction falls in
  the last ``new_days`` days of the training data (the days before the latest training day included),
  else ``returning``. Why not "no training interaction at all": the shared hold-out keeps only users the
  training window knows (:func:`recflow.evaluation.python_holdout.judgeable_given_training`), since no
  model can rank any other user but with its popularity fallback; so "new" is new to the window's data.
  Needs the training rows' day (``event_date``).
* ``feature``: a column of a user or item feature table (``entity: user | item``, ``table``, ``column``):
  the lake's ``items/`` tags, a user segment, any column keyed by ``user_id`` or ``item_id``.
  Without ``buckets`` every value is a bucket of its own (a list value, such as tags, puts the id in
  each of its values' buckets); with ``buckets`` a numeric column is bucketed like the counts above, by
  the rank share of its value, highest first. An id the table lacks, or whose value is null, is in the
  bucket ``(none)``. A feature slice whose table the caller does not supply is skipped (the lake's
  ``items/`` is optional); a supplied table without the column is an error.

Per bucket, every metric of :func:`recflow.evaluation.metrics.evaluate` at ``k``:

* a *user* slice keeps the bucket's users (their judged pairs and their top-K lists);
* an *item* slice keeps the judged pairs whose item is in the bucket, and the top-K lists of the users
  who have one: recall@k is then "of the bucket's relevant items, the share the top-K caught"
  (precision@k and nDCG@k are diluted by the other items of the list, alike for every model).

Keys: ``"<metric>@<k>[<slice>=<bucket>]"`` and ``"size[<slice>=<bucket>]"``, the number of users the
bucket's metrics average over. A bucket without judged pairs is absent (size 0 is not a measurement).

To add a slice from code, declare a ``feature`` slice and pass its
table in ``features``: ``slice_metrics(..., features={"segments": frame_of_user_id_and_segment})``.

A segmented model (:mod:`recflow.models.segmented`) adds one more user slice, ``segment``, whose buckets
are its own segments (:func:`segment_metrics`; ``none``: users it routes to the global fallback), keyed
the same way, so the report and the slice thresholds treat it like the declared slices.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import yaml

from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.evaluation.metrics import evaluate

SLICES_SCHEMA_VERSION: Final = 1
Kind = Literal["item_popularity", "user_activity", "user_tenure", "feature"]
_KINDS: Final = ("item_popularity", "user_activity", "user_tenure", "feature")
#: The buckets of ``user_tenure``, in report order.
TENURE_BUCKETS: Final = ("new", "returning")
#: The bucket of an id a feature table lacks, or whose value is null.
NO_VALUE: Final = "(none)"


class SliceSpecError(ValueError):
    """``models/slices.yaml`` (or a feature table) is malformed; the message names the slice and key."""


@dataclass(frozen=True)
class SliceSpec:
    """One slice (see the module docstring).

    ``buckets``: (label, upper edge of the rank share), edges increasing to 1; empty for a categorical
    feature. ``entity``: whose slice, ``"user"`` or ``"item"``. ``table`` and ``feature``: a feature
    slice's table and column. ``new_days``: a tenure slice's window of "new".
    """

    name: str
    kind: Kind
    buckets: tuple[tuple[str, float], ...] = ()
    entity: Literal["user", "item"] | None = None
    table: str | None = None
    feature: str | None = None
    new_days: int | None = None

    @property
    def column(self) -> str:
        """The id column the slice splits on."""
        if self.kind == "feature":
            return COL_ITEM if self.entity == "item" else COL_USER
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


_KEYS: Final = {
    "item_popularity": {"kind", "buckets"},
    "user_activity": {"kind", "buckets"},
    "user_tenure": {"kind", "new_days"},
    "feature": {"kind", "entity", "table", "column", "buckets"},
}


def _spec(path: Path, name: str, body: Any) -> SliceSpec:
    where = f"{path}: slices.{name}"
    if not isinstance(body, dict) or body.get("kind") not in _KINDS:
        raise SliceSpecError(f"{where}: kind must be one of {list(_KINDS)}")
    kind = body["kind"]
    unknown = sorted(set(body) - _KEYS[kind])
    if unknown:
        raise SliceSpecError(f"{where}: unknown keys {unknown} for kind {kind} (allowed: {sorted(_KEYS[kind])})")
    if kind == "user_tenure":
        days = body.get("new_days")
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise SliceSpecError(f"{where}.new_days: a whole number of days >= 1 is required, got {days!r}")
        return SliceSpec(name, kind, new_days=days)
    if kind == "feature":
        entity, table, column = body.get("entity"), body.get("table"), body.get("column")
        if entity not in ("user", "item"):
            raise SliceSpecError(f"{where}.entity: 'user' or 'item' is required, got {entity!r}")
        for key, value in (("table", table), ("column", column)):
            if not isinstance(value, str) or not value:
                raise SliceSpecError(f"{where}.{key}: a non-empty name is required, got {value!r}")
        buckets = _edges(where, body["buckets"]) if "buckets" in body else ()
        return SliceSpec(name, kind, buckets, entity=entity, table=table, feature=column)
    return SliceSpec(name, kind, _edges(where, body.get("buckets")))


def _edges(where: str, buckets: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(buckets, dict) or not buckets:
        raise SliceSpecError(f"{where}.buckets: a non-empty mapping of label to upper edge is required")
    edges = [(str(label), edge) for label, edge in buckets.items()]
    values = [e for _, e in edges]
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) and 0 < e <= 1 for e in values):
        raise SliceSpecError(f"{where}.buckets: every edge must be a number in (0, 1], got {values}")
    if values != sorted(values) or len(set(values)) != len(values) or values[-1] != 1:
        raise SliceSpecError(f"{where}.buckets: edges must increase strictly and end at 1, got {values}")
    return tuple((label, float(e)) for label, e in edges)


def bucket_of(counts: pd.Series, spec: SliceSpec) -> pd.Series:
    """Each id's bucket label by the rank share of its value, highest first (index: the ids of ``counts``)."""
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


def tenure_of(train: pd.DataFrame, new_days: int) -> pd.Series:
    """Each training user's ``new`` or ``returning`` (index: user ids as strings), from the day
    (``event_date``, a date or ISO string) of its first training row."""
    if COL_DATE not in train.columns:
        raise SliceSpecError(f"a user_tenure slice needs the training rows' {COL_DATE}; the columns are {list(train)}")
    days = pd.to_datetime(train[COL_DATE].astype(str)).dt.date
    first = days.groupby(train[COL_USER].astype(str).to_numpy()).min()
    cut: date = days.max() - timedelta(days=new_days - 1)  # the last new_days days, the latest included
    return pd.Series(np.where(first >= cut, TENURE_BUCKETS[0], TENURE_BUCKETS[1]), index=first.index.astype(str))


def feature_members(table: pd.DataFrame, spec: SliceSpec) -> pd.DataFrame:
    """(id, bucket) rows of a feature slice: one per id and value (list values give several rows)."""
    assert spec.feature is not None
    missing = [c for c in (spec.column, spec.feature) if c not in table.columns]
    if missing:
        raise SliceSpecError(f"slice {spec.name}: table {spec.table!r} lacks {missing}; it has {list(table.columns)}")
    frame = pd.DataFrame({"id": table[spec.column].astype(str).to_numpy(), "value": table[spec.feature].to_numpy()})
    frame = frame.explode("value", ignore_index=True)  # list values: one row per element; scalars unchanged
    frame = frame[frame["value"].notna()]
    if spec.buckets:
        values = pd.to_numeric(frame["value"], errors="coerce")
        if values.isna().any():
            bad = frame.loc[values.isna(), "value"].head(3).tolist()
            raise SliceSpecError(f"slice {spec.name}: buckets need numbers in {spec.feature!r}, found {bad}")
        per_id = values.groupby(frame["id"].to_numpy()).max()
        bucket = bucket_of(per_id, spec)
        return pd.DataFrame({"id": bucket.index, "bucket": bucket.to_numpy()})
    return pd.DataFrame({"id": frame["id"].to_numpy(), "bucket": frame["value"].astype(str).to_numpy()})


def _members(
    spec: SliceSpec, train: pd.DataFrame, features: Mapping[str, pd.DataFrame]
) -> tuple[pd.DataFrame, list[str]] | None:
    """(id, bucket) rows of ``spec`` and its bucket labels in report order; None: its table is absent."""
    if spec.kind == "feature":
        if spec.table is None or spec.table not in features:
            return None
        members = feature_members(features[spec.table], spec)
        labels = [label for label, _ in spec.buckets] or sorted(set(members["bucket"]) - {NO_VALUE})
        return members, [*labels, NO_VALUE]
    if spec.kind == "user_tenure":
        assert spec.new_days is not None
        labels = tenure_of(train, spec.new_days)
        return pd.DataFrame({"id": labels.index, "bucket": labels.to_numpy()}), list(TENURE_BUCKETS)
    buckets = bucket_of(training_counts(train, spec), spec)
    return pd.DataFrame({"id": buckets.index, "bucket": buckets.to_numpy()}), [label for label, _ in spec.buckets]


def slice_metrics(
    truth: pd.DataFrame,
    recs: pd.DataFrame,
    train: pd.DataFrame,
    specs: Iterable[SliceSpec],
    *,
    k: int,
    catalog: Iterable[Hashable] | None = None,
    features: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, float]:
    """Every metric at ``k`` per bucket of every slice, with the bucket's size (see the module docstring).

    ``train``: the training (user, item) rows, with ``event_date`` when a ``user_tenure`` slice is
    declared. ``features``: feature tables by the name a ``feature`` slice's ``table`` gives.
    """
    out: dict[str, float] = {}
    items = None if catalog is None else list(catalog)
    for spec in specs:
        found = _members(spec, train, features or {})
        if found is None:
            continue
        members, labels = found
        ids = truth[spec.column].astype(str)
        known = ids.isin(members["id"]).to_numpy()
        for label in labels:
            chosen = ids.isin(members.loc[members["bucket"] == label, "id"]).to_numpy()
            if label == NO_VALUE:
                chosen |= ~known  # ids the feature table lacks (their value is unknown)
            out.update(_bucket_metrics(truth[chosen], recs, f"{spec.name}={label}", k, items))
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
