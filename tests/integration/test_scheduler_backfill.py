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

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recflow.config import Settings, load_settings
from recflow.data import synthetic
from recflow.data.stores import open_store
from recflow.services import postgres_service, shared_services
from recflow.services.process import PidRecord, group_members, start_detached, stop_group, tail, wait_until
from recflow.validation import lake_partition

for _driver in ("psycopg2", "asyncpg"):  # Airflow 3 opens a sync and an async engine on the metadata DB
    pytest.importorskip(_driver, reason="Airflow on PostgreSQL needs psycopg2 and asyncpg: apache-airflow[postgres]")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAG_ID = "ingest_interactions"
#: Landed days; the run triggered at D+1 01:00 validates day D (see the DAG's doc), hence the window below.
DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
FROM_DATE = "2026-11-02"
TO_DATE = "2026-11-08T01:00"
COMPONENTS = ("api-server", "scheduler", "dag-processor")
START_TIMEOUT = 120.0
RUNS_TIMEOUT = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment has ``key=value`` (ours: the same user, or any when root)."""
    wanted = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours to read
        if state != "Z":
            found.append(int(entry.name))
    return found


@dataclass
class AirflowCluster:
    """The running components, their environment and a small REST client (token from the API server)."""

    home: Path
    env: dict[str, str]
    port: int
    logs: Path
    records: dict[str, PidRecord] = field(default_factory=dict)
    _token: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` CLI of the venv with the cluster's environment (argument list, no shell)."""
        argv = [str(Path(sys.executable).parent / "airflow"), *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._token is None:
            # ``simple_auth_manager_all_admins``: the API server hands out an admin token without credentials.
            with urllib.request.urlopen(f"{self.base_url}/auth/token", timeout=10) as resp:
                self._token = json.load(resp)["access_token"]
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=20) as resp:
            return json.load(resp)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
            result: dict[str, Any] = json.load(resp)
            return result

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} ({self.logs / f'{name}.log'}) ---\n{tail(self.logs / f'{name}.log', 25)}"
                         for name in COMPONENTS)  # fmt: skip


@pytest.fixture(scope="module")
def pg_database(live_services: Settings) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh database on the local PostgreSQL service, dropped afterwards."""
    service = postgres_service(live_services)
    with shared_services(live_services, services=[service]):
        name = f"airflow_test_{os.getpid()}_{int(time.time())}"
        service.create_database(name)
        try:
            yield service.sqlalchemy_url(name)
        finally:
            service.drop_database(name)


@pytest.fixture(scope="module")
def airflow_cluster(pg_database: str) -> Iterator[AirflowCluster]:
    """api-server, scheduler and dag-processor on PostgreSQL with the LocalExecutor; stopped, no orphans."""
    session = load_settings().lake_root.parent
    home = session / "airflow-scheduler"
    logs = home / "component-logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_database,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # two cores: more task processes only queue for CPU
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # Task processes talk to the execution API with JWTs the scheduler signs and the API server checks.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # Only backfill runs: the cron schedule would add a run for today, whose landing file does not exist.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }
    cluster = AirflowCluster(home=home, env=env, port=port, logs=logs)
    began = time.monotonic()
    migrate = cluster.airflow("db", "migrate")
    (logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}"
    print(f"\nairflow db migrate on PostgreSQL: {time.monotonic() - began:.1f}s")
    airflow_bin = str(Path(sys.executable).parent / "airflow")
    try:
        for name in COMPONENTS:
            cluster.records[name] = start_detached(
                [airflow_bin, name],
                cwd=home,
                log_path=logs / f"{name}.log",
                pid_path=home / "run" / f"{name}.pid",
                env=env,
            )

        def healthy() -> bool:
            try:
                health = cluster.health()
            except (OSError, ValueError):
                return False
            return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler"))

        assert wait_until(healthy, START_TIMEOUT, interval=1.0), f"Airflow not healthy:\n{cluster.log_tails()}"
        print(f"Airflow components healthy after {time.monotonic() - began:.1f}s")
        yield cluster
    finally:
        for name, rec in cluster.records.items():
            stop_group(rec.pid, term_timeout=30)
            assert not group_members(rec.pid), f"{name} left processes in its group"
        left = processes_with_env("AIRFLOW_HOME", str(home))
        if left:  # kill what we started so the session is not polluted, then fail loudly
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        assert not left, f"processes {left} with AIRFLOW_HOME={home} outlived the Airflow components"


def _wait_dag_parsed(cluster: AirflowCluster) -> None:
    def parsed() -> bool:
        try:
            cluster.request("GET", f"/api/v2/dags/{DAG_ID}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    assert wait_until(parsed, START_TIMEOUT, interval=1.0), f"{DAG_ID} never parsed:\n{cluster.log_tails()}"
    errors = cluster.request("GET", "/api/v2/importErrors")
    assert errors["total_entries"] == 0, f"import errors: {errors['import_errors']}"


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
        bad = [ti for ti in tis if ti["state"] in {"failed", "up_for_retry", "upstream_failed"}]
        if bad:
            ti = bad[0]
            log = (
                cluster.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={ti['dag_run_id']}" / "task_id=validate"
                / f"attempt={max(1, ti['try_number'])}.log"
            )  # fmt: skip
            pytest.fail(f"task {ti['dag_run_id']}/{ti['task_id']} is {ti['state']}; log {log}:\n{tail(log, 40)}")
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
    _wait_dag_parsed(cluster)
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
