"""The real scheduler path, as users drive it: ``airflow backfill create`` on PostgreSQL, twice.

``dag.test()`` (the other integration tests) runs tasks in-process on SQLite; it never exercises the
scheduler, the executor, the DAG processor or the execution API. Here a session-private Airflow home
points at a session-private database on the local PostgreSQL service, and real ``airflow api-server``,
``airflow scheduler`` (LocalExecutor) and ``airflow dag-processor`` processes run detached, each in its
own process group, logging under the session folder. The test lands 7 synthetic days, backfills them
(3 runs at a time) with ``recommender_training`` unpaused, and checks that the backfill emitted one asset
event and created one training run once it settled (the coalescing of ``ingest_tasks.announce``; the
training run is cancelled at once, training itself is tested elsewhere). It records the lake partitions'
checksums, backfills again with ``--reprocess-behavior completed`` and checks the partitions are
byte-identical with no duplicate ``event_id``. Teardown stops the processes and
asserts that no process with this Airflow home is left (task processes run in groups of their own, so
the check scans every process's environment rather than trusting the groups).

Needs the drivers Airflow 3 loads for PostgreSQL (``psycopg2`` for the ``postgresql+psycopg2://`` URL,
``asyncpg`` for the async engine it derives from it); hard dependencies, so the module fails without them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow_cluster import AirflowCluster, airflow_on_postgres, backfill, require_postgres_drivers, wait_backfill

from recflow.config.settings import Settings, load_settings
from recflow.data import synthetic
from recflow.data.lake import open_store
from recflow.validation import lake_partition

require_postgres_drivers()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "ingest_interactions"
TRAINING = "recommender_training"
#: How long the test keeps watching for more training runs once the backfill completed (scheduler loops).
SETTLE_S = 30.0
#: Landed days; the run triggered at D+1 01:00 validates day D (see the DAG's doc), hence the window below.
DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
FROM_DATE = "2026-11-02"
TO_DATE = "2026-11-08T01:00"
#: Generous: on a shared 2-core machine one validation takes from 5 s (idle) to a minute (loaded).
RUNS_TIMEOUT = 480.0


@pytest.fixture(scope="module")
def airflow_cluster(live_services: Settings) -> Iterator[AirflowCluster]:
    """api-server, scheduler and dag-processor on PostgreSQL with the LocalExecutor; stopped, no orphans."""
    home = load_settings().lake_root.parent / "airflow-scheduler"
    # the scheduler creates asset-triggered runs only with use_job_schedule (the cron runs it adds on
    # unpause find no data and skip; the test counts the asset-triggered runs)
    with airflow_on_postgres(live_services, home, "backfill", AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True") as cluster:
        yield cluster


def _backfill(cluster: AirflowCluster, *extra: str) -> int:
    return backfill(cluster, DAG_ID, FROM_DATE, TO_DATE, "--max-active-runs", "3", *extra)


def _wait_backfill(cluster: AirflowCluster, backfill_id: int) -> list[dict[str, Any]]:
    return wait_backfill(cluster, DAG_ID, backfill_id, RUNS_TIMEOUT)


def _training_runs(cluster: AirflowCluster) -> list[dict[str, Any]]:
    return list(cluster.request("GET", f"/api/v2/dags/{TRAINING}/dagRuns?limit=100")["dag_runs"])


def _cancel(cluster: AirflowCluster, runs: list[dict[str, Any]]) -> None:
    """Mark unfinished training runs failed, as a user does in the UI (this test counts runs, not models)."""
    for run in runs:
        if run["state"] in {"queued", "running"}:
            cluster.request("PATCH", f"/api/v2/dags/{TRAINING}/dagRuns/{run['dag_run_id']}", {"state": "failed"})


def _backfill_with_training(cluster: AirflowCluster) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """The first backfill with training unpaused: (its id, its runs, the training runs created until it settled)."""
    cluster.request("PATCH", f"/api/v2/dags/{TRAINING}", {"is_paused": False})
    try:
        backfill_id = _backfill(cluster)
        runs = _wait_backfill(cluster, backfill_id)
        settled = time.monotonic() + SETTLE_S
        while time.monotonic() < settled:  # a late event would create a run now: keep watching
            _cancel(cluster, _training_runs(cluster))
            time.sleep(2.0)
    finally:
        cluster.request("PATCH", f"/api/v2/dags/{TRAINING}", {"is_paused": True})
    training = _training_runs(cluster)
    _cancel(cluster, training)
    return backfill_id, runs, [r for r in training if r["run_type"] == "asset_triggered"]


def _assert_one_announcement(
    cluster: AirflowCluster, runs: list[dict[str, Any]], training: list[dict[str, Any]]
) -> None:
    """One ``announce`` emitted, the others skipped with the reason; one training run, fed by that event."""
    tis = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances?task_id=announce&limit=100")
    mine = {r["dag_run_id"] for r in runs}
    states = sorted(t["state"] for t in tis["task_instances"] if t["dag_run_id"] in mine)
    assert states == ["skipped"] * (len(DAYS) - 1) + ["success"], states
    print(f"asset-triggered training runs after a backfill of {len(DAYS)} days: {[r['dag_run_id'] for r in training]}")
    assert len(training) == 1, f"a backfill of {len(DAYS)} days must trigger one training run: {training}"
    path = f"/api/v2/dags/{TRAINING}/dagRuns/{training[0]['dag_run_id']}/upstreamAssetEvents"
    events = cluster.request("GET", path)["asset_events"]
    assert len(events) == 1, f"the training run must be fed by the one announcement: {events}"
    assert events[0]["extra"]["day"] in {str(d) for d in DAYS}, events


def _partitions(settings: Settings) -> dict[str, dict[str, str]]:
    lake = open_store(settings.lake_uri, settings.s3)
    return {str(day): lake.files(lake_partition(day)) for day in DAYS}


def _event_ids(settings: Settings) -> pd.Series:
    root = Path(settings.lake_uri)
    return pd.concat(
        pd.read_parquet(root / lake_partition(day), columns=["event_id"])["event_id"] for day in DAYS
    )  # fmt: skip


def test_backfill_through_the_scheduler_twice_leaves_identical_partitions(
    airflow_cluster: AirflowCluster, live_services: Settings
) -> None:
    settings = load_settings()
    assert "://" not in settings.lake_uri, "this test reads the session's local lake"
    synthetic.write_days(DAYS[0], DAYS[-1], settings.landing_uri, events_per_day=1_500, n_users=300, n_items=40)
    cluster = airflow_cluster
    cluster.wait_dag_parsed(DAG_ID)
    cluster.wait_dag_parsed(TRAINING)
    cluster.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

    began = time.monotonic()
    first_id, first_runs, training = _backfill_with_training(cluster)
    first_time = time.monotonic() - began
    assert len(first_runs) == len(DAYS) and all(r["state"] == "success" for r in first_runs), first_runs
    _assert_one_announcement(cluster, first_runs, training)
    first = _partitions(settings)
    assert all(first[str(day)] for day in DAYS), f"a day is missing from the lake: {first}"

    began = time.monotonic()
    second_id = _backfill(cluster, "--reprocess-behavior", "completed")
    assert second_id != first_id
    second_runs = _wait_backfill(cluster, second_id)
    second_time = time.monotonic() - began
    print(f"backfill of {len(DAYS)} days: {first_time:.1f}s; again (reprocess completed): {second_time:.1f}s")

    assert len(second_runs) == len(DAYS) and all(r["state"] == "success" for r in second_runs), second_runs
    first_ends = {r["dag_run_id"]: r["end_date"] for r in first_runs}
    rerun = [r["dag_run_id"] for r in second_runs if r["end_date"] != first_ends.get(r["dag_run_id"])]
    assert len(rerun) == len(DAYS), f"the second backfill did not re-run every day: {second_runs}"
    days_run = sorted(datetime.fromisoformat(r["logical_date"]).date() for r in second_runs)
    assert days_run == DAYS, f"the runs validated {days_run}, not the landed days"

    assert _partitions(settings) == first, "a re-run must leave byte-identical partitions"
    ids = _event_ids(settings)
    assert ids.is_unique, f"{ids.duplicated().sum()} duplicate event_ids in the lake"
    assert len(ids) == sum(open_store(settings.lake_uri, settings.s3).partition_rows(lake_partition(d)) or 0
                           for d in DAYS)  # fmt: skip
