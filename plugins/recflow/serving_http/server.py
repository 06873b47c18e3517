"""The HTTP API process: ``python -m recflow.serving_http [--host H] [--port P] [--workers N] [--server S]``.

``recflow serve start`` runs it detached. It runs the app under uvicorn (the default, chosen by
``bench/results/serving_stack.md``: on a quiet machine p99 3.2 ms at 1,000 req/s against granian's 8.2) or
granian, with ``--workers`` processes sharing one socket; each
worker loads and follows the champion itself. Before the workers start, it prepares what they share:
the readiness markers (``RECFLOW_SERVE_READY_DIR``) and the metrics files (``PROMETHEUS_MULTIPROC_DIR``),
both emptied so nothing of an earlier run counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from recflow.config.settings import serve_port, state_dir

APP = "recflow.serving_http.app:create_app"
SERVERS = ("uvicorn", "granian")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m recflow.serving_http", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default RECFLOW_SERVE_PORT (8000)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("RECFLOW_SERVE_WORKERS", "1")))
    parser.add_argument("--server", choices=SERVERS, default=os.environ.get("RECFLOW_SERVE_SERVER", "uvicorn"))
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    return args


def shared_folders(run_dir: Path, workers: int) -> dict[str, str]:
    """Fresh readiness and metrics folders for this run's workers, as the environment they read."""
    env = {"RECFLOW_SERVE_WORKERS": str(workers)}
    for name, var in (("ready", "RECFLOW_SERVE_READY_DIR"), ("metrics", "PROMETHEUS_MULTIPROC_DIR")):
        folder = run_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        env[var] = str(folder)
    return env


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT (the servers handle both, finishing requests in flight)."""
    args = _parse_args(argv)
    port = args.port if args.port is not None else serve_port()
    os.environ.update(shared_folders(state_dir() / "run" / f"serve-{port}", args.workers))
    if args.server == "uvicorn":
        import uvicorn

        uvicorn.run(APP, factory=True, host=args.host, port=port, workers=args.workers, access_log=False)
        return 0
    from granian import Granian
    from granian.constants import Interfaces

    Granian(APP, address=args.host, port=port, interface=Interfaces.ASGI, workers=args.workers, factory=True).serve()
    return 0
