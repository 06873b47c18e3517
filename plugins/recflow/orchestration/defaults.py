"""Settings every recflow DAG shares, so owners, retries and the start date are set in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: Task defaults: an owning team and two retries (a transient Spark or S3 failure should not fail a run).
DEFAULT_ARGS = {"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(minutes=2)}
#: First data interval the DAGs know about; catch-up is off, history is loaded with ``airflow backfill``.
START_DATE = datetime(2026, 11, 1, tzinfo=UTC)
