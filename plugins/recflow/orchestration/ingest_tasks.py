"""Task callables that validate landed days into the lake (used by the ingest and training DAGs).

Why two entry points: the ``ingest_interactions`` DAG validates one day per run and announces it with an
Asset event (the training DAG runs on it), one event per batch of runs (:func:`announce`); the training
DAG validates the days of its window that are missing from the lake, without announcing them (that would
trigger training from training).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.orchestration.assets import VALIDATED_INTERACTIONS
from recflow.orchestration.connections import settings as resolve_settings
from recflow.orchestration.context import completed_day, interval_end
from recflow.orchestration.skip_reasons import (
    UNFINISHED_TASK_STATES,
    later_announcement_reason,
    missing_landing_reason,
    skip,
)

log = logging.getLogger(__name__)

#: XCom key of the validation summary, pushed before a failure is raised so the Data Docs URI survives it.
XCOM_VALIDATION = "validation"
#: Task id of :func:`announce` in the ingest DAG (counted across its runs).
ANNOUNCE_TASK_ID = "announce"


def validate_one_day(
    day: date,
    *,
    threshold: float,
    reason: str | None = None,
    context: Any | None = None,
) -> dict[str, Any]:
    """Validate ``day``'s landing file with GX, write accepted rows to the lake, quarantine the rest.

    Landing, lake, quarantine and reports come from the settings (local paths or ``s3://`` URIs; the S3
    endpoint and keys from the ``recflow_s3`` Connection). The summary (with the Data Docs URI) is logged
    and, given a task ``context``, pushed to XCom even when the batch is rejected. A rejected batch fails
    the task without retries (:class:`AirflowFailException`): the same bytes would fail again. A day
    without a landing file skips the task with the reason (no asset event, no retries). Transient
    errors (the object store unreachable) still raise normally and are retried.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from recflow.data.landing import find_landing_file  # deferred: pulls in pandas and pyarrow at DAG parse time
    from recflow.validation import (  # deferred: great_expectations, pyspark
        LandingDayRequest,
        ValidationFailed,
        validate_partition,
    )

    settings = resolve_settings()
    log.info("validating %s with threshold %.4f%s", day, threshold, f"; reason: {reason}" if reason else "")
    try:
        landing_file = find_landing_file(settings.landing_uri, day, settings.s3)
    except FileNotFoundError as exc:  # nothing landed (yet): a skip with the reason, not a failure to retry
        skip(missing_landing_reason(day, settings.landing_uri, exc))
    try:
        result = validate_partition(
            LandingDayRequest(
                landing_file,
                day=day,
                lake_root=settings.lake_uri,
                quarantine_root=settings.quarantine_uri,
                reports_root=settings.reports_uri,
                threshold=threshold,
                s3=settings.s3,
            )
        )
    except ValidationFailed as exc:
        summary = exc.result.to_xcom()
        _publish(summary, context)
        raise AirflowFailException(f"validation of {day} failed:\n{exc.result.summary()}") from exc
    summary = result.to_xcom()
    _publish(summary, context)
    return summary


def _publish(summary: dict[str, Any], context: Any | None) -> None:
    log.info("GX Data Docs: %s", summary.get("data_docs_uri") or summary.get("data_docs_path"))
    log.info("report: %s", summary.get("report_uri") or summary.get("report_path"))
    log.info("validated %s: %s", summary["day"], summary)
    if context is not None:
        context["ti"].xcom_push(key=XCOM_VALIDATION, value=summary)


def requested_day(params: dict[str, Any], context: Any) -> date:
    """``params.date`` when a user re-validates one date from the UI, else the run's completed day."""
    raw = params.get("date")
    return date.fromisoformat(str(raw)) if raw else completed_day(context)


@task
def validate_day(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate one day; its summary (with the day) goes to :func:`announce`.

    The day is the run's completed UTC day, or ``params.date``; ``params.threshold`` overrides the
    row-policy threshold and ``params.reason`` is logged (and kept in the summary).
    """
    context = get_current_context()
    params = params or dict(context["params"])
    day = requested_day(params, context)
    reason = params.get("reason") or None
    summary = validate_one_day(day, threshold=float(params["threshold"]), reason=reason, context=context)
    return {**summary, "reason": reason}


#: One ``announce`` at a time across all runs of the ingest DAG: its check and its event are then atomic.
@task(outlets=[VALIDATED_INTERACTIONS], max_active_tis_per_dag=1)
def announce(summary: dict[str, Any]) -> dict[str, Any]:
    """Emit the ``VALIDATED_INTERACTIONS`` event for the validated day, unless a later announcement covers it.

    Why: each event may start a training run, and a backfill of N days would start up to N of them. This
    task runs in one run at a time (``max_active_tis_per_dag=1``); while another run's ``announce`` is
    still to run (queued backfill days, or days still validating), it skips with that reason, and the
    last ``announce`` of the batch emits the one event that triggers one training run. A day that fails or
    has no landing file ends its ``announce`` too (upstream failed / skipped), so it never holds the
    others back. The event's ``extra`` names this run's day, the accepted and quarantined counts.
    """
    context = get_current_context()
    dag_id = context["dag"].dag_id
    pending = context["ti"].get_ti_count(
        dag_id=dag_id, task_ids=[ANNOUNCE_TASK_ID], states=list(UNFINISHED_TASK_STATES)
    )
    reason = later_announcement_reason(summary["day"], pending - 1, dag_id=dag_id)  # minus this one (running)
    if reason:
        skip(reason)
    extra = {key: summary.get(key) for key in ("day", "accepted", "quarantined", "lake_path", "reason")}
    context["outlet_events"][VALIDATED_INTERACTIONS].extra = extra
    log.info("announced %s on %s", extra, VALIDATED_INTERACTIONS.uri)
    return extra


@task
def days_to_validate(params: dict[str, Any] | None = None) -> list[str]:
    """Days of the training window that have a landing file but no lake partition yet, plus the newest day.

    Why: training must only see validated data, and a window can start before the ingest DAG ran.
    Already-validated days are left alone (re-validation is the ingest DAG's job).
    """
    from recflow.data.lake import open_store  # deferred: pulls in pyarrow at DAG parse time
    from recflow.data.landing import find_landing_file  # deferred: pulls in pandas and pyarrow at DAG parse time
    from recflow.validation import lake_partition  # deferred: pulls in great_expectations and pyspark at DAG parse time

    context = get_current_context()
    params = params or dict(context["params"])
    settings = resolve_settings()
    lake = open_store(settings.lake_uri, settings.s3)
    end = interval_end(context).date()
    span = int(params["train_days"]) + int(params["holdout_days"])
    days = [end - timedelta(days=i) for i in range(span, 0, -1)]
    todo = []
    for day in days:
        in_lake = lake.exists(lake_partition(day))
        if day == days[-1] or not in_lake:
            try:
                find_landing_file(settings.landing_uri, day, settings.s3)
            except FileNotFoundError:
                if not in_lake:
                    log.warning("no landing file and no lake partition for %s", day)
                continue
            todo.append(day.isoformat())
    log.info("validating %d day(s): %s", len(todo), todo)
    return todo


@task(map_index_template="{{ day }}")
def validate_window_day(day: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate one day of the training window (no Asset event: see the module docstring)."""
    context = get_current_context()
    params = params or dict(context["params"])
    return validate_one_day(date.fromisoformat(day), threshold=float(params["threshold"]), context=context)
