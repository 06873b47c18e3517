"""Read the data interval from a task context: every task is keyed on it, never on ``now()``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

#: Key of the day in ``VALIDATED_INTERACTIONS`` event extras (written by ``ingest_tasks.validate_day``).
EVENT_DAY_KEY = "day"


def event_day(context: Any) -> date | None:
    """The newest day named in the ``extra`` of the events that triggered this run, if any.

    A run triggered by several validated partitions (events are batched until the run starts) covers up
    to the newest of them; older days are inside its window anyway.
    """
    events = context.get("triggering_asset_events") or {}
    days = []
    for asset in events:
        for event in events[asset]:
            extra = getattr(event, "extra", None) or {}
            payload = extra.get("payload")  # an AssetWatcher's event: the trigger's payload (landing_events)
            raw = extra.get(EVENT_DAY_KEY) or (payload.get(EVENT_DAY_KEY) if isinstance(payload, dict) else None)
            if raw:
                days.append(date.fromisoformat(str(raw)))
    return max(days) if days else None


def interval_end(context: Any) -> datetime:
    """End of the run's data interval.

    A run triggered by a validated partition ends at the midnight after the day named in the event's
    ``extra`` (the interval Airflow derives from event timestamps is wall-clock time, not the data's
    day). Otherwise the data interval's end; asset-triggered runs in Airflow 3 may have none, and then
    ``run_after`` truncated to the day is used, fixed when the run is created (retries see the same value).
    """
    day = event_day(context)
    if day is not None:
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    end = context.get("data_interval_end")
    if end is None:
        run_after: datetime = context["dag_run"].run_after
        end = run_after.replace(hour=0, minute=0, second=0, microsecond=0)
    return end


def interval_day(context: Any) -> date:
    """The day whose data the run processes: the last day before the interval end."""
    return (interval_end(context) - timedelta(microseconds=1)).date()


def completed_day(context: Any) -> date:
    """The last whole UTC day that ended at or before the interval end.

    For a daily run triggered at ``D+1 01:00`` (interval ``[D 01:00, D+1 01:00)``) this is ``D``; the
    hour of grace lets late files land. Unlike :func:`interval_day` it never names the day in progress.
    """
    end = interval_end(context).astimezone(UTC)
    return end.date() - timedelta(days=1)
