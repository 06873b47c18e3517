"""Start and stop the streaming scorer as a ``spark-submit`` process (used by the CLI, demo and tests).

The command is an argument list (no shell); the connector jars come from Maven via
:func:`recflow.services.spark_kafka_jars`. Credentials reach the job through the environment only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from recflow.airflow_env import pyspark_home
from recflow.config import project_root, state_dir


@dataclass
class StreamScorer:
    """A running scorer process and where it logs."""

    process: subprocess.Popen[bytes]
    log_path: Path
    ready_file: Path

    def wait_ready(self, timeout_s: float = 180.0) -> str:
        """Block until the first micro-batch ran; returns the serving version. Fails with the log's tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                return self.ready_file.read_text().strip()
            if self.process.poll() is not None:
                raise RuntimeError(f"streaming scorer exited with {self.process.returncode}; log: {self.log_path}")
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"streaming scorer not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group (driver and JVM), then SIGKILL what is left."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.ready_file.unlink(missing_ok=True)


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
    """Launch the scorer detached in its own process group; logs to ``<state>/logs/stream_scorer.log``."""
    import shutil

    from recflow.services import spark_kafka_jars

    base = state_dir() / "stream"
    checkpoint = base / "checkpoint"
    if fresh_checkpoint and checkpoint.exists():
        shutil.rmtree(checkpoint)
    ready = base / "ready"
    ready.unlink(missing_ok=True)
    log_path = state_dir() / "logs" / "stream_scorer.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = scorer_argv(spark_kafka_jars(), checkpoint=checkpoint, ready_file=ready)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})}
        )
    return StreamScorer(process, log_path, ready)
