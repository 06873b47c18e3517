"""
### Ingest interactions

Daily at 01:00 UTC, validates the landing file of the UTC day that just ended
(`<landing>/date=YYYY-MM-DD/interactions.<csv|jsonl|parquet>[.gz]`) against the Great Expectations suite
`expectations/raw_interactions.json`. Accepted rows replace the lake partition
`interactions/event_date=<day>`; rejects go to `quarantine/date=<day>` with JSON and HTML reports. The GX
Data Docs are uploaded to the reports bucket; their `s3://` URI is in the task log and in XCom
(key `validation`, and the return value).

If more than `threshold` of the rows break row rules, or a batch check fails (schema, volume vs the
trailing 7-day mean, unknown users/items), the whole batch is quarantined and `validate` fails without
retries, with a summary naming the failed expectations, counts and sample values.

`announce` emits the event on the `recflow://lake/interactions` asset, with `extra={"day": ...}`, that
`recommender_training` runs on: one event per batch of runs, not one per day. It runs in one run at a time
(`max_active_tis_per_dag=1`) and skips, with the reason, while another run's `announce` is still to run
(the queued or still-validating days of a backfill); the last one emits. So a backfill of N days
triggers one training run once it settles (`test_scheduler_backfill.py`), whatever `--max-active-runs`.

It also runs when a file lands: a message `{"day": "YYYY-MM-DD"}` on the Kafka topic
`recflow.landing-events` updates the `recflow://landing/interactions` asset through an `AssetWatcher` (the
Kafka provider's `AwaitMessageTrigger` on `kafka_default`, in the triggerer), and the run validates that
day. Backfills still follow the daily schedule.

A day without a landing file (yet) ends the run in seconds: `validate` skips, naming the missing file,
`announce` skips with it, and no asset event is emitted.

* Re-validate one date: trigger with Params `date`, optionally `threshold`, and a `reason` (logged).
* Backfill (each day replaces its partitions, so re-running is safe). Backfill picks runs by trigger
  time; the run triggered at D+1 01:00 (logical date D 01:00) validates day D, so
  `airflow backfill create --dag-id ingest_interactions --from-date 2026-11-02 --to-date 2026-11-08T01:00`
  validates the days 2026-11-01 .. 2026-11-07 (checked with `--dry-run`: 7 runs).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from recflow.orchestration.defaults import DEFAULT_ARGS, START_DATE, daily_or_when_updated
from recflow.orchestration.ingest_tasks import announce, validate_day
from recflow.orchestration.landing_events import LANDED_INTERACTIONS

#: The run's Params: the trigger form in the UI, and what the REST API validates a run against.
PARAMS = {
    "date": Param(
        None,
        type=["null", "string"],
        format="date",
        description="Re-validate this UTC day (YYYY-MM-DD) instead of the run's day.",
    ),
    "threshold": Param(
        0.01, type="number", minimum=0, maximum=1, description="Max share of rows that may break row rules."
    ),
    "reason": Param("", type="string", description="Why this run was triggered (logged with the run)."),
}


@dag(
    dag_id="ingest_interactions",
    schedule=daily_or_when_updated("0 1 * * *", LANDED_INTERACTIONS),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=DEFAULT_ARGS,
    tags=["recflow", "ingestion"],
    doc_md=__doc__,
    params=PARAMS,
)
def ingest_interactions() -> None:
    announce(validate_day.override(task_id="validate")())


ingest_interactions()
