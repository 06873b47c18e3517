"""The seen table: each user's seen items as a lake table, updated one day at a time.

Why: the nightly job needs, for every active user, the items seen in the look-back. Aggregating the
whole look-back of interactions again every night (2x10^7 rows at 10^6 users) repeats work for every
user although only one day changed. The seen table keeps the answer as of a day instead:

A snapshot as of ``D`` (a build under ``seen/snapshot_date=D/``, see below) holds one row per user with
an event in the ``retention_days`` days up to and including ``D``: ``user_id``, ``last_date`` (the user's
latest event day) and ``seen``, the sorted array of ``struct<item_id, last_date>`` (the latest day each
item was seen). Snapshot ``D`` is snapshot ``D-1`` plus the validated interactions of day ``D``, with
pairs older than the retention dropped (:func:`ensure_snapshot`). Items are kept by id, not by a
model's code, so one table serves every model.

Why ``last_date`` per item is enough: an item counts as seen when scoring ``D`` under a look-back
starting at ``S`` iff it has an event in ``[S, D]``, i.e. iff its latest event up to ``D`` is on or after
``S``. So the window aggregation and the snapshot give the same arrays whenever ``S`` and the active
window start are inside the retention (:func:`covers`); otherwise the job falls back to the
aggregation and says why.

Backfills: a day is scored on the snapshot as of ``D``, built from the day before and day ``D`` only, so
later days in the lake never leak in.

A snapshot is trusted only while the interactions it was built from are unchanged: it is keyed by a
digest of what the lake's commits record for the interaction partitions of its window (each file's
size, MD5 and rows: :meth:`~recflow.data.lake.LakeStore.committed_facts`), not by a file listing. Why:
on S3 the committed files sit under ``_attempts/``, where cleaning superseded attempts changed a
listing (and forced a rebuild) without changing the data, while a re-ingested day rewrites only the
commit record. A re-ingested day changes the digest, so the snapshot is rebuilt, never silently reused.

Builds never overwrite each other: each goes to a folder of its own,
``seen/snapshot_date=D/build-<attempt>/``, and its marker (``_recflow_seen.json``: day, retention, inputs
digest) is written last, inside it. A reader takes a build whose marker names the digest of the inputs
as they are now. So two runs racing on a day (two neighbouring days scored at once, a re-run beside a
backfill) each write their own build; neither can delete, overwrite or mix files of a build another is
reading; and a build whose inputs changed while it was written is deleted, never marked. Builds other
than the one just made are deleted after the lake's grace period (``RECFLOW_LAKE_GRACE_SECONDS``).

Retention: ``RECFLOW_SEEN_RETENTION_DAYS`` (default 120, a whole number >= 1; anything else is an
error, not the default). Look-backs and active windows up to that long are served from the table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from recflow.config.settings import env_int
from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.data.commits import grace_seconds, new_attempt_id
from recflow.data.lake import open_store
from recflow.scoring.seen import COL_SEEN, SeenPolicy

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from recflow.batch.layout import ScoringRequest
    from recflow.config.s3 import S3Settings

#: Days of history the table keeps by default (look-backs and active windows up to this long are
#: served from it); ``RECFLOW_SEEN_RETENTION_DAYS`` overrides it (:func:`retention_days`).
SEEN_RETENTION_DAYS: Final = 120
RETENTION_ENV: Final = "RECFLOW_SEEN_RETENTION_DAYS"
COL_LAST: Final = "last_date"
MARKER: Final = "_recflow_seen.json"
BUILD_PREFIX: Final = "build-"
#: An unmarked build (being written, or left by a crash) is never deleted before this age.
UNMARKED_GRACE_SECONDS: Final = 24 * 3600.0

log = logging.getLogger(__name__)


class SnapshotRaced(RuntimeError):
    """The window's interactions changed while a snapshot was built (a day re-ingested meanwhile): the
    build was deleted, not marked; run again."""


def retention_days() -> int:
    """``RECFLOW_SEEN_RETENTION_DAYS``, else :data:`SEEN_RETENTION_DAYS`; a bad value is an error, not the default."""
    return env_int(RETENTION_ENV, SEEN_RETENTION_DAYS, minimum=1)


def snapshot_path(lake_root: str, day: date) -> str:
    """The folder of the snapshots as of ``day`` (each build is a folder under it)."""
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


class Inputs:
    """What the lake's commits record for each day's interaction partition, read once per day.

    :meth:`digest` of a window is the sha256 of those records over the window's days, so it changes
    exactly when a committed day changes (re-ingested, added, removed), whatever happens to the
    attempts' files. One instance serves one decision: a fresh one sees the lake as it is now.
    """

    def __init__(self, lake_root: str, s3: S3Settings | None = None) -> None:
        self._store = open_store(lake_root, s3)
        self._days: dict[date, list[str]] = {}

    def _day(self, day: date) -> list[str]:
        if day not in self._days:
            facts = self._store.committed_facts(f"interactions/{COL_DATE}={day}") or {}
            self._days[day] = [f"{day}/{name}:{json.dumps(f, sort_keys=True)}" for name, f in sorted(facts.items())]
        return self._days[day]

    def digest(self, window: Window) -> str:
        lines = [f"retention={window.retention_days}"]
        day = window.first
        while day <= window.day:
            lines += self._day(day)
            day += timedelta(days=1)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pick_build(markers: Mapping[str, Mapping[str, Any] | None], window: Window, digest: str) -> str | None:
    """The build (folder name) to read among a day's builds and their markers (None: unmarked), or None.

    Only a marked build of this day, retention and inputs digest qualifies; among several (runs that
    raced), the latest build id, so every reader picks the same one. They hold the same rows.
    """
    fit = [
        name
        for name, m in markers.items()
        if m is not None
        and m.get("day") == str(window.day)
        and m.get("retention_days") == window.retention_days
        and m.get("inputs") == digest
    ]
    return max(fit) if fit else None


def _fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()  # type: ignore[union-attr,attr-defined]
    hpath = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
    return hpath.getFileSystem(conf), hpath


def _read_marker(spark: SparkSession, build: str) -> dict[str, Any] | None:
    fs, marker = _fs(spark, f"{build}/{MARKER}")
    if not fs.exists(marker):
        return None
    stream = fs.open(marker)
    try:
        text = spark._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")  # type: ignore[union-attr]
    finally:
        stream.close()
    try:
        record: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:  # being written by its build's run right now: not marked yet
        return None
    return record


def _write_marker(spark: SparkSession, build: str, record: dict[str, Any]) -> None:
    fs, marker = _fs(spark, f"{build}/{MARKER}")
    stream = fs.create(marker, False)  # the build is this run's own: nothing to overwrite
    try:
        stream.write(bytearray(json.dumps(record, sort_keys=True).encode()))
    finally:
        stream.close()


def _builds(spark: SparkSession, lake_root: str, day: date) -> dict[str, str]:
    """The day's builds: folder name -> path."""
    fs, folder = _fs(spark, snapshot_path(lake_root, day))
    if not fs.exists(folder):
        return {}
    names = [st.getPath().getName() for st in fs.listStatus(folder) if st.isDirectory()]
    return {n: f"{snapshot_path(lake_root, day)}/{n}" for n in sorted(names) if n.startswith(BUILD_PREFIX)}


def current_snapshot(spark: SparkSession, lake_root: str, window: Window, inputs: Inputs | None = None) -> str | None:
    """The path of the snapshot as of ``window.day`` built from the interactions as they are now, or None."""
    digest = (inputs or Inputs(lake_root)).digest(window)
    builds = _builds(spark, lake_root, window.day)
    name = pick_build({n: _read_marker(spark, path) for n, path in builds.items()}, window, digest)
    return builds[name] if name is not None else None


def _delete(spark: SparkSession, path: str) -> None:
    fs, hpath = _fs(spark, path)
    fs.delete(hpath, True)


def build_started(name: str) -> float | None:
    """When a build started (epoch seconds), from its name (``build-<UTC time>-<random>``); None if unnamed."""
    try:
        started = datetime.strptime(name.removeprefix(BUILD_PREFIX)[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None
    return started.replace(tzinfo=UTC).timestamp()


def stale_builds(markers: Mapping[str, Mapping[str, Any] | None], keep: str, now: float, grace: float) -> list[str]:
    """The builds to delete among a day's (name -> marker, None when unmarked), all but ``keep``.

    A marked build goes once it started more than ``grace`` seconds ago (a reader that picked it a
    moment ago may still be reading it); an unmarked one (still being written, or left by a crash) only
    after :data:`UNMARKED_GRACE_SECONDS` as well, so a build in progress is never deleted under its
    writer, whatever the grace is set to. Ages come from the build names, not from file-system times
    (an S3 "folder" has none).
    """
    out = []
    for name, marker in markers.items():
        started = build_started(name)
        if name == keep or started is None:
            continue
        limit = grace if marker is not None else max(grace, UNMARKED_GRACE_SECONDS)
        if now - started > limit:
            out.append(name)
    return out


def _clean(spark: SparkSession, lake_root: str, day: date, keep: str) -> None:
    """Delete the day's superseded builds (:func:`stale_builds`)."""
    builds = _builds(spark, lake_root, day)
    markers = {n: _read_marker(spark, path) for n, path in builds.items()}
    keep_name = keep.rstrip("/").rsplit("/", 1)[-1]
    for name in stale_builds(markers, keep_name, time.time(), grace_seconds()):
        _delete(spark, builds[name])


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

    See :func:`ensure_snapshot`, which also returns where the snapshot is.
    """
    return ensure_snapshot(spark, interactions, lake_root, window)[0]


def ensure_snapshot(spark: SparkSession, interactions: DataFrame, lake_root: str, window: Window) -> tuple[str, str]:
    """Make the snapshot as of ``window.day`` current; returns how (``current``, ``incremental``,
    ``window``) and the path of the build to read.

    Idempotent: a current build is kept as it is; otherwise a new build is made from the previous day's
    when that one is current, else from the window's interactions. The build's marker is written last,
    and only when the inputs' digest is the same after the build as before it; otherwise the build is
    deleted and :class:`SnapshotRaced` raised.
    """
    t0 = time.perf_counter()
    inputs = Inputs(lake_root)
    digest = inputs.digest(window)
    current = current_snapshot(spark, lake_root, window, inputs)
    if current is not None:
        return "current", current
    previous = current_snapshot(spark, lake_root, window.previous(), inputs)
    if previous is not None:
        how = "incremental"
        frame = _from_previous(spark.read.parquet(previous), interactions, window)
    else:
        how = "window"
        frame = _from_window(interactions, window)
    build = f"{snapshot_path(lake_root, window.day)}/{BUILD_PREFIX}{new_attempt_id()}"
    frame.write.mode("errorifexists").parquet(build)
    fs, success = _fs(spark, f"{build}/_SUCCESS")  # Spark's commit of the build: gone if it was deleted
    if Inputs(lake_root).digest(window) != digest or not fs.exists(success):
        _delete(spark, build)
        raise SnapshotRaced(
            f"the interactions of {window.first}..{window.day} changed while the seen snapshot as of "
            f"{window.day} was built (a day re-ingested meanwhile), or the build was removed: it was "
            "deleted, not marked; run again"
        )
    _write_marker(spark, build, {"day": str(window.day), "retention_days": window.retention_days, "inputs": digest})
    _clean(spark, lake_root, window.day, keep=build)
    log.info("seen snapshot as of %s (%s) in %.1f s", window.day, how, time.perf_counter() - t0)
    return how, build


def snapshot_activity(
    spark: SparkSession,
    snapshot: str,
    item_ids: Sequence[str],
    request: ScoringRequest,
    policy: SeenPolicy,
    train_start: date | None,
) -> DataFrame:
    """(user_id, seen) for the active users, from the snapshot at ``snapshot`` (:func:`ensure_snapshot`,
    :func:`current_snapshot`): one row per user, no aggregation.

    Same rows as :func:`recflow.batch.job.user_activity` when :func:`covers` holds: ``seen`` is the
    sorted array<int> of the codes (positions in ``item_ids``, the model's catalog) of the items whose
    latest event is inside the policy's look-back; items the model does not know are skipped; empty
    under policy ``none``. The ids become codes on the Python workers (:func:`_coded_batches`): Spark's
    map lookup scans the map's keys linearly, 10^4 comparisons per seen item.
    """
    from pyspark.sql import functions as F

    rows = spark.read.parquet(snapshot)
    active_start = request.day - timedelta(days=request.active_days - 1)
    rows = rows.where(F.col(COL_LAST) >= F.lit(active_start))
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
