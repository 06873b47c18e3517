"""Checks that end a run early, as a skip with the reason, when it has nothing to do.

Why check tasks and not retries: an empty window or a missing landing file is not a transient error.
A run that would fail three Spark jobs (and retry each twice) instead skips in seconds, and the UI shows
why. Downstream tasks skip with it, so no Spark job is launched.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.data.window import TrainingWindow
from recflow.orchestration.connections import settings as resolve_settings
from recflow.orchestration.context import interval_end
from recflow.orchestration.run_conf import check_run_conf
from recflow.orchestration.skip_reasons import (
    UNFINISHED_TASK_STATES,
    empty_window_reason,
    pending_ingestion_reason,
    skip,
)

INGEST_DAG_ID = "ingest_interactions"
INGEST_TASK_ID = "validate"


@task
def check_window(params: dict[str, Any] | None = None) -> dict[str, str]:
    """Skip the training run when it has nothing to do; return its window otherwise.

    Two reasons to skip, both in seconds and before any Spark job:

    * an asset-triggered run while ingestion still has validations to finish: a later run, triggered
      by the last of them, covers the data. A backfill announces once (``ingest_tasks.announce``), so
      this is the safety net for ingestion runs that start while training is already triggered.
    * no data for the training or the hold-out days (neither in the lake nor landed), e.g. the cron run
      created when the DAG is unpaused on an empty lake.
    """
    from recflow.data.lake import open_store  # deferred: pulls in pyarrow at DAG parse time
    from recflow.data.landing import find_landing_file  # deferred: pulls in pandas and pyarrow at DAG parse time
    from recflow.validation import lake_partition  # deferred: pulls in great_expectations and pyspark at DAG parse time

    context = get_current_context()
    check_run_conf(context)  # unknown keys and bad values end the run here, all listed, before any Spark job
    params = params or dict(context["params"])
    run_type = context["dag_run"].run_type
    if getattr(run_type, "value", run_type) == "asset_triggered":
        ti = context["ti"]
        reason = pending_ingestion_reason(
            ti.get_dr_count(dag_id=INGEST_DAG_ID, states=["queued", "running"]),
            ti.get_ti_count(dag_id=INGEST_DAG_ID, task_ids=[INGEST_TASK_ID], states=list(UNFINISHED_TASK_STATES)),
            dag_id=INGEST_DAG_ID,
        )
        if reason:
            skip(reason)
    window = TrainingWindow.ending(
        interval_end(context).date(), train_days=int(params["train_days"]), holdout_days=int(params["holdout_days"])
    )
    settings = resolve_settings("trainer")
    lake = open_store(settings.lake_uri, settings.s3)

    def has_data(day: date) -> bool:
        if lake.exists(lake_partition(day)):
            return True
        try:
            find_landing_file(settings.landing_uri, day, settings.s3)
        except FileNotFoundError:
            return False
        return True

    reason = empty_window_reason(window.start, window.holdout_start, window.end, has_data)
    if reason:
        skip(reason)
    return {"start": str(window.start), "holdout_start": str(window.holdout_start), "end": str(window.end)}
