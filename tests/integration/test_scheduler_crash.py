"""The Airflow scheduler killed in the middle of a run: after a restart the run finishes, outputs unchanged.

Real components on PostgreSQL with the LocalExecutor (``airflow_cluster``). An ``ingest_interactions``
run validates a landed day undisturbed; a second run re-validates the same day, and while its
``validate`` task runs the scheduler is SIGKILLed with every process it started (the executor's workers
and the task process: a lost host or container). A new scheduler then finds the dead scheduler's
running task (``adopt_or_reset_orphaned_tasks`` once the old scheduler's heartbeat is
``scheduler_health_check_threshold`` old), resets it and runs it again; the run succeeds, and the lake
partition it commits is byte-identical to the undisturbed run's.

Settings that make it take seconds rather than minutes: ``orphaned_tasks_check_interval`` 5 s (default
300 s: a production scheduler resumes within 5 minutes). Nothing else differs from production.
"""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from airflow_cluster import AirflowCluster, airflow_on_postgres, crash, require_postgres_drivers, start_component

from recflow.config.settings import Settings, load_settings
from recflow.data import synthetic
from recflow.data.lake import LocalLake
from recflow.validation import lake_partition

require_postgres_drivers()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DAG_ID = "ingest_interactions"
DAY = date(2026, 11, 3)
#: Large enough that ``validate`` runs for several seconds, so the crash lands inside it.
EVENTS = 80_000
RUN_TIMEOUT = 600.0


@pytest.fixture(scope="module")
def zone() -> dict[str, Path]:
    """This module's landing zone (one day landed) and lake."""
    root = load_settings().lake_root.parent / "scheduler-crash"
    zone = {"landing": root / "landing", "lake": root / "lake"}
    synthetic.write_days(DAY, DAY, zone["landing"], events_per_day=EVENTS, n_users=500, n_items=60)
    return zone


@pytest.fixture(scope="module")
def cluster(live_services: Settings, zone: dict[str, Path]) -> Iterator[AirflowCluster]:
    home = zone["lake"].parent / "airflow"
    overrides = {
        "RECFLOW_LAKE": str(zone["lake"]),
        "RECFLOW_LANDING": str(zone["landing"]),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    }
    with airflow_on_postgres(live_services, home, "crash", **overrides) as running:
        running.wait_dag_parsed(DAG_ID)
        running.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        yield running


def _trigger(cluster: AirflowCluster, hour: int) -> str:
    """A run that validates ``DAY`` (Params ``date``); ``hour`` keeps the runs' logical dates apart."""
    body = {
        "logical_date": datetime(2026, 11, 4, hour, tzinfo=UTC).isoformat(),
        "conf": {"date": str(DAY), "reason": "scheduler crash test"},
    }
    return str(cluster.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", body)["dag_run_id"])


def _get(cluster: AirflowCluster, path: str) -> Any:
    """GET through the REST API, asking again when the API server is too busy to answer in time (a loaded
    2-core machine); an HTTP error status is an answer and fails the test."""
    for _ in range(5):
        try:
            return cluster.request("GET", path)
        except urllib.error.HTTPError:
            raise
        except OSError as exc:  # timed out, connection reset
            print(f"GET {path}: {exc}; asking again")
            time.sleep(2.0)
    return cluster.request("GET", path)


def _validate(cluster: AirflowCluster, run_id: str) -> dict[str, Any]:
    ti: dict[str, Any] = _get(cluster, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/validate")
    return ti


def _wait_success(cluster: AirflowCluster, run_id: str) -> dict[str, Any]:
    """Wait for the run to end; a failed run or task fails the test at once (retries may happen)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = _get(cluster, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        tis = _get(cluster, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
        states = {t["task_id"]: t["state"] for t in tis}
        assert run["state"] != "failed" and "failed" not in states.values(), f"{states}\n{cluster.log_tails()}"
        if run["state"] == "success":
            return run
        assert time.monotonic() < deadline, (
            f"run {run_id} not done in {RUN_TIMEOUT:.0f}s: {states}\n{cluster.log_tails()}"
        )
        time.sleep(2.0)


def test_a_run_whose_scheduler_was_killed_resumes_after_a_restart_with_identical_outputs(
    cluster: AirflowCluster, zone: dict[str, Path]
) -> None:
    lake = LocalLake(zone["lake"])
    part = lake_partition(DAY)
    _wait_success(cluster, _trigger(cluster, 1))
    calm = lake.files(part)
    calm_commit = (zone["lake"] / part).resolve()
    assert calm, "the undisturbed run published nothing"

    run_id = _trigger(cluster, 2)
    deadline = time.monotonic() + RUN_TIMEOUT
    while (state := _validate(cluster, run_id)["state"]) != "running":
        assert state in {None, "scheduled", "queued"}, f"validate is {state} before the crash"
        assert time.monotonic() < deadline, "validate never started"
        time.sleep(0.2)
    killed = crash(cluster, "scheduler")
    assert _validate(cluster, run_id)["state"] == "running", "validate ended before the crash: nothing was tested"
    print(f"killed the scheduler's tree while validate ran: {killed}")

    start_component(cluster, "scheduler")
    _wait_success(cluster, run_id)
    ti = _validate(cluster, run_id)
    tries = _get(cluster, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/validate/tries")
    states = [t["state"] for t in tries["task_instances"]]
    assert ti["try_number"] >= 2 and states[-1] == "success", f"the killed try was not run again: {states}"
    assert "success" not in states[:-1], f"the killed try must not count as a success: {states}"

    assert lake.files(part) == calm, "the resumed run must publish the undisturbed run's bytes"
    assert (zone["lake"] / part).resolve() != calm_commit, "the resumed run committed no attempt of its own"
