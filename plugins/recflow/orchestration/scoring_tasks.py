"""Task callables of the ``batch_scoring`` DAG."""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.config.settings import load_settings
from recflow.orchestration.assets import BATCH_SCORES
from recflow.orchestration.connections import s3_settings
from recflow.orchestration.connections import settings as resolve_settings
from recflow.orchestration.context import interval_day, interval_end
from recflow.orchestration.run_conf import check_run_conf
from recflow.orchestration.skip_reasons import skip
from recflow.spark.session import spark_uri

log = logging.getLogger(__name__)


@task
def plan_scoring(params: dict[str, Any] | None = None) -> list[str]:
    """The batch job's arguments, with the version fixed now so a promotion mid-run cannot mix models.

    The version is the pinned ``version`` Param (checked against the registry) or else the champion of
    this run's data interval: ``resolve_serving_version(..., interval_end=...)``, one rule for scheduled
    runs, asset-triggered runs and backfills alike, so a backfilled day gets the champion of that day and
    a re-run gets the same one (never "the champion now"). No champion for the interval (an empty
    registry, or a day before the first promotion took effect) skips the run: there is nothing to
    score it with, and no retry would change that.

    The offer catalog is fixed here too and passed as ``--offers`` (:func:`recflow.data.offers.run_catalog`:
    the ``offers`` Param, else ``RECFLOW_OFFERS``, else no offers); a named file that does not exist
    fails the plan, before the Spark job.
    """
    from recflow.data.offers import run_catalog  # deferred: pulls in pandas at DAG parse time
    from recflow.registry import ModelRegistry, NoChampion, resolve_serving_version  # deferred: pulls in botocore

    context = get_current_context()
    check_run_conf(context)  # unknown keys and bad values end the run here, all listed, before the Spark job
    params = params or dict(context["params"])
    day = interval_day(context)
    registry = ModelRegistry.from_settings(s3_settings("batch"))
    pinned = params.get("version") or None
    end = interval_end(context)
    try:
        serving = (
            resolve_serving_version(registry, pinned=pinned)
            if pinned
            else resolve_serving_version(registry, interval_end=end)
        )
    except NoChampion as exc:  # e.g. unpaused on an empty registry, or a backfill of days before it
        skip(f"nothing to score for {day}: {exc}")
    version, record = serving.version, serving.record
    if record is not None:
        log.info("%s is the champion of the interval ending %s (%s for the interval ending %s, by %s)",
                 version, end.isoformat(), record.kind, record.interval_end, record.actor)  # fmt: skip
    users = [str(u) for u in params.get("users") or []]
    catalog = run_catalog(params.get("offers") or None)
    log.info("scoring %s with %s (%s), offer catalog %s", day, version,
             f"{len(users)} users" if users else "every active user", catalog or "none")  # fmt: skip
    return [
        "--lake", spark_uri(load_settings().lake_uri),
        "--date", str(day),
        "--k", str(params["k"]),
        "--active-days", str(params["active_days"]),
        "--version", version,
        "--digest", serving.digest,
        *(["--users-json", json.dumps(users)] if users else []),
        *(["--offers", str(catalog)] if catalog is not None else []),
    ]  # fmt: skip


@task(outlets=[BATCH_SCORES])
def check_scores(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the published summary, check its counts, and emit the partition's Asset event.

    The job publishes only output that passed ``expectations/batch_scores.json``; this re-checks the
    totals: every active user is either scored or exhausted (nothing left to recommend, not a failure).
    """
    from recflow.batch.layout import read_summary  # deferred: pulls in pandas and pyarrow at DAG parse time

    context = get_current_context()
    params = params or dict(context["params"])
    conf = resolve_settings("batch")  # the lake may be on S3: its URI, and the keys from the Connection
    summary = read_summary(conf.lake_uri, interval_day(context), conf.s3)
    if summary["users_scored"] + summary["users_exhausted"] != summary["active_users"]:
        raise RuntimeError(f"{summary['active_users']} active users but {summary['users_scored']} scored: {summary}")
    if summary["rows"] > summary["users_scored"] * int(params["k"]):
        raise RuntimeError(f"more than k={params['k']} rows per user: {summary}")
    context["outlet_events"][BATCH_SCORES].extra = {
        "day": summary["day"],
        "model_version": summary["model_version"],
        "rows": summary["rows"],
        "users_exhausted": summary["users_exhausted"],
        "path": summary["path"],
    }
    log.info("batch scores: %s", summary)
    return summary
