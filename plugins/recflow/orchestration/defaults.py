"""Settings every recflow DAG shares, set in one place: owner, retries, start date and the daily schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

# the defining modules: airflow.sdk exports these lazily, and its type stub does not list them
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from recflow.orchestration.alerts import ON_FAILURE, deadline_missed

#: The longest any recflow task may run (a hung Spark job or S3 call must end, fail and alert, not hold the
#: run and its slot for ever). Generous: a training job on MovieLens-100K takes minutes on 2 cores.
TASK_TIMEOUT = timedelta(hours=2)
#: How long after being queued the nightly batch must be finished before an alert goes out.
BATCH_DEADLINE = timedelta(hours=3)

#: Task defaults: an owning team, two retries (a transient Spark or S3 failure should not fail a run), a
#: timeout, and one alert when a task finally fails (recflow.orchestration.alerts).
DEFAULT_ARGS = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "execution_timeout": TASK_TIMEOUT,
    "on_failure_callback": ON_FAILURE,
}
#: First data interval the DAGs know about; catch-up is off, history is loaded with ``airflow backfill``.
START_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def daily(cron: str) -> CronTriggerTimetable:
    """Runs at ``cron`` (UTC), each with a one-day data interval ending at its trigger time."""
    return CronTriggerTimetable(cron, timezone="UTC", interval=timedelta(days=1))


def daily_or_when_updated(cron: str, asset: Asset) -> AssetOrTimeSchedule:
    """:func:`daily` at ``cron``, and also whenever ``asset`` is updated."""
    return AssetOrTimeSchedule(timetable=daily(cron), assets=[asset])


def batch_deadline() -> DeadlineAlert:
    """An alert when a ``batch_scoring`` run is not finished :data:`BATCH_DEADLINE` after it was queued."""
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=BATCH_DEADLINE,
        callback=AsyncCallback(deadline_missed, kwargs={"what": f"batch scoring within {BATCH_DEADLINE} of queueing"}),
    )
