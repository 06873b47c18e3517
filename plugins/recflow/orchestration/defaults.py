"""Settings every recflow DAG shares, set in one place: owner, retries, start date and the daily schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

#: Task defaults: an owning team and two retries (a transient Spark or S3 failure should not fail a run).
DEFAULT_ARGS = {"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(minutes=2)}
#: First data interval the DAGs know about; catch-up is off, history is loaded with ``airflow backfill``.
START_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def daily(cron: str) -> CronTriggerTimetable:
    """Runs at ``cron`` (UTC), each with a one-day data interval ending at its trigger time."""
    return CronTriggerTimetable(cron, timezone="UTC", interval=timedelta(days=1))


def daily_or_when_updated(cron: str, asset: Asset) -> AssetOrTimeSchedule:
    """:func:`daily` at ``cron``, and also whenever ``asset`` is updated."""
    return AssetOrTimeSchedule(timetable=daily(cron), assets=[asset])
