"""Start, stop and inspect the HTTP API as a detached process (``recflow serve``, the demo, tests, bench).

As the Kafka scorer's launcher: ``python -m recflow.serving_http`` in its own session, stopped as a
whole group (the server and its workers), with a pid file that records the kernel start time. Whether it
is ready is asked over HTTP (``/v2/health/ready``), the way a load balancer would.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.config.settings import project_root, serve_port, state_dir
from recflow.services.process import (
    PidRecord,
    is_alive,
    read_live_pid,
    start_detached,
    stop_all_named,
    stop_named,
    stop_recorded,
)

DEFAULT_NAME = "serve"


def _paths(name: str) -> tuple[Path, Path]:
    return state_dir() / "run" / f"{name}.pid", state_dir() / "logs" / f"{name}.log"


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """(status, JSON body) of a GET; (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None


@dataclass
class ServerProcess:
    """A running HTTP API: its pid record, URL and log."""

    record: PidRecord
    url: str
    log_path: Path
    pid_path: Path

    @property
    def pid(self) -> int:
        return self.record.pid

    def alive(self) -> bool:
        return is_alive(self.record.pid)

    def readiness(self) -> tuple[int, Any]:
        return get_json(f"{self.url}/v2/health/ready")

    def model(self) -> dict[str, Any] | None:
        """The OIP model metadata (served version and digest), or None when not ready."""
        status, body = get_json(f"{self.url}/v2/models/recflow")
        return body if status == 200 else None

    def wait_ready(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Block until ``/v2/health/ready`` answers 200; returns the model metadata."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status, _ = self.readiness()
            model = self.model() if status == 200 else None
            if model is not None:
                return model
            if not self.alive():
                raise RuntimeError(f"the HTTP API exited before it was ready; log: {self.log_path}")
            time.sleep(0.2)
        raise TimeoutError(f"the HTTP API was not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to the group (requests in flight finish), SIGKILL after ``timeout_s``."""
        stop_recorded(self.pid_path, self.record, term_timeout=timeout_s)


def server_argv(port: int, workers: int, server: str | None = None) -> list[str]:
    """The exact command of the HTTP API process."""
    argv = [sys.executable, "-m", "recflow.serving_http", "--port", str(port), "--workers", str(workers)]
    return argv + (["--server", server] if server else [])


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def running_server(name: str = DEFAULT_NAME) -> ServerProcess | None:
    """The HTTP API ``name`` started under this state folder, if it still runs."""
    pid_file, log = _paths(name)
    record = read_live_pid(pid_file)
    if record is None:
        return None
    argv = list(record.argv)
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else serve_port()
    return ServerProcess(record, _url(port), log, pid_file)


def start_server(
    *,
    port: int | None = None,
    workers: int = 1,
    server: str | None = None,
    env: dict[str, str] | None = None,
    name: str = DEFAULT_NAME,
) -> ServerProcess:
    """Launch the HTTP API detached (one of that name already running is stopped first)."""
    stop_running_server(name)
    port = port if port is not None else serve_port()
    pid_file, log = _paths(name)
    record = start_detached(
        server_argv(port, workers, server),
        cwd=project_root(),
        log_path=log,
        pid_path=pid_file,
        env={**os.environ, **(env or {})},
    )
    return ServerProcess(record, _url(port), log, pid_file)


def stop_running_server(name: str = DEFAULT_NAME) -> bool:
    """Stop the HTTP API ``name`` of this state folder if it runs; True if one was running."""
    return stop_named(_paths(name)[0].parent, name)


def stop_all_servers() -> list[str]:
    """Stop every HTTP API of this state folder (``recflow services down``); returns their names."""
    return stop_all_named(state_dir() / "run", DEFAULT_NAME)
