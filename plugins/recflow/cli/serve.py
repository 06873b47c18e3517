"""``recflow serve start|stop|status``: the HTTP API's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys

from recflow.config.identities import process_environment
from recflow.config.settings import state_dir
from recflow.serving_http.launcher import running_server, start_server, stop_running_server


def _start(args: argparse.Namespace) -> int:
    env = process_environment("scorer", os.environ, state_dir())  # it reads the registry, like the scorer
    server = start_server(port=args.port, workers=args.workers, server=args.server, env=env)
    print(f"HTTP API starting at {server.url}, pid {server.pid} (log: {server.log_path})")
    try:
        model = server.wait_ready(args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"recflow serve: {exc}", file=sys.stderr)
        server.stop()
        return 1
    digest = model["parameters"]["model_digest"]
    print(f"HTTP API ready at {server.url}, serving {model['versions'][0]} (digest {digest})")
    return 0


def _stop(args: argparse.Namespace) -> int:
    print("stopped the HTTP API" if stop_running_server() else "no HTTP API was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    server = running_server()
    if server is None:
        print(json.dumps({"running": False}) if args.json else "HTTP API: not running")
        return 1
    status, body = server.readiness()
    model = server.model()
    doc = {
        "running": True,
        "pid": server.pid,
        "url": server.url,
        "ready": status == 200,
        "not_ready_reason": None if status == 200 else (body or {}).get("error"),
        "model_version": model["versions"][0] if model else None,
        "model_digest": model["parameters"]["model_digest"] if model else None,
    }
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        state = "ready" if doc["ready"] else f"not ready ({doc['not_ready_reason']})"
        print(f"HTTP API: running at {server.url}, pid {server.pid}, {state}, model {doc['model_version']}")
    return 0


def add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="the HTTP API (POST /v1/recommend, Open Inference Protocol v2, /metrics)",
        description="Serve the champion's top-K over HTTP on 127.0.0.1:$RECFLOW_SERVE_PORT (default 8000), "
        "following the registry's champion like the Kafka scorer.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{start,stop,status}")
    start = actions.add_parser("start", help="start it detached, wait until ready and print its URL")
    start.add_argument("--port", type=int, default=None, help="default RECFLOW_SERVE_PORT (8000)")
    start.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model)")
    start.add_argument("--server", choices=("uvicorn", "granian"), default=None, help="default uvicorn")
    start.add_argument("--timeout", type=float, default=120.0)
    start.set_defaults(func=_start)
    actions.add_parser("stop", help="stop it (requests in flight finish)").set_defaults(func=_stop)
    status = actions.add_parser("status", help="URL, readiness and model; exit 1 if not running")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
