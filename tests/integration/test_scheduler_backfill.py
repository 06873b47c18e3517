"""The real scheduler path, as users drive it: ``airflow backfill create`` on PostgreSQL, twice.

``dag.test()`` (the other integration tests) runs tasks in-process on SQLite; it never exercises the
scheduler, the executor, the DAG processor or the execution API. Here a session-private Airflow home
points at a session-private database on the local PostgreSQL service, and real ``airflow api-server``,
``airflow scheduler`` (LocalExecutor) and ``airflow dag-processor`` processes run detached, each in its
own process group, logging under the session folder. The test lands 7 synthetic days, backfills them,
records the lake partitions' checksums, backfills again with ``--reprocess-behavior completed`` and
checks the partitions are byte-identical with no duplicate ``event_id``. Teardown stops the processes and
asserts that no process with this Airflow home is left (task processes run in groups of their own, so
the check scans every process's environment rather than trusting the groups).

Needs the drivers Airflow 3 loads for PostgreSQL (``psycopg2`` for the ``postgresql+psycopg2://`` URL,
``asyncpg`` for the async engine it derives from it); skipped, saying so, without them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow_cluster import (
    AirflowCluster,
    airflow_environment,
    fail_on_bad_task,
    free_port,
    fresh_database,
    run_airflow,
)

from recflow.config import Settings, load_settings
from recflow.data import synthetic
from recflow.data.stores import open_store
from recflow.validation import lake_partition

for _driver in ("psycopg2", "asyncpg"):  # Airflow 3 opens a sync and an async engine on the metadata DB
    pytest.importorskip(_driver, reason="Airflow on PostgreSQL needs psycopg2 and asyncpg: apache-airflow[postgres]")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "ingest_interactions"
#: Landed days; the run triggered at D+1 01:00 validates day D (see the DAG's doc), hence the window below.
DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
FROM_DATE = "2026-11-02"
TO_DATE = "2026-11-08T01:00"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
#: Generous: on a shared 2-core machine one validation takes from 5 s (idle) to a minute (loaded).
RUNS_TIMEOUT = 480.0


@pytest.fixture(scope="module")
def airflow_cluster(live_services: Settings) -> Iterator[AirflowCluster]:
    """api-server, scheduler and dag-processor on PostgreSQL with the LocalExecutor; stopped, no orphans."""
    home = load_settings().lake_root.parent / "airflow-scheduler"
    with (
        fresh_database(live_services, "backfill") as url,
        run_airflow(home, airflow_environment(home, url, free_port()), COMPONENTS) as cluster,
    ):
        yield cluster


def _backfill(cluster: AirflowCluster, *extra: str) -> int:
    """``airflow backfill create`` as a user types it; returns the new backfill's id."""
    done = cluster.airflow(
        "backfill", "create", "--dag-id", DAG_ID, "--from-date", FROM_DATE, "--to-date", TO_DATE,
        "--max-active-runs", "3", *extra,
    )  # fmt: skip
    assert done.returncode == 0, f"backfill create failed:\n{(done.stdout + done.stderr)[-3000:]}"
    backfills = cluster.request("GET", f"/api/v2/backfills?dag_id={DAG_ID}&order_by=-id")["backfills"]
    return int(max(b["id"] for b in backfills))


def _wait_backfill(cluster: AirflowCluster, backfill_id: int) -> list[dict[str, Any]]:
    """Wait until the backfill completed; fail at once (with the task log) when a task fails or retries."""
    deadline = time.monotonic() + RUNS_TIMEOUT
    while True:
        backfill = cluster.request("GET", f"/api/v2/backfills/{backfill_id}")
        tis = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances?limit=100")["task_instances"]
        fail_on_bad_task(cluster, DAG_ID, tis)
        if backfill["completed_at"]:
            runs = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
            return [r for r in runs if r["run_type"] == "backfill"]
        if time.monotonic() > deadline:
            pytest.fail(f"backfill {backfill_id} not complete in {RUNS_TIMEOUT:.0f}s: {tis}\n{cluster.log_tails()}")
        time.sleep(2.0)


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
    cluster.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})

    began = time.monotonic()
    first_id = _backfill(cluster)
    first_runs = _wait_backfill(cluster, first_id)
    first_time = time.monotonic() - began
    assert len(first_runs) == len(DAYS) and all(r["state"] == "success" for r in first_runs), first_runs
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
