"""The scorer process: load the champion, start the metrics endpoint and the loader, serve until SIGTERM.

Launch: ``python -m recflow.streaming [--status-file PATH] [--group ID]`` (``recflow scorer start`` does it,
detached, with a pid file). Exit codes: 0 after a clean stop, 1 when answers could not be delivered
(the uncommitted tail is then replayed by the next start), 2 when no model could be loaded.
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

from recflow.config.kafka import client_config as kafka_client_config
from recflow.config.kafka import redacted
from recflow.config.settings import load_settings, scorer_metrics_port
from recflow.streaming.engine import DEFAULT_GROUP, DeliveryFailed, EngineConfig, Scorer
from recflow.streaming.follower import ChampionFollower, watch_model_updates
from recflow.streaming.metrics import ScorerMetrics

log = logging.getLogger("recflow.streaming")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recflow.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("--status-file", type=Path, default=None, help="JSON status, rewritten every second")
    parser.add_argument("--group", default=os.environ.get("RECFLOW_SCORER_GROUP", DEFAULT_GROUP))
    parser.add_argument("--check-interval", type=float, default=30.0, help="seconds between registry checks")
    parser.add_argument("--max-batch", type=int, default=EngineConfig.max_batch)
    parser.add_argument("--metrics-port", type=int, default=None, help="default RECFLOW_SCORER_METRICS_PORT")
    parser.add_argument("--wait-for-model", type=float, default=600.0, help="seconds to wait for a champion")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recflow.registry import ModelRegistry

    settings = load_settings()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    models_root = settings.state / "scorer" / "models"
    models_root.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=models_root))
    follower = ChampionFollower(ModelRegistry.from_settings(settings), cache, check_interval_s=args.check_interval)
    deadline = time.monotonic() + args.wait_for_model
    while follower.load_now() is None:
        if stop.is_set() or time.monotonic() > deadline:
            log.error("no model to serve: %s", follower.last_error)
            return 2
        log.warning("waiting for a model: %s", follower.last_error)
        stop.wait(2.0)
    metrics = ScorerMetrics()
    try:
        server = metrics.serve(args.metrics_port)
    except OSError as exc:  # a taken port must not stop serving: answers matter more than metrics
        log.error("no metrics endpoint (port %s): %s", args.metrics_port or scorer_metrics_port(), exc)
        server = None
    follower.start()
    events = watch_model_updates(settings.kafka, follower, stop)
    scorer = Scorer(
        settings.kafka,
        follower,
        metrics,
        config=EngineConfig(group_id=args.group, max_batch=args.max_batch),
        status_path=args.status_file,
    )
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
