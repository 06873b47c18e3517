"""Batch scoring on Spark: top-K for every active user of a day, validated, then published.

Data flow (each step a Spark job; nothing per user happens on the driver):

1. active users and their seen items: users with a validated event in the ``active_days`` days up to
   the day (optionally only a given subset), each with the item codes seen under the spec's
   ``exclude_seen`` policy (:mod:`recflow.scoring.seen`). Read as one row per user from the seen table
   as of the day, after updating it with the day (:mod:`recflow.batch.seen_snapshot`); when the
   look-back reaches past the table's retention, aggregated from the window in one ``groupBy``
   (:func:`user_activity`). Cached, and its count sizes the partitions;
2. each user joined to the model's user table (``users.parquet`` in the artifact: dense code and, for
   factor models, the factor row) after a hash repartition by user, so the join's one shuffle leaves a
   partition's batches carrying everything their users need, sorted by user;
3. ``mapInArrow`` runs the scoring core (:func:`recflow.scoring.core.score_batch`) on Arrow batches. The
   model shipped to workers holds the item side only (:meth:`Recommender.for_workers`) and is built
   once per Python worker, so a worker's memory does not grow with the total number of users;
4. each task writes its rows into a staging folder itself and checks every file it wrote against its
   input users (:mod:`recflow.batch.staging`); the driver runs ``expectations/batch_scores.json`` over
   those checks (:mod:`recflow.batch.publish`) and only then publishes over the day's partition; a
   failed check keeps the previous partition and writes a report.

Output: ``scores/event_date=<day>/`` Parquet with ``user_id, rank, item_id, score, model_version, source,
logging_propensity``
(``source`` is ``model``, ``fallback`` or ``explore``, see :mod:`recflow.scoring.core` for the fallback's
scale and :mod:`recflow.scoring.explore` for the exploration slots of an artifact with ``exploration.json``;
``logging_propensity`` is set on explore rows only), sorted
by user and rank, files named ``part-<task>-<n>.parquet``: a re-run with the same inputs writes the same bytes.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recflow.batch.layout import ScoringRequest
from recflow.batch.publish import preload_suite_engine, publish_scores
from recflow.batch.seen_snapshot import Window, covers, ensure_snapshot, retention_days, snapshot_activity
from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.data.spark_lake import read_table
from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.exploration import read_explorer
from recflow.models.index import SEEN_TABLE
from recflow.scoring.arrow import COL_CODE, COL_TRAIN_SEEN
from recflow.scoring.core import ScoringError
from recflow.scoring.seen import COL_ITEM_CODE, COL_SEEN, SeenPolicy, seen_codes, seen_window
from recflow.spark.session import session_conf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


SHUFFLE_PARTITIONS: Final = "spark.sql.shuffle.partitions"
# The per-user seen arrays are an object aggregate: its hash form falls back to sorting after 128
# groups a task (spark.sql.objectHashAggregate.sortBased.fallbackThreshold), and with 10^5-10^6
# users a task it paid the hash map and the sort; the sort aggregate sorts once (measured at 10^6
# users: 5-6 s against 7.5-14 s), and spills like any sort.
SORT_AGGREGATE: Final = {"spark.sql.execution.useObjectHashAggregateExec": "false"}
ARROW_MAX_RECORDS: Final = "spark.sql.execution.arrow.maxRecordsPerBatch"
#: Users per Arrow batch handed to the scoring core (it blocks internally to stay in cache).
ARROW_BATCH_USERS: Final = 8192

log = logging.getLogger(__name__)


def read_interactions(spark: SparkSession, lake_root: Path | str) -> DataFrame:
    """The committed interactions with their ``event_date`` column, read through the lake's commits."""
    path = f"{str(lake_root).rstrip('/')}/interactions"
    try:
        return read_table(spark, lake_root, "interactions", COL_DATE)
    except Exception as exc:  # AnalysisException: path missing or empty
        raise ScoringError(f"no validated interactions under {path}: {exc}") from exc


def user_table(spark: SparkSession, artifact_dir: Path, model: Recommender) -> DataFrame:
    """(user_id, u[, features]) read by Spark from the artifact's ``users.parquet``.

    Artifacts from before that file existed get the table built from the id index on the driver.
    """
    from pyspark.sql import functions as F

    path = artifact_dir / "users.parquet"
    if path.exists():
        return spark.read.parquet(str(path))
    import pandas as pd

    frame = pd.DataFrame({COL_USER: list(model.index.users), COL_CODE: np.arange(model.index.n_users, dtype=np.int32)})
    return spark.createDataFrame(frame).withColumn(COL_CODE, F.col(COL_CODE).cast("int"))


def item_table(spark: SparkSession, model: Recommender) -> DataFrame:
    """(item_id, i): the catalog's dense codes, small enough to broadcast."""
    import pandas as pd

    frame = pd.DataFrame(
        {COL_ITEM: list(model.index.items), COL_ITEM_CODE: np.arange(model.index.n_items, dtype=np.int32)}
    )
    return spark.createDataFrame(frame)


def user_activity(
    interactions: DataFrame,
    items: DataFrame,
    request: ScoringRequest,
    policy: SeenPolicy,
    train_start: date | None,
) -> DataFrame:
    """(user_id, seen) for every user with a validated event in the ``active_days`` days up to and
    including the day (only those of ``request.users`` when given); ``seen`` is the sorted array<int> of
    the user's item codes under ``policy`` (:mod:`recflow.scoring.seen`), empty when none or policy ``none``.

    Why one ``groupBy``: the active set and the seen arrays are both per-user aggregates of the same
    rows, so one hash aggregate over the union of the two windows gives both, instead of a distinct, a
    ``collect_set`` and a join between them (three shuffles of the interactions down to one).
    """
    from pyspark.sql import functions as F

    day = request.day
    active_start = day - timedelta(days=request.active_days - 1)
    seen_start = policy.start(day, train_start)
    seen = seen_window(policy, day=day, start=seen_start)
    first = active_start if seen is None or seen_start is None else min(active_start, seen_start)
    date_col = F.col(COL_DATE)
    rows = interactions.where((date_col <= F.lit(day)) & F.col(COL_USER).isNotNull())
    if seen is None or seen_start is not None:
        rows = rows.where(date_col >= F.lit(first))
    if request.users is not None:
        rows = rows.where(F.col(COL_USER).isin(list(request.users)))
    active = F.max((date_col >= F.lit(active_start)).cast("int")) == 1
    if seen is None:
        grouped = rows.groupBy(COL_USER).agg(active.alias("active"))
        grouped = grouped.withColumn(COL_SEEN, F.array().cast("array<int>"))
    else:
        coded = rows.select(COL_USER, COL_DATE, COL_ITEM).join(F.broadcast(items), COL_ITEM, "left")
        grouped = coded.groupBy(COL_USER).agg(active.alias("active"), seen_codes(seen))
    return grouped.where("active").select(COL_USER, COL_SEEN)


def active_users(
    spark: SparkSession,
    interactions: DataFrame,
    model: Recommender,
    request: ScoringRequest,
    policy: SeenPolicy,
    train_start: date | None,
    *,
    lake_root: Path | str,
    seen_retention_days: int,
) -> DataFrame:
    """(user_id, seen) of the day's active users: from the seen table when it covers the request (after
    bringing it up to the day), else aggregated from the window (:func:`user_activity`); same rows."""
    window = Window(request.day, seen_retention_days)
    why_not = covers(window, request, policy, train_start)
    if why_not is not None:
        log.info("seen items aggregated from the interactions, not the seen table: %s", why_not)
        return user_activity(interactions, item_table(spark, model), request, policy, train_start)
    with session_conf(spark, SORT_AGGREGATE):
        _, snapshot = ensure_snapshot(spark, interactions, str(lake_root), window)
    return snapshot_activity(spark, snapshot, model.index.items, request, policy, train_start)


def training_items(spark: SparkSession, artifact_dir: Path, model: Recommender) -> DataFrame:
    """(u, train_seen): each training user's items in the artifact (``seen.parquet``, or the model's own
    seen index for families without tables), what exploration draws against in every path."""
    from pyspark.sql import functions as F

    path = artifact_dir / SEEN_TABLE
    if path.exists():
        return spark.read.parquet(str(path)).select(COL_CODE, F.col(COL_SEEN).alias(COL_TRAIN_SEEN))
    if not model.has_user_side:
        raise ScoringError(f"{artifact_dir} has no {SEEN_TABLE} and its model was loaded without its users")
    import pandas as pd

    codes = np.arange(model.index.n_users, dtype=np.int64)
    seen = model.seen.ragged(codes)
    lists = [seen.values[a:b].tolist() for a, b in zip(seen.offsets[:-1], seen.offsets[1:], strict=True)]
    frame = pd.DataFrame({COL_CODE: codes.astype(np.int32), COL_TRAIN_SEEN: lists})
    return spark.createDataFrame(frame, schema=f"{COL_CODE} int, {COL_TRAIN_SEEN} array<int>")


def scoring_inputs(
    spark: SparkSession,
    activity: DataFrame,
    artifact_dir: Path,
    model: Recommender,
    partitions: int,
    *,
    explore: bool = False,
) -> DataFrame:
    """One row per user to score: user_id, u (null: unknown), [features], seen (array<int>, maybe empty),
    with ``explore`` also train_seen (the user's training items, empty for a user the model does not know),
    hash-partitioned into ``partitions`` by user and sorted by user within each partition.

    The join's shuffle is the one :func:`score_users` needs: ``activity`` is repartitioned by user into
    ``partitions``, the user table follows it, and the sort-merge join's output is already what
    ``score_users`` asks for, so Spark plans no further exchange or sort before the scoring
    ``mapInArrow``. That holds when ``spark.sql.shuffle.partitions`` is at most ``partitions``
    (:func:`run_batch_scoring` sets it so): with more, Spark shuffles both sides of the join to that many
    and then once more for the scoring.
    """
    table = user_table(spark, artifact_dir, model)
    if explore:
        from pyspark.sql import functions as F

        table = table.join(training_items(spark, artifact_dir, model), COL_CODE, "left")
        joined = activity.repartition(partitions, COL_USER).join(table, COL_USER, "left")
        empty = F.array().cast("array<int>")
        return joined.withColumn(COL_TRAIN_SEEN, F.coalesce(F.col(COL_TRAIN_SEEN), empty))
    return activity.repartition(partitions, COL_USER).join(table, COL_USER, "left")


def partition_count(spark: SparkSession, n_users: int) -> int:
    """Enough partitions to keep every core busy, few enough that each holds many Arrow batches."""
    cores = spark.sparkContext.defaultParallelism
    return max(1, min(cores * 4, n_users // 20_000 + 1))


def run_batch_scoring(
    spark: SparkSession,
    *,
    artifact_dir: Path,
    request: ScoringRequest,
    lake_root: Path | str,
    seen_retention_days: int | None = None,
) -> dict[str, Any]:
    """Score, validate and publish one day; returns the summary (also written beside the partition).

    ``seen_retention_days`` defaults to ``RECFLOW_SEEN_RETENTION_DAYS`` (:func:`retention_days`: 120
    unless set; a bad value fails here, before any work).

    Idempotent per day: the staged output replaces the day's partition only after it passed the
    suite; a failed run leaves the previous partition as it was and raises
    :class:`recflow.batch.publish.ScoresRejected` after writing its report.
    """
    retention = retention_days() if seen_retention_days is None else seen_retention_days
    preload_suite_engine()
    try:
        model = load_recommender(artifact_dir, item_side=True)
    except Exception as exc:
        raise ScoringError(f"the artifact of {request.version} at {artifact_dir} cannot be loaded: {exc}") from exc
    explorer = read_explorer(artifact_dir, model)
    lineage = _lineage(artifact_dir)
    policy = SeenPolicy.from_dict(lineage.get("scoring"))
    train_start = date.fromisoformat(lineage["window"]["start"]) if "window" in lineage else None
    interactions = read_interactions(spark, lake_root)
    activity = active_users(spark, interactions, model, request, policy, train_start,
                            lake_root=lake_root, seen_retention_days=retention).cache()  # fmt: skip
    try:
        n_users = _count_active(spark, activity, request, lake_root)
        partitions = partition_count(spark, n_users)
        # the join to the user table then shuffles straight into the scoring partitions (see scoring_inputs)
        scoped = {SHUFFLE_PARTITIONS: str(partitions), ARROW_MAX_RECORDS: str(ARROW_BATCH_USERS)}
        with session_conf(spark, scoped):
            return publish_scores(
                scoring_inputs(spark, activity, artifact_dir, model, partitions, explore=explorer is not None),
                n_users=n_users,
                partitions=partitions,
                model=model,
                request=request,
                policy=policy,
                lake_root=lake_root,
                explorer=explorer,
            )
    finally:
        activity.unpersist()


def _count_active(spark: SparkSession, activity: DataFrame, request: ScoringRequest, lake_root: Path | str) -> int:
    """The number of active users (computing and caching ``activity``); none is an error."""
    t0 = time.perf_counter()
    with session_conf(spark, SORT_AGGREGATE):
        n_users = activity.count()
    log.info("%d active users and their seen items in %.1f s", n_users, time.perf_counter() - t0)
    if n_users == 0:
        raise ScoringError(
            f"no active users in the {request.active_days} day(s) up to {request.day} under {lake_root}"
            + (f" among the {len(request.users)} requested" if request.users is not None else "")
        )
    return n_users


def _lineage(artifact_dir: Path) -> dict[str, Any]:
    path = artifact_dir / "lineage.json"
    if not path.is_file():
        return {}
    lineage: dict[str, Any] = json.loads(path.read_text())
    return lineage
