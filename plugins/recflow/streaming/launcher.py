"""Start, stop and inspect the scorer as a detached process (``recflow scorer``, the demo, tests, bench).

The process runs ``python -m recflow.streaming`` in its own session, so it outlives the command that
started it and is stopped as a whole group. Its pid file (``<state>/run/scorer.pid``) records the
kernel start time, so a recycled pid is never mistaken for it; its status file (``<state>/run/
scorer.status.json``) is rewritten every second with the model version, lag and counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.config.settings import project_root, state_dir
from recflow.services.process import (
    PidRecord,
    is_alive,
    read_live_pid,
    start_detached,
    stop_all_named,
    stop_named,
    stop_recorded,
)

DEFAULT_NAME = "scorer"


def _paths(name: str = DEFAULT_NAME) -> tuple[Path, Path, Path]:
    """Pid file, status file and log of the scorer called ``name`` (tests run their own beside the user's)."""
    run = state_dir() / "run"
    return run / f"{name}.pid", run / f"{name}.status.json", state_dir() / "logs" / f"{name}.log"


@dataclass
class ScorerProcess:
    """A running scorer: its pid record, status file and log."""

    record: PidRecord
    status_path: Path
    log_path: Path
    pid_path: Path

    @property
    def pid(self) -> int:
        return self.record.pid

    def alive(self) -> bool:
        return is_alive(self.record.pid)

    def status(self) -> dict[str, Any] | None:
        """The scorer's last status, if it was written by this process."""
        try:
            doc: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return doc if doc.get("pid") == self.record.pid else None

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        """Block until the scorer serves a model and owns its partitions; returns the model version."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if status and status.get("model_version") and status.get("assigned_partitions"):
                return str(status["model_version"])
            if not self.alive():
                raise RuntimeError(f"the scorer exited before it was ready; log: {self.log_path}")
            time.sleep(0.2)
        raise TimeoutError(f"the scorer was not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def wait_version(self, version: str, timeout_s: float = 120.0) -> None:
        """Block until the scorer reports serving ``version`` (after a promotion)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if status and status.get("model_version") == version:
                return
            if not self.alive():
                raise RuntimeError(f"the scorer exited; log: {self.log_path}")
            time.sleep(0.2)
        raise TimeoutError(f"the scorer did not switch to {version} within {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the scorer delivers and commits what it holds), SIGKILL after ``timeout_s``."""
        stop_recorded(self.pid_path, self.record, term_timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed or committed (the fault tests use it)."""
        import signal

        os.killpg(self.record.pid, signal.SIGKILL)
        while self.alive():
            time.sleep(0.05)


def scorer_argv(status_path: Path, extra: list[str] | None = None) -> list[str]:
    """The exact command of the scorer process."""
    return [sys.executable, "-m", "recflow.streaming", "--status-file", str(status_path), *(extra or [])]


def running_scorer(name: str = DEFAULT_NAME) -> ScorerProcess | None:
    """The scorer ``name`` started under this state folder, if it still runs."""
    pid_file, status, log = _paths(name)
    record = read_live_pid(pid_file)
    return None if record is None else ScorerProcess(record, status, log, pid_file)


def start_scorer(
    env: dict[str, str] | None = None, *, extra_args: list[str] | None = None, name: str = DEFAULT_NAME
) -> ScorerProcess:
    """Launch the scorer ``name`` detached; one of that name already running is stopped first.

    More replicas of one service are more processes in the same consumer group (``--group``), each
    with its own name here or on its own host.
    """
    stop_running_scorer(name)
    pid_file, status, log = _paths(name)
    status.unlink(missing_ok=True)
    argv = scorer_argv(status, extra_args)
    record = start_detached(
        argv, cwd=project_root(), log_path=log, pid_path=pid_file, env={**os.environ, **(env or {})}
    )
    return ScorerProcess(record, status, log, pid_file)


def stop_running_scorer(name: str = DEFAULT_NAME) -> bool:
    """Stop the scorer ``name`` of this state folder if it runs; True if one was running."""
    return stop_named(_paths(name)[0].parent, name)


def stop_all_scorers() -> list[str]:
    """Stop every scorer of this state folder (``recflow services down``); returns their names."""
    return stop_all_named(state_dir() / "run", DEFAULT_NAME)
