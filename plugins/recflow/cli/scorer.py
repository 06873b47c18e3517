"""``recflow scorer start|stop|status|reconcile``: the streaming scorer's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from recflow.config.identities import process_environment
from recflow.config.settings import load_settings, state_dir
from recflow.streaming.launcher import running_scorer, start_scorer, stop_running_scorer
from recflow.streaming.reconcile import reconcile


def _start(args: argparse.Namespace) -> int:
    extra = ["--group", args.group] if args.group else []
    scorer = start_scorer(process_environment("scorer", os.environ, state_dir()), extra_args=extra)
    print(f"scorer starting, pid {scorer.pid} (log: {scorer.log_path})")
    try:
        version = scorer.wait_ready(args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        print(f"recflow scorer: {exc}", file=sys.stderr)
        scorer.stop()
        return 1
    print(f"scorer ready, serving {version}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    print("stopped the scorer" if stop_running_scorer() else "no scorer was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    scorer = running_scorer()
    if scorer is None:
        print(json.dumps({"running": False}) if args.json else "scorer: not running")
        return 1
    status = scorer.status() or {"pid": scorer.pid, "running": True, "model_version": None}
    if args.json:
        print(json.dumps(status, sort_keys=True))
        return 0
    print(
        f"scorer: running, pid {status['pid']}, model {status.get('model_version')}, "
        f"lag {status.get('lag')}, uptime {status.get('uptime_s', 0):.0f} s, "
        f"requests {status.get('requests', 0)}, answers {status.get('answers', 0)}, dlq {status.get('dlq', 0)}, "
        f"swaps {status.get('swaps', 0)}"
    )
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    since = int((time.time() - args.minutes * 60) * 1000)
    result = reconcile(load_settings().kafka, since_ms=since)
    print(json.dumps(result.to_dict(), sort_keys=True))
    return 0 if result.lost == 0 else 1


def add_scorer(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scorer",
        help="the streaming scorer (Kafka consumer group)",
        description="Serve the champion's top-K on recflow.score-requests -> recflow.score-results. Metrics on "
        "127.0.0.1:$RECFLOW_SCORER_METRICS_PORT (default 9308).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{start,stop,status,reconcile}")
    start = actions.add_parser("start", help="start it detached and wait until it serves")
    start.add_argument("--group", default=None, help="consumer group (default RECFLOW_SCORER_GROUP or recflow-scorer)")
    start.add_argument("--timeout", type=float, default=120.0)
    start.set_defaults(func=_start)
    actions.add_parser("stop", help="stop it (SIGTERM: delivers and commits first)").set_defaults(func=_stop)
    status = actions.add_parser("status", help="pid, model version, lag, uptime; exit 1 if not running")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_status)
    rec = actions.add_parser("reconcile", help="count requests against answers and dead letters; exit 1 if any lost")
    rec.add_argument("--minutes", type=float, default=60.0, help="look back this far (default 60)")
    rec.set_defaults(func=_reconcile)
