"""Is there anything to do? The answers that let a run skip in seconds instead of failing in Spark.

Why here and not in the jobs: a Spark job that finds an empty window fails after a JVM start, and its
retries fail the same way; the orchestration layer asks these questions first and skips with the
reason. Pure functions over callables, so they are tested without Airflow, Spark or a store; :func:`skip`
ends the task with one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import NoReturn

log = logging.getLogger(__name__)

#: Task states that mean "this task instance will still run" (``null``: created, not yet scheduled).
UNFINISHED_TASK_STATES = (
    "null",
    "scheduled",
    "queued",
    "running",
    "up_for_retry",
    "up_for_reschedule",
    "deferred",
    "restarting",
)


def skip(reason: str) -> NoReturn:
    """End the task as skipped, logging the reason (the UI shows it in the task log)."""
    from airflow.sdk.exceptions import AirflowSkipException

    log.info("skipping: %s", reason)
    raise AirflowSkipException(reason)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days)]


def empty_window_reason(start: date, holdout_start: date, end: date, has_data: Callable[[date], bool]) -> str | None:
    """Why training ``[start, holdout_start)`` with hold-out ``[holdout_start, end)`` cannot run, or None.

    ``has_data(day)`` is true when the day is in the lake or has a landing file (training validates
    missing days first). Both halves need at least one such day: a model without training data or a
    hold-out without truth cannot be compared, and the Spark jobs would fail on it.
    """
    train = [d for d in _days(start, holdout_start) if has_data(d)]
    holdout = [d for d in _days(holdout_start, end) if has_data(d)]
    if train and holdout:
        return None
    missing = []
    if not train:
        missing.append(f"training days {start}..{holdout_start - timedelta(days=1)}")
    if not holdout:
        missing.append(f"hold-out days {holdout_start}..{end - timedelta(days=1)}")
    return (
        f"no data for the {' and the '.join(missing)} (no lake partition and no landing file): "
        "nothing to train; land or ingest those days and trigger again"
    )


def pending_ingestion_reason(active_runs: int, unfinished_validations: int, *, dag_id: str) -> str | None:
    """Why an asset-triggered training run should leave the work to a later run, or None.

    While ingestion runs (a backfill of N days) still have validations to finish, each of them will emit
    its own asset event, and a later training run sees all of the data. Skipping now is what makes a
    backfill of N days train once, after its last day. Both counts must be positive: a stale unfinished
    task instance in a run that is no longer active never holds training back.
    """
    if active_runs > 0 and unfinished_validations > 0:
        return (
            f"{unfinished_validations} validation(s) of {dag_id} are still to finish ({active_runs} active run(s)): "
            "the training run after the last of them covers this data (asset events coalesce)"
        )
    return None


def later_announcement_reason(day: str, others_pending: int, *, dag_id: str) -> str | None:
    """Why an ingest run leaves its asset event to a later run, or None when it must emit it.

    ``others_pending``: ``announce`` task instances of other runs that will still run (queued backfill
    days, days still validating). The last of them emits one event for all, so a backfill of N days
    starts one training run instead of N.
    """
    if others_pending > 0:
        return (
            f"{day} is validated into the lake; {others_pending} other run(s) of {dag_id} still to announce: "
            "the last of them emits the one asset event for all (one training run per batch)"
        )
    return None


def missing_landing_reason(day: date, landing_root: str, error: Exception) -> str:
    """The skip message of an ingest run whose landing file is not there (yet)."""
    return (
        f"no landing file for {day} under {landing_root}: nothing to validate ({error}). "
        "Land the file and clear this task to validate the day."
    )
