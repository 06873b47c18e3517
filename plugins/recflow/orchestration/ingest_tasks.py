"""Task callables that validate landed days into the lake (used by the ingest and training DAGs)."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.orchestration.context import interval_day, interval_end

log = logging.getLogger(__name__)


def validate_one_day(day: date, *, threshold: float, reason: str | None = None) -> dict[str, Any]:
    """Validate ``day``'s landing file with GX, write accepted rows to the lake, quarantine the rest.

    Raises (failing the task) when the batch is rejected; the summary names the failed expectations.
    """
    from recflow.config import load_settings
    from recflow.validation import validate_partition

    settings = load_settings()
    if reason:
        log.info("re-validating %s with threshold %.4f: %s", day, threshold, reason)
    landing_file = find_landing_file(settings.landing_root, day)
    result = validate_partition(landing_file, day=day, lake_root=settings.lake_root, threshold=threshold)
    summary: dict[str, Any] = result.to_xcom()
    log.info("validated %s: %s", day, summary)
    return summary


def find_landing_file(landing_root: Path, day: date) -> Path:
    """The one landing file of ``day`` (any accepted format); two files for one day is an error."""
    from recflow.data.contract import LANDING_STEM, partition_dir_name

    folder = landing_root / partition_dir_name(day)
    found = sorted(folder.glob(f"{LANDING_STEM}.*"))
    if not found:
        raise FileNotFoundError(f"no landing file for {day}: expected {folder}/{LANDING_STEM}.<csv|jsonl|parquet>[.gz]")
    if len(found) > 1:
        raise ValueError(f"{len(found)} landing files for {day} in {folder}: {[p.name for p in found]}; keep one")
    return found[0]


@task
def validate_day(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the run's day (or ``params.date`` when a user re-validates one date from the UI)."""
    context = get_current_context()
    params = params or dict(context["params"])
    day = date.fromisoformat(params["date"]) if params.get("date") else interval_day(context)
    return validate_one_day(day, threshold=float(params["threshold"]), reason=params.get("reason"))


@task
def days_to_validate(params: dict[str, Any] | None = None) -> list[str]:
    """Days of the training window that have a landing file but no lake partition yet, plus the newest day.

    Why: training must only see validated data, and a window can start before the ingest DAG ran.
    Already-validated days are left alone (re-validation is the ingest DAG's job).
    """
    from recflow.config import load_settings

    context = get_current_context()
    params = params or dict(context["params"])
    settings = load_settings()
    end = interval_end(context).date()
    span = int(params["train_days"]) + int(params["holdout_days"])
    days = [end - timedelta(days=i) for i in range(span, 0, -1)]
    todo = []
    for day in days:
        in_lake = (settings.lake_root / "interactions" / f"event_date={day}").is_dir()
        if day == days[-1] or not in_lake:
            try:
                find_landing_file(settings.landing_root, day)
            except FileNotFoundError:
                if not in_lake:
                    log.warning("no landing file and no lake partition for %s", day)
                continue
            todo.append(day.isoformat())
    log.info("validating %d day(s): %s", len(todo), todo)
    return todo


@task(map_index_template="{{ day }}")
def validate_window_day(day: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    context = get_current_context()
    params = params or dict(context["params"])
    return validate_one_day(date.fromisoformat(day), threshold=float(params["threshold"]))
