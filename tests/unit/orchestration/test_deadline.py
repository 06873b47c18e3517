"""The batch deadline's arithmetic and alert, as data (the watch itself runs in test_batch_deadline)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recflow.orchestration.deadline import (
    BATCH_CRON,
    BATCH_DEADLINE,
    WATCH_CRON,
    deadline_alert,
    nightly_logical_date,
)


def test_the_watch_runs_at_the_batch_time_plus_the_deadline() -> None:
    assert BATCH_CRON == "0 4 * * *" and timedelta(hours=3) == BATCH_DEADLINE
    assert WATCH_CRON == "0 7 * * *"


def test_the_night_is_named_by_its_data_interval_start() -> None:
    """The run that triggers at 04:00 on the 10th covers the 9th, so Airflow names it 04:00 on the 9th."""
    assert nightly_logical_date(datetime(2026, 11, 10, 7, tzinfo=UTC)) == datetime(2026, 11, 9, 4, tzinfo=UTC)


def test_the_alert_names_the_night_once() -> None:
    night, deadline = datetime(2026, 11, 9, 4, tzinfo=UTC), datetime(2026, 11, 10, 7, tzinfo=UTC)
    alert = deadline_alert(logical_date=night, deadline=deadline, state="running", run_id="r1")
    again = deadline_alert(logical_date=night, deadline=deadline, state="missing", run_id="r2")
    assert alert["kind"] == "deadline_missed" and alert["dag_id"] == "batch_scoring"
    assert alert["key"] == again["key"] == "batch_scoring/2026-11-09T04:00:00+00:00/deadline"  # a retry dedups
    assert alert["cause"] == "batch_scoring for 2026-11-09 had not succeeded by 2026-11-10T07:00:00+00:00 (running)"
    assert "\n" not in alert["cause"]
