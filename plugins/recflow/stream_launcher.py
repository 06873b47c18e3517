"""Start and stop the streaming scorer as a ``spark-submit`` process (used by the CLI, demo and tests).

The command is an argument list (no shell); the connector jars come from Maven via
:func:`recflow.services.spark_kafka_jars`. Credentials reach the job through the environment only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from recflow.airflow_env import pyspark_home
from recflow.config import project_root, state_dir
from recflow.services.process import PidRecord, is_alive, read_live_pid, start_detached, stop_group


@dataclass
class StreamScorer:
    """A running scorer process group and where it logs; its pid file lets a later run find it."""

    record: PidRecord
    log_path: Path
    ready_file: Path
    pid_file: Path

    def alive(self) -> bool:
        return is_alive(self.record.pid)

    def wait_ready(self, timeout_s: float = 180.0) -> str:
        """Block until the first micro-batch ran; returns the serving version. Fails naming the log."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                return self.ready_file.read_text().strip()
            if not self.alive():
                raise RuntimeError(f"streaming scorer exited before it was ready; log: {self.log_path}")
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"streaming scorer not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        """SIGTERM the process group (Python driver and JVM), then SIGKILL what is left."""
        stop_group(self.record.pid)
        self.pid_file.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)


def _paths() -> tuple[Path, Path, Path, Path]:
    base = state_dir() / "stream"
    return base / "checkpoint", base / "ready", state_dir() / "run" / "stream_scorer.pid", state_dir() / "logs"


def stop_running_scorer() -> bool:
    """Stop a scorer left by an earlier run (e.g. a demo killed midway); True if one was running."""
    _, ready, pid_file, _ = _paths()
    record = read_live_pid(pid_file)
    if record is None:
        return False
    stop_group(record.pid)
    pid_file.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    return True


def scorer_argv(jars: list[Path], *, checkpoint: Path, ready_file: Path, master: str = "local[2]") -> list[str]:
    """The exact ``spark-submit`` command of the scorer."""
    return [
        str(pyspark_home() / "bin" / "spark-submit"),
        "--master", master,
        "--jars", ",".join(str(j) for j in jars),
        "--conf", "spark.ui.enabled=false",
        str(project_root() / "spark_jobs" / "stream_score.py"),
        "--checkpoint", str(checkpoint),
        "--ready-file", str(ready_file),
    ]  # fmt: skip


def start_scorer(env: dict[str, str] | None = None, *, fresh_checkpoint: bool = True) -> StreamScorer:
    """Launch the scorer detached in its own process group; logs to ``<state>/logs/stream_scorer.log``.

    A scorer left running by an earlier, interrupted run is stopped first, so there is only ever one.
    """
    import shutil

    from recflow.services import spark_kafka_jars

    stop_running_scorer()
    checkpoint, ready, pid_file, logs = _paths()
    if fresh_checkpoint and checkpoint.exists():
        shutil.rmtree(checkpoint)
    ready.unlink(missing_ok=True)
    log_path = logs / "stream_scorer.log"
    argv = scorer_argv(spark_kafka_jars(), checkpoint=checkpoint, ready_file=ready)
    record = start_detached(
        argv, cwd=project_root(), log_path=log_path, pid_path=pid_file, env={**os.environ, **(env or {})}
    )
    return StreamScorer(record, log_path, ready, pid_file)
