"""RECFLOW_FAULTS: parsed strictly, applied only at the named point; actions on services are in
tests/integration/test_faults.py (they stop the real servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recflow.config.settings import fault_environment, load_settings
from recflow.services.faults import EXECUTOR_CLASS, Fault, InjectedFault, executor_processes, hit, parse
from recflow.services.manager import pid_file, spark_cluster
from recflow.services.process import is_alive, start_detached, stop_group, wait_until


def test_entries_are_parsed_with_aliases() -> None:
    assert parse("lake.publish.before_commit=stop:s3; scorer.dead_letter=kill:broker,") == [
        Fault("lake.publish.before_commit", "stop", "s3"),
        Fault("scorer.dead_letter", "kill", "kafka"),
    ]
    assert parse("") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lake.publish.before_commit", "is not point=action:target"),
        ("lake.publish.after_commit=stop:s3", "unknown point"),
        ("scorer.fetch=explode:s3", "unknown action"),
    ],
)
def test_a_malformed_spec_is_an_error(spec: str, message: str) -> None:
    with pytest.raises(InjectedFault, match=message):
        parse(spec)


def test_a_point_fires_only_its_own_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=raise:registry gone")
    hit("lake.publish.before_commit")  # another point: nothing happens
    with pytest.raises(InjectedFault, match=r"fault injected at scorer\.fetch: registry gone"):
        hit("scorer.fetch")
    with pytest.raises(InjectedFault, match="unknown fault point"):
        hit("scorer.typo")


def test_stopping_a_service_that_is_not_running_does_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=stop:s3")
    hit("scorer.fetch")
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=stop:nosuch")
    with pytest.raises(InjectedFault, match="no local service named 'nosuch'"):
        hit("scorer.fetch")


def test_a_count_limits_how_often_an_entry_fires(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse("scorer.fetch=raise:x*2") == [Fault("scorer.fetch", "raise", "x", 2)]
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=raise:only twice*2")
    for _ in range(2):
        with pytest.raises(InjectedFault):
            hit("scorer.fetch")
    hit("scorer.fetch")  # the third time it no longer fires


def test_a_ledger_shares_the_count_between_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Spark executor's retry runs in another process: with a ledger, ``*1`` fires once in all of them."""
    monkeypatch.setenv("RECFLOW_FAULTS", "batch.score.partition=raise:executor lost*1")
    monkeypatch.setenv("RECFLOW_FAULTS_LEDGER", str(tmp_path / "ledger"))
    other = [sys.executable, "-c", "from recflow.services.faults import hit; hit('batch.score.partition')"]
    first = subprocess.run(other, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode != 0 and "executor lost" in first.stderr
    hit("batch.score.partition")  # this process never fired it, but the ledger says it did
    assert subprocess.run(other, capture_output=True, timeout=60, check=False).returncode == 0
    monkeypatch.setenv("RECFLOW_FAULTS_LEDGER", str(tmp_path / "another-ledger"))
    with pytest.raises(InjectedFault, match="executor lost"):  # a new ledger: a new count
        hit("batch.score.partition")


def test_the_plan_reaches_spark_executors_only_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFLOW_FAULTS", raising=False)
    assert fault_environment() == {}
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.setenv("RECFLOW_FAULTS", "batch.score.partition=kill:spark-executor*1")
    monkeypatch.setenv("RECFLOW_FAULTS_LEDGER", str(tmp_path / "ledger"))
    assert fault_environment() == {
        "RECFLOW_FAULTS": "batch.score.partition=kill:spark-executor*1",
        "RECFLOW_STATE": str(tmp_path),
        "RECFLOW_FAULTS_LEDGER": str(tmp_path / "ledger"),
    }


#: A stand-in worker: its child carries the executor's main class in its argument list, as a JVM does.
_WORKER = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{EXECUTOR_CLASS}"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_kill_spark_executor_kills_the_executors_and_spares_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    worker_service = next(s for s in spark_cluster(load_settings()) if s.name == "spark-worker")
    log_path = tmp_path / "worker.log"
    worker = start_detached([sys.executable, "-c", _WORKER], cwd=tmp_path, log_path=log_path,
                            pid_path=pid_file(tmp_path, worker_service))  # fmt: skip
    try:
        assert wait_until(lambda: log_path.read_text().strip().isdigit(), 30), log_path.read_text()
        executor = int(log_path.read_text())
        assert executor_processes() == [executor]
        monkeypatch.setenv("RECFLOW_FAULTS", "batch.score.partition=kill:spark-executor")
        hit("batch.score.partition")
        assert wait_until(lambda: not is_alive(executor), 10), "the executor survived"
        assert is_alive(worker.pid), "the worker must survive its executor"
        assert executor_processes() == []
        hit("batch.score.partition")  # no executor left: nothing to kill, no error
    finally:
        stop_group(worker.pid)
