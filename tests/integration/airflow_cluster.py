"""Real Airflow components for scheduler-path tests: shared by the backfill tests and the cluster test.

``dag.test()`` runs tasks in-process on SQLite; it never exercises the scheduler, the executor, the DAG
processor or the execution API. :func:`run_airflow` starts real ``airflow`` components detached, each in
its own process group, logging under the Airflow home, on a metadata database of their own, and stops
them afterwards, asserting that no process with this Airflow home is left (task processes run in
groups of their own, so the check scans every process's environment rather than trusting the groups).
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recflow.services.local_airflow import SCHEDULING
from recflow.services.process import (
    PidRecord,
    descendants,
    group_members,
    is_alive,
    start_detached,
    stop_group,
    tail,
    wait_until,
)

START_TIMEOUT = 180.0
#: The components the scheduler path needs; the cluster test adds the triggerer.
SCHEDULER_PATH = ("api-server", "scheduler", "dag-processor")


def require_postgres_drivers() -> None:
    """Import the drivers Airflow 3 loads for PostgreSQL: ``psycopg2`` for the ``postgresql+psycopg2://``
    URL, ``asyncpg`` for the async engine it derives. They are hard dependencies (apache-airflow[postgres]),
    so a missing one fails the calling test with its ImportError instead of skipping it."""
    import asyncpg  # noqa: F401
    import psycopg2  # noqa: F401


def free_port() -> int:
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
    components: tuple[str, ...]
    records: dict[str, PidRecord] = field(default_factory=dict)
    _token: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` CLI of the venv with the cluster's environment (argument list, no shell)."""
        argv = [str(Path(sys.executable).parent / "airflow"), *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def token(self) -> str:
        """A JWT from ``/auth/token`` (``simple_auth_manager_all_admins``: no credentials needed)."""
        if self._token is None:
            with urllib.request.urlopen(f"{self.base_url}/auth/token", timeout=10) as resp:
                self._token = str(json.load(resp)["access_token"])
        return self._token

    def login(self, username: str, password: str) -> str:
        """A JWT from ``POST /auth/token`` for one of the simple auth manager's users."""
        req = urllib.request.Request(
            f"{self.base_url}/auth/token",
            method="POST",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.load(resp)["access_token"])

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=20) as resp:
            return json.load(resp)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as resp:
            result: dict[str, Any] = json.load(resp)
            return result

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} ({self.logs / f'{name}.log'}) ---\n{tail(self.logs / f'{name}.log', 25)}"
                         for name in self.components)  # fmt: skip

    def wait_dag_parsed(self, dag_id: str) -> None:
        def parsed() -> bool:
            try:
                self.request("GET", f"/api/v2/dags/{dag_id}")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return False
                raise
            return True

        assert wait_until(parsed, START_TIMEOUT, interval=1.0), f"{dag_id} never parsed:\n{self.log_tails()}"
        errors = self.request("GET", "/api/v2/importErrors")
        assert errors["total_entries"] == 0, f"import errors: {errors['import_errors']}"


def crash(cluster: AirflowCluster, name: str) -> list[int]:
    """SIGKILL a component with every process it started (the LocalExecutor's workers, their task
    processes, which lead groups of their own), as the loss of its host or container would; the pids."""
    rec = cluster.records.pop(name)
    tree = sorted({*group_members(rec.pid), *descendants(rec.pid)})
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(is_alive(pid) for pid in tree), 30), f"{name}: {tree} survived SIGKILL"
    return tree


def start_component(cluster: AirflowCluster, name: str) -> None:
    """``airflow <name>`` detached, logging to ``<logs>/<name>.log`` (a restart keeps the earlier log as
    ``<name>.log.1``)."""
    cluster.records[name] = start_detached(
        [str(Path(sys.executable).parent / "airflow"), name],
        cwd=cluster.home,
        log_path=cluster.logs / f"{name}.log",
        pid_path=cluster.home / "run" / f"{name}.pid",
        env=cluster.env,
    )


def airflow_environment(home: Path, database_url: str, port: int, **overrides: str) -> dict[str, str]:
    """What production sets: PostgreSQL, the LocalExecutor, the API on ``port``, a shared JWT secret."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",  # two cores: more task processes only queue for CPU
        **SCHEDULING,  # what `make airflow` and the compose stack use (recflow.services.local_airflow)
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # Task processes talk to the execution API with JWTs the scheduler signs and the API server checks.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        # Only the runs a test asks for: the cron schedules would add runs for today, which has no data.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        **overrides,
    }


@contextlib.contextmanager
def run_airflow(home: Path, env: dict[str, str], components: Sequence[str]) -> Iterator[AirflowCluster]:
    """``airflow db migrate``, then ``components`` detached; healthy on return, stopped (no orphans) after."""
    logs = home / "component-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cluster = AirflowCluster(
        home=home, env=env, port=int(env["AIRFLOW__API__PORT"]), logs=logs, components=tuple(components)
    )
    began = time.monotonic()
    migrate = cluster.airflow("db", "migrate")
    (logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
    assert migrate.returncode == 0, f"airflow db migrate failed:\n{(migrate.stdout + migrate.stderr)[-3000:]}"
    print(f"\nairflow db migrate on PostgreSQL: {time.monotonic() - began:.1f}s")
    try:
        for name in components:
            start_component(cluster, name)
        parts = ["metadatabase", *(c for c in ("scheduler", "triggerer") if c in components)]

        def healthy() -> bool:
            try:
                health = cluster.health()
            except (OSError, ValueError):
                return False
            return all(health.get(part, {}).get("status") == "healthy" for part in parts)

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


def task_log(cluster: AirflowCluster, dag_id: str, ti: dict[str, Any]) -> Path:
    """Where the scheduler's task runner wrote a task instance's log."""
    index = f"/map_index={ti['map_index']}" if ti.get("map_index", -1) >= 0 else ""
    return (
        cluster.home / "logs" / f"dag_id={dag_id}" / f"run_id={ti['dag_run_id']}" / f"task_id={ti['task_id']}{index}"
        / f"attempt={max(1, ti['try_number'])}.log"
    )  # fmt: skip


def fail_on_bad_task(cluster: AirflowCluster, dag_id: str, tis: list[dict[str, Any]]) -> None:
    """Fail at once (with the task log) when a task failed or is retrying: waiting on would only hide it."""
    bad = [ti for ti in tis if ti["state"] in {"failed", "up_for_retry", "upstream_failed"}]
    if bad:
        ti = bad[0]
        log = task_log(cluster, dag_id, ti)
        pytest.fail(f"task {ti['dag_run_id']}/{ti['task_id']} is {ti['state']}; log {log}:\n{tail(log, 60)}")


def backfill(cluster: AirflowCluster, dag_id: str, from_date: str, to_date: str, *extra: str) -> int:
    """``airflow backfill create`` as a user types it; returns the new backfill's id."""
    done = cluster.airflow("backfill", "create", "--dag-id", dag_id, "--from-date", from_date, "--to-date", to_date,
                           *extra)  # fmt: skip
    assert done.returncode == 0, f"backfill create failed:\n{(done.stdout + done.stderr)[-3000:]}"
    backfills = cluster.request("GET", f"/api/v2/backfills?dag_id={dag_id}&order_by=-id")["backfills"]
    return int(max(b["id"] for b in backfills))


def wait_backfill(cluster: AirflowCluster, dag_id: str, backfill_id: int, timeout: float) -> list[dict[str, Any]]:
    """Wait until the backfill completed; fail at once (with the task log) when a task fails or retries.

    Returns the DAG's backfill runs (all backfills of the DAG, newest state of each run).
    """
    deadline = time.monotonic() + timeout
    while True:
        state = cluster.request("GET", f"/api/v2/backfills/{backfill_id}")
        tis = cluster.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?limit=100")["task_instances"]
        fail_on_bad_task(cluster, dag_id, tis)
        if state["completed_at"]:
            runs = cluster.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]
            return [r for r in runs if r["run_type"] == "backfill"]
        if time.monotonic() > deadline:
            pytest.fail(f"backfill {backfill_id} not complete in {timeout:.0f}s: {tis}\n{cluster.log_tails()}")
        time.sleep(2.0)


@contextlib.contextmanager
def fresh_database(settings: Any, label: str) -> Iterator[str]:
    """A SQLAlchemy URL of a new database on the local PostgreSQL service, dropped afterwards."""
    from recflow.services import postgres_service, shared_services

    service = postgres_service(settings)
    with shared_services(settings, services=[service]):
        name = f"airflow_{label}_{os.getpid()}_{int(time.time())}"
        service.create_database(name)
        try:
            yield service.sqlalchemy_url(name)
        finally:
            service.drop_database(name)


@contextlib.contextmanager
def airflow_on_postgres(
    settings: Any, home: Path, label: str, components: Sequence[str] = SCHEDULER_PATH, **overrides: str
) -> Iterator[AirflowCluster]:
    """``components`` on a new PostgreSQL database (dropped afterwards) and a free API port, with the
    production environment plus ``overrides``: the one set-up every scheduler-path test module shares."""
    with (
        fresh_database(settings, label) as url,
        run_airflow(home, airflow_environment(home, url, free_port(), **overrides), components) as cluster,
    ):
        yield cluster


def _ts(raw: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() if raw else None


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def overhead_report(
    runs: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]], edges: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    """Airflow's share of each run's wall time, from the REST API's run and task-instance timestamps.

    Definitions (seconds; a task's interval is its ``start_date``..``end_date`` as the task runner
    reports them, so a task's own process start-up counts as task time, not overhead):

    * ``wall_s``: the run's ``start_date``..``end_date``.
    * ``busy_s``: the union of the intervals of its task instances that executed (success, or skipped by
      their own check, e.g. ``confirm_streaming_scorer`` for a pinned version; parallel tasks counted once).
    * ``overhead_share`` = (wall - busy) / wall: the share of the run in which no task of it executed,
      i.e. time spent scheduling, queueing and handing tasks to the executor.
      ``overhead_share_success_only`` counts only successful tasks as busy (the first definition used).
    * ``lead_s``: run start to its first task's start; ``tail_s``: last task's end to the run's end.
    * ``gaps``: for each dependency edge, the downstream task's start minus the end of the last upstream
      instance (all map indexes); ``median_gap_s`` is their median.
    """
    import statistics

    report: dict[str, Any] = {"definitions": (overhead_report.__doc__ or "").strip(), "dags": {}}
    for dag_id, (run, tis) in runs.items():
        wall_start, wall_end = _ts(run["start_date"]), _ts(run["end_date"])
        assert wall_start is not None and wall_end is not None, f"{dag_id} run has no start/end: {run}"
        spans: dict[str, list[tuple[float, float]]] = {}
        succeeded: list[tuple[float, float]] = []
        for ti in tis:
            start, end = _ts(ti.get("start_date")), _ts(ti.get("end_date"))
            if start is not None and end is not None and ti["state"] in {"success", "skipped"} and end > start:
                spans.setdefault(ti["task_id"], []).append((start, end))
                if ti["state"] == "success":
                    succeeded.append((start, end))
        busy = _union_seconds([span for task in spans.values() for span in task])
        first_start = min(s for task in spans.values() for s, _ in task)
        last_end = max(e for task in spans.values() for _, e in task)
        gaps = {
            f"{up}>{down}": round(min(s for s, _ in spans[down]) - max(e for _, e in spans[up]), 3)
            for up, down in edges[dag_id]
            if up in spans and down in spans
        }
        wall = wall_end - wall_start
        report["dags"][dag_id] = {
            "run_id": run["dag_run_id"],
            "wall_s": round(wall, 3),
            "busy_s": round(busy, 3),
            "overhead_s": round(wall - busy, 3),
            "overhead_share": round((wall - busy) / wall, 4) if wall > 0 else 0.0,
            "overhead_share_success_only": round((wall - _union_seconds(succeeded)) / wall, 4) if wall > 0 else 0.0,
            "lead_s": round(first_start - wall_start, 3),
            "tail_s": round(wall_end - last_end, 3),
            "gaps": gaps,
            "median_gap_s": round(statistics.median(gaps.values()), 3) if gaps else None,
            "tasks": {task: round(sum(e - s for s, e in spans[task]), 3) for task in sorted(spans)},
        }
    return report
