"""Settings every recflow DAG shares, set in one place: owner, retries, start date and the daily schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

from recflow.orchestration.alerts import ON_FAILURE

#: The longest any recflow task may run (a hung Spark job or S3 call must end, fail and alert, not hold the
#: run and its slot for ever). Generous: a training job on MovieLens-100K takes minutes on 2 cores.
TASK_TIMEOUT = timedelta(hours=2)

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
