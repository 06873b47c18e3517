"""The seen table: each user's seen items as a lake table, updated one day at a time.

Why: the nightly job needs, for every active user, the items seen in the look-back. Aggregating the
whole look-back of interactions again every night (2x10^7 rows at 10^6 users) repeats work for every
user although only one day changed. The seen table keeps the answer as of a day instead:

``seen/snapshot_date=D/`` holds one row per user with an event in the ``retention_days`` days up to and
including ``D``: ``user_id``, ``last_date`` (the user's latest event day) and ``seen``, the sorted array
of ``struct<item_id, last_date>`` (the latest day each item was seen). Snapshot ``D`` is snapshot
``D-1`` plus the validated interactions of day ``D``, with pairs older than the retention dropped
(:func:`update_snapshot`). Items are kept by id, not by a model's code, so one table serves every model.

Why ``last_date`` per item is enough: an item counts as seen when scoring ``D`` under a look-back
starting at ``S`` iff it has an event in ``[S, D]``, i.e. iff its latest event up to ``D`` is on or after
``S``. So the window aggregation and the snapshot give the same arrays whenever ``S`` and the active
window start are inside the retention (:func:`covers`); otherwise the job falls back to the
aggregation and says why.

Backfills: a day is scored on ``snapshot_date=D``, built from the day before and day ``D`` only, so
later days in the lake never leak in. A snapshot is trusted only while the interactions it was built
from are unchanged: its marker (``_recflow_seen.json``, written last) records a digest of the file
listing (name, size, modification time) of the interaction partitions of its window; a re-ingested day
changes it and the snapshot is rebuilt from the window, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final

from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.scoring.seen import COL_SEEN, SeenPolicy

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from recflow.batch.layout import ScoringRequest

#: Days of history the table keeps (look-backs and active windows up to this long are served from it).
SEEN_RETENTION_DAYS: Final = 120
COL_LAST: Final = "last_date"
MARKER: Final = "_recflow_seen.json"

log = logging.getLogger(__name__)


def snapshot_path(lake_root: str, day: date) -> str:
    return f"{str(lake_root).rstrip('/')}/seen/snapshot_date={day}"


@dataclass(frozen=True)
class Window:
    """The days a snapshot as of ``day`` covers: ``[day - retention_days + 1, day]``."""

    day: date
    retention_days: int

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise ValueError(f"seen retention must be >= 1 day, got {self.retention_days}")

    @property
    def first(self) -> date:
        return self.day - timedelta(days=self.retention_days - 1)

    def previous(self) -> Window:
        return Window(self.day - timedelta(days=1), self.retention_days)


def covers(window: Window, request: ScoringRequest, policy: SeenPolicy, train_start: date | None) -> str | None:
    """None when a snapshot over ``window`` answers ``request`` exactly, else why not."""
    active_start = request.day - timedelta(days=request.active_days - 1)
    if active_start < window.first:
        return f"the {request.active_days}-day active window starts before the {window.retention_days}-day retention"
    if policy.exclude_seen == "none":
        return None
    seen_start = policy.start(request.day, train_start)
    if seen_start is None:
        return "the seen look-back has no start (all history)"
    if seen_start < window.first:
        return f"the seen look-back starts {seen_start}, before the retention's {window.first}"
    return None


def inputs_digest(spark: SparkSession, lake_root: str, window: Window) -> str:
    """sha256 of the listing (relative name, size, modification time) of the window's interaction files."""
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()  # type: ignore[union-attr,attr-defined]
    root = jvm.org.apache.hadoop.fs.Path(f"{str(lake_root).rstrip('/')}/interactions")  # type: ignore[union-attr]
    fs = root.getFileSystem(conf)
    listing = []
    day = window.first
    while day <= window.day:
        folder = jvm.org.apache.hadoop.fs.Path(root, f"{COL_DATE}={day}")  # type: ignore[union-attr]
        if fs.exists(folder):
            files = fs.listFiles(folder, True)
            while files.hasNext():
                status = files.next()
                name = status.getPath().getName()
                listing.append(f"{day}/{name}:{status.getLen()}:{status.getModificationTime()}")
        day += timedelta(days=1)
    return hashlib.sha256("\n".join(sorted(listing)).encode()).hexdigest()


def _read_marker(spark: SparkSession, path: str) -> dict[str, Any] | None:
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()  # type: ignore[union-attr,attr-defined]
    marker = jvm.org.apache.hadoop.fs.Path(f"{path}/{MARKER}")  # type: ignore[union-attr]
    fs = marker.getFileSystem(conf)
    if not fs.exists(marker):
        return None
    stream = fs.open(marker)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")  # type: ignore[union-attr]
    finally:
        stream.close()
    record: dict[str, Any] = json.loads(text)
    return record


def _write_marker(spark: SparkSession, path: str, record: dict[str, Any]) -> None:
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()  # type: ignore[union-attr,attr-defined]
    marker = jvm.org.apache.hadoop.fs.Path(f"{path}/{MARKER}")  # type: ignore[union-attr]
    stream = marker.getFileSystem(conf).create(marker, True)
    try:
        stream.write(bytearray(json.dumps(record, sort_keys=True).encode()))
    finally:
        stream.close()


def _drop_marker(spark: SparkSession, path: str) -> None:
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()  # type: ignore[union-attr,attr-defined]
    marker = jvm.org.apache.hadoop.fs.Path(f"{path}/{MARKER}")  # type: ignore[union-attr]
    marker.getFileSystem(conf).delete(marker, False)


def is_current(spark: SparkSession, lake_root: str, window: Window) -> bool:
    """The snapshot as of ``window.day`` exists, with this retention, over the interactions as they are now."""
    marker = _read_marker(spark, snapshot_path(lake_root, window.day))
    return (
        marker is not None
        and marker.get("retention_days") == window.retention_days
        and marker.get("inputs") == inputs_digest(spark, lake_root, window)
    )


def _from_window(interactions: DataFrame, window: Window) -> DataFrame:
    """The snapshot computed from the window's interactions (the first night, or after a re-ingested day)."""
    from pyspark.sql import functions as F

    date_col = F.col(COL_DATE)
    rows = interactions.where(
        (date_col >= F.lit(window.first)) & (date_col <= F.lit(window.day)) & F.col(COL_USER).isNotNull()
    )
    pairs = rows.groupBy(COL_USER, COL_ITEM).agg(F.max(date_col).alias(COL_LAST))
    entry = F.when(F.col(COL_ITEM).isNotNull(), F.struct(F.col(COL_ITEM), F.col(COL_LAST)))
    return pairs.groupBy(COL_USER).agg(
        F.max(COL_LAST).alias(COL_LAST), F.array_sort(F.collect_list(entry)).alias(COL_SEEN)
    )


def _from_previous(previous: DataFrame, interactions: DataFrame, window: Window) -> DataFrame:
    """Snapshot ``D-1`` plus day ``D``: the day's items take date ``D``, pairs older than the window drop."""
    from pyspark.sql import functions as F

    day_rows = interactions.where((F.col(COL_DATE) == F.lit(window.day)) & F.col(COL_USER).isNotNull())
    today = day_rows.groupBy(COL_USER).agg(F.array_distinct(F.collect_list(COL_ITEM)).alias("today"))
    joined = previous.join(today, COL_USER, "full_outer")
    fresh = F.coalesce(F.col("today"), F.array().cast("array<string>"))
    kept = F.filter(
        F.coalesce(F.col(COL_SEEN), F.array()),
        lambda e: (e[COL_LAST] >= F.lit(window.first)) & ~F.array_contains(fresh, e[COL_ITEM]),
    )
    added = F.transform(fresh, lambda item: F.struct(item.alias(COL_ITEM), F.lit(window.day).alias(COL_LAST)))
    last = F.when(F.col("today").isNotNull(), F.lit(window.day)).otherwise(F.col(COL_LAST))
    return joined.select(COL_USER, last.alias(COL_LAST), F.array_sort(F.concat(kept, added)).alias(COL_SEEN)).where(
        F.col(COL_LAST) >= F.lit(window.first)
    )


def update_snapshot(spark: SparkSession, interactions: DataFrame, lake_root: str, window: Window) -> str:
    """Make the snapshot as of ``window.day`` current; returns how (``current``, ``incremental``, ``window``).

    Idempotent: a current snapshot is kept as it is; otherwise it is rebuilt from the previous day's
    when that one is current, else from the window's interactions. The marker is removed before the
    data is written and written after it, so a crash never leaves a snapshot that looks current.
    """
    t0 = time.perf_counter()
    path = snapshot_path(lake_root, window.day)
    if is_current(spark, lake_root, window):
        return "current"
    previous = window.previous()
    if is_current(spark, lake_root, previous):
        how = "incremental"
        frame = _from_previous(spark.read.parquet(snapshot_path(lake_root, previous.day)), interactions, window)
    else:
        how = "window"
        frame = _from_window(interactions, window)
    digest = inputs_digest(spark, lake_root, window)
    _drop_marker(spark, path)
    frame.write.mode("overwrite").parquet(path)
    _write_marker(spark, path, {"day": str(window.day), "retention_days": window.retention_days, "inputs": digest})
    log.info("seen snapshot as of %s (%s) in %.1f s", window.day, how, time.perf_counter() - t0)
    return how


def snapshot_activity(
    spark: SparkSession,
    lake_root: str,
    item_ids: Sequence[str],
    request: ScoringRequest,
    policy: SeenPolicy,
    train_start: date | None,
) -> DataFrame:
    """(user_id, seen) for the active users, from the current snapshot: one row per user, no aggregation.

    Same rows as :func:`recflow.batch.job.user_activity` when :func:`covers` holds: ``seen`` is the
    sorted array<int> of the codes (positions in ``item_ids``, the model's catalog) of the items whose
    latest event is inside the policy's look-back; items the model does not know are skipped; empty
    under policy ``none``. The ids become codes on the Python workers (:func:`_coded_batches`): Spark's
    map lookup scans the map's keys linearly, 10^4 comparisons per seen item.
    """
    from pyspark.sql import functions as F

    snapshot = spark.read.parquet(snapshot_path(lake_root, request.day))
    active_start = request.day - timedelta(days=request.active_days - 1)
    rows = snapshot.where(F.col(COL_LAST) >= F.lit(active_start))
    if request.users is not None:
        rows = rows.where(F.col(COL_USER).isin(list(request.users)))
    if policy.exclude_seen == "none":
        return rows.select(COL_USER, F.array().cast("array<int>").alias(COL_SEEN))
    seen_start = policy.start(request.day, train_start)
    assert seen_start is not None  # covers() holds
    catalog = list(item_ids)

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _coded_batches(batches, catalog, seen_start)

    return rows.select(COL_USER, COL_SEEN).mapInArrow(convert, f"{COL_USER} string, {COL_SEEN} array<int>")


def _coded_batches(batches: Iterator[pa.RecordBatch], catalog: list[str], start: date) -> Iterator[pa.RecordBatch]:
    """Each batch's ``seen`` structs -> the sorted int32 codes (positions in ``catalog``) seen on or after
    ``start``; unknown items dropped. Vectorised: one hash lookup of all ids, one sort by (user, code)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(catalog, pa.string())
    first = pa.scalar(start, pa.date32())
    for batch in batches:
        seen = batch.column(COL_SEEN)
        flat = pc.list_flatten(seen)
        parents = pc.list_parent_indices(seen)
        codes = pc.index_in(pc.struct_field(flat, COL_ITEM), value_set=value_set)
        keep = pc.fill_null(
            pc.and_(pc.is_valid(codes), pc.greater_equal(pc.struct_field(flat, COL_LAST), first)), False
        )
        kept_codes = pc.filter(codes, keep).to_numpy(zero_copy_only=False).astype(np.int32)
        kept_parents = pc.filter(parents, keep).to_numpy(zero_copy_only=False)
        order = np.lexsort((kept_codes, kept_parents))
        offsets = np.zeros(batch.num_rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(kept_parents, minlength=batch.num_rows), out=offsets[1:])
        lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(kept_codes[order]))
        yield pa.RecordBatch.from_arrays([batch.column(COL_USER), lists], names=[COL_USER, COL_SEEN])
