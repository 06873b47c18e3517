"""The model a server process answers with, and whether the server may say it is ready.

Why the Kafka scorer's :class:`~recflow.streaming.follower.ChampionFollower`: one follower means one
answer to "which model, and is it the registry's bits" (it resolves with ``resolve_serving_version``,
every download is digest-checked, and every new model passes the Kafka scorer's warm-up,
:func:`~recflow.streaming.follower.warm_up_model`). The follower loads and warms a new champion on its
own thread while the old one keeps answering; a request picks the new one up with one assignment, so a
swap has no moment without a model and readiness never drops.

Readiness across worker processes: each worker loads its own copy. A worker that is ready leaves a
marker file named by its pid; ``ready`` is true only when this worker is, and when as many live workers
have markers as the server runs (``RECFLOW_SERVE_WORKERS``), so a probe never hears "ready" from one
worker while another would still answer 503.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from recflow.config.settings import Settings
from recflow.registry import ModelRegistry
from recflow.services.process import is_alive
from recflow.serving_http.errors import ApiError, HttpCode
from recflow.streaming.follower import ChampionFollower, ServingModel, watch_model_updates

log = logging.getLogger(__name__)


class ServingChampion:
    """Follows the champion for one worker process and hands each request the model to answer with."""

    def __init__(
        self,
        follower: ChampionFollower,
        *,
        ready_dir: Path | None = None,
        workers: int = 1,
        kafka_events: Settings | None = None,
    ) -> None:
        self.follower = follower
        self.ready_dir = ready_dir
        self.workers = workers
        self.kafka_events = kafka_events
        self.swaps = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_settings(cls, settings: Settings, *, check_interval_s: float = 30.0) -> ServingChampion:
        """The follower of ``settings``' registry, caching models in a folder of this process's own."""
        models_root = settings.state / "serve" / "models"
        models_root.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=models_root))
        follower = ChampionFollower(ModelRegistry.from_settings(settings), cache, check_interval_s=check_interval_s)
        ready_dir = os.environ.get("RECFLOW_SERVE_READY_DIR")
        return cls(
            follower,
            ready_dir=Path(ready_dir) if ready_dir else None,
            workers=int(os.environ.get("RECFLOW_SERVE_WORKERS", "1")),
            kafka_events=settings,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load the first champion on a thread (the server answers 503 meanwhile), then follow it."""
        thread = threading.Thread(target=self._first_load, name="recflow-serve-first-load", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.follower.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.ready_dir is not None:
            (self.ready_dir / str(os.getpid())).unlink(missing_ok=True)
        shutil.rmtree(self.follower.cache_root, ignore_errors=True)

    def _first_load(self) -> None:
        while not self._stop.is_set():
            try:
                self.follower.load_now()  # downloads, checks the digest, loads and warms up
            except Exception:  # the follower logs its own failures; anything else must not end the thread
                log.exception("loading the first champion failed")
            # ``current``, not load_now's answer: a request may have taken the loaded model over first
            if self.follower.current is not None:
                break
            log.warning("waiting for a model: %s", self.follower.last_error)
            self._stop.wait(2.0)
        if self._stop.is_set():
            return
        current = self.follower.current
        log.info("serving %s (digest %s)", current.version if current else None, current.digest if current else None)
        if self.ready_dir is not None:
            self.ready_dir.mkdir(parents=True, exist_ok=True)
            (self.ready_dir / str(os.getpid())).touch()
        self.follower.start()
        if self.kafka_events is not None:
            self._threads.append(watch_model_updates(self.kafka_events.kafka, self.follower, self._stop))

    # ------------------------------------------------------------------ per request (event-loop thread)
    def model(self) -> ServingModel:
        """The model to answer with: a newly loaded champion replaces the old one here, between requests."""
        if self.follower.take_pending() is not None:
            self.swaps += 1
        current = self.follower.current
        if current is None:
            raise ApiError(HttpCode.NOT_READY, self.not_ready_reason() or "no model loaded yet")
        return current

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why this server must not get traffic yet, or None when it may."""
        if self.follower.current is None:
            return f"the champion is not loaded yet ({self.follower.last_error or 'loading'})"
        if self.ready_dir is None or self.workers <= 1:
            return None
        live = [p for p in self.ready_dir.glob("*") if p.name.isdigit() and is_alive(int(p.name))]
        if len(live) < self.workers:
            return f"{len(live)} of {self.workers} workers have loaded the champion"
        return None
