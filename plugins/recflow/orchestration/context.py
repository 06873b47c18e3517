"""Read the data interval from a task context: every task is keyed on it, never on ``now()``."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any


def interval_end(context: Any) -> datetime:
    """End of the run's data interval.

    Asset-triggered runs in Airflow 3 may have no data interval; they fall back to ``run_after``
    truncated to the day, which is fixed when the run is created (so retries see the same value).
    """
    end = context.get("data_interval_end")
    if end is None:
        run_after: datetime = context["dag_run"].run_after
        end = run_after.replace(hour=0, minute=0, second=0, microsecond=0)
    return end


def interval_day(context: Any) -> date:
    """The day whose data the run processes: the last day before the interval end."""
    return (interval_end(context) - timedelta(microseconds=1)).date()


def interval_key(context: Any) -> str:
    """A compact, sortable id of the interval, used in version ids and output paths."""
    return interval_end(context).strftime("%Y%m%dT%H%M")
