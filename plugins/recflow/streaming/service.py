"""The scorer process: load the champion, start the metrics endpoint and the loader, serve until SIGTERM.

Launch: ``python -m recflow.streaming [--status-file PATH] [--group ID]`` (``recflow scorer start`` does it,
detached, with a pid file). Exit codes: 0 after a clean stop, 1 when answers could not be delivered
(the uncommitted tail is then replayed by the next start), 2 when no model could be loaded, 3 when the
dead-letter path cannot take every record the request topic accepts or the limits cannot be read
(:mod:`.limits`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from recflow.config.kafka import client_config as kafka_client_config
from recflow.config.kafka import redacted
from recflow.config.logs import configure_json_logs
from recflow.config.settings import Settings, load_settings, scorer_metrics_port
from recflow.registry import ModelRegistry
from recflow.streaming.engine import DEFAULT_GROUP, EngineConfig, Scorer
from recflow.streaming.follower import ChampionFollower, watch_model_updates
from recflow.streaming.limits import SizeMismatch, check_limits, topic_limits
from recflow.streaming.metrics import ScorerMetrics
from recflow.streaming.outbox import DeliveryFailed

log = logging.getLogger("recflow.streaming")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m recflow.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--status-file", type=Path, default=None, help="JSON status, rewritten every second")
    parser.add_argument("--group", default=os.environ.get("RECFLOW_SCORER_GROUP", DEFAULT_GROUP))
    parser.add_argument("--check-interval", type=float, default=30.0, help="seconds between registry checks")
    parser.add_argument("--max-batch", type=int, default=EngineConfig.max_batch)
    parser.add_argument("--metrics-port", type=int, default=None, help="default RECFLOW_SCORER_METRICS_PORT")
    parser.add_argument("--wait-for-model", type=float, default=600.0, help="seconds to wait for a champion")
    return parser.parse_args(argv)


def _stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set: the loop stops after the current batch."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _model_cache(settings: Settings) -> Path:
    """A folder of this process's own for downloaded models (removed at exit)."""
    models_root = settings.state / "scorer" / "models"
    models_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=models_root))


def _wait_for_model(follower: ChampionFollower, stop: threading.Event, timeout_s: float) -> bool:
    """Load the champion, retrying until one is promoted; False after ``timeout_s`` or a stop signal."""
    deadline = time.monotonic() + timeout_s
    while follower.load_now() is None:
        if stop.is_set() or time.monotonic() > deadline:
            log.error("no model to serve: %s", follower.last_error)
            return False
        log.warning("waiting for a model: %s", follower.last_error)
        stop.wait(2.0)
    return True


def _serve_metrics(metrics: ScorerMetrics, port: int | None) -> Any:
    """The metrics endpoint's server, or None when its port is taken: answers matter more than metrics."""
    try:
        return metrics.serve(port)
    except OSError as exc:
        log.error("no metrics endpoint (port %s): %s", port or scorer_metrics_port(), exc)
        return None


def main(argv: list[str] | None = None) -> int:
    """Load the champion, then serve until SIGTERM; returns the exit code (see the module docstring)."""
    args = _parse_args(argv)
    configure_json_logs()  # JSON lines; the served version rides on the records that name it
    settings = load_settings()
    try:
        check_limits(topic_limits(settings.kafka))
    except SizeMismatch as exc:
        log.error("refusing to start: %s", exc)
        return 3
    except Exception as exc:  # broker unreachable or topics missing: nothing could be served anyway
        log.error("refusing to start: cannot read the topics' max.message.bytes: %s", exc)
        return 3
    stop = _stop_on_signals()
    cache = _model_cache(settings)
    follower = ChampionFollower(ModelRegistry.from_settings(settings), cache, check_interval_s=args.check_interval)
    if not _wait_for_model(follower, stop, args.wait_for_model):
        return 2
    metrics = ScorerMetrics()
    server = _serve_metrics(metrics, args.metrics_port)
    follower.start()
    events = watch_model_updates(settings.kafka, follower, stop)
    config = EngineConfig(group_id=args.group, max_batch=args.max_batch)
    scorer = Scorer(settings.kafka, follower, metrics, config=config, status_path=args.status_file)
    log.info("kafka client: %s", redacted(kafka_client_config(settings.kafka)))  # passwords as ***
    log.info("serving %s as group %s", follower.current.version if follower.current else None, args.group)
    try:
        scorer.run(stop)
    except DeliveryFailed as exc:
        log.error("%s", exc)
        return 1
    finally:
        stop.set()
        follower.stop()
        events.join(timeout=5)
        if server is not None:
            server.shutdown()
        shutil.rmtree(cache, ignore_errors=True)
    log.info("stopped cleanly")
    return 0
