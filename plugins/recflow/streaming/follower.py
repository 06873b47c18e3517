"""Follow the champion without pausing serving: load beside the current model, swap between batches.

Why a background thread and a hand-off slot: downloading and loading a model takes seconds (NCF
imports TensorFlow); doing it inside the serving loop stalled the old Spark scorer for 5-13 s. Here the
loader resolves the serving version, downloads it into a fresh folder (every file's digest checked, so
A -> B -> A never trips over an old folder), loads and warms it up, and leaves it in ``pending``. The
engine picks it up between two batches: the swap itself is one assignment.

The warm-up (:func:`warm_up_model`) is the same in the Kafka scorer and every ``recflow serve`` worker:
probe requests scored as real ones are, whose answers must show a model that can serve. A model that
fails it never replaces the serving one and is counted as a ``warm_up`` failure.

What triggers a check: a model-update event (a hint only: an event whose version or digest is not the
registry's champion's is ignored, counted and logged with the reason) and a periodic registry check,
which also catches a missed event. Either way the scorer loads what the registry resolves, never what
an event names.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recflow.config.kafka import KafkaSettings, client_config
from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.exploration import read_explorer
from recflow.registry import ModelRegistry, NoChampion, resolve_serving_version
from recflow.registry.records import ChecksumMismatch
from recflow.scoring.explore import Explorer
from recflow.services import faults
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request

log = logging.getLogger(__name__)

#: Why a new champion did not replace the serving one, as counted in ``load_failures`` and exported as
#: ``recflow_scorer_model_load_failures{stage=...}``: an alert rule fires on any increase.
FAILURE_STAGES = ("resolve", "fetch", "checksum", "load", "warm_up")
#: Known users a warm-up probes (with one unknown user and a re-rank): every code path runs once.
WARM_UP_USERS = 32


class WarmUpFailed(RuntimeError):
    """The probe answers of a new model show that it cannot serve."""


def warm_up_model(recommender: Recommender) -> None:
    """Score known users, an unknown one and a re-rank, one by one and then as one batch, so the first
    real request pays no first-call cost; raise :class:`WarmUpFailed` when the answers show a broken
    model: a score that is not a finite number, or not one item for any known user (NaN or empty
    factors; a known user who has seen the whole catalog is legitimately empty, all of them are not).
    """
    known = [str(u) for u in recommender.index.users[:WARM_UP_USERS]]
    users = [*known, "recflow-warm-up-unknown-user"]
    items = tuple(str(i) for i in recommender.index.item_array[:5])
    requests = [Request(f"warm-{n}", u, 10, None, None, None, -1, -1, 0) for n, u in enumerate(users)]
    requests.append(Request("warm-rerank", users[0], 3, items, None, None, -1, -1, 0))
    for request in requests:  # one by one, as requests arrive
        score_requests(recommender, [request])
    answers = score_requests(recommender, requests)
    # a null score is an explored item outside the model's catalog (no model score), not a fault
    bad = [
        r.user_id
        for r, a in zip(requests, answers, strict=True)
        if any(s is not None and not math.isfinite(s) for s in a.scores)
    ]
    if bad:
        raise WarmUpFailed(f"scores that are not finite numbers for the probe users {bad[:5]}")
    if known and not any(answers[n].items for n in range(len(known))):
        raise WarmUpFailed(f"no item for any of the {len(known)} known probe users")


@dataclass(frozen=True)
class ServingModel:
    """A loaded model and which registry version it is."""

    version: str
    recommender: Recommender
    folder: Path
    digest: str | None = None
    loaded_at: float = 0.0
    #: The artifact's exploration slots (recflow.models.exploration), None when it declares none.
    explorer: Explorer | None = None


def resolve_champion(registry: ModelRegistry) -> tuple[str, str | None] | None:
    """(version, digest) the scorer should serve now, or None before the first promotion."""
    try:
        serving = resolve_serving_version(registry)
    except NoChampion:
        return None
    return serving.version, serving.digest


def download_fresh(registry: ModelRegistry, version: str, cache_root: Path, digest: str | None = None) -> Path:
    """Download ``version`` into a folder no earlier load used (manifest digest and files checked)."""
    return registry.fetch(resolve_serving_version(registry, pinned=version, digest=digest).model, cache_root)


class ChampionFollower:
    """Loads the champion on a background thread and hands it over through :meth:`take_pending`."""

    def __init__(
        self,
        registry: ModelRegistry,
        cache_root: Path,
        *,
        check_interval_s: float = 30.0,
        resolve: Callable[[ModelRegistry], tuple[str, str | None] | None] = resolve_champion,
    ) -> None:
        self.registry = registry
        self.cache_root = cache_root
        self.check_interval_s = check_interval_s
        self._resolve = resolve
        self._lock = threading.Lock()
        self._pending: ServingModel | None = None
        self._wanted_check = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: ServingModel | None = None
        self.last_error: str | None = None
        self.ignored_events = 0
        self.load_failures = dict.fromkeys(FAILURE_STAGES, 0)
        self.last_ignored_event: str | None = None
        self._events: list[tuple[str | None, str | None]] = []  # (version, digest) named by events since the last check

    # ------------------------------------------------------------------ serving side (engine thread)
    def take_pending(self) -> ServingModel | None:
        """The newly loaded model, once; the engine makes it current between two batches."""
        with self._lock:
            model, self._pending = self._pending, None
        if model is not None:
            previous, self.current = self.current, model
            log.info("serving %s (was %s)", model.version, previous.version if previous else None,
                     extra={"model_version": model.version})  # fmt: skip
            if previous is not None:  # off the serving thread: deleting files is not the loop's business
                threading.Thread(target=shutil.rmtree, args=(previous.folder, True), daemon=True).start()
        return model

    # ------------------------------------------------------------------ loader side
    def load_now(self) -> ServingModel | None:
        """Resolve and load synchronously (start-up); the model becomes current at once."""
        self._check()
        return self.take_pending()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recflow-model-loader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted_check.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def on_event(self, raw: bytes | None) -> None:
        """A model-update event arrived: check the registry now; its version and digest are only a hint."""
        try:
            event: Any = json.loads(raw or b"")
        except ValueError:
            event = None
        named = (event.get("version"), event.get("digest")) if isinstance(event, dict) else (None, None)
        log.info("model-update event for %s (digest %s): checking the registry", *named)
        with self._lock:
            self._events.append(named)
        self._wanted_check.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted_check.wait(self.check_interval_s)
            self._wanted_check.clear()
            if self._stop.is_set():
                return
            self._check()

    def _check(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        try:
            resolved = self._resolve(self.registry)
        except Exception as exc:  # registry unreachable: keep serving, retry at the next check
            self._failed("resolve", f"resolving the champion failed: {exc}")
            return
        if resolved is None:
            self.last_error = "the registry has no champion yet"
            return
        version, digest = resolved
        for named in events:
            self._judge_event(named, version, digest)
        with self._lock:
            pending = self._pending
        serving = pending or self.current
        if serving is not None and serving.version == version and serving.digest == digest:
            return
        began = time.monotonic()
        stage = "fetch"
        try:
            faults.hit("scorer.fetch")
            folder = download_fresh(self.registry, version, self.cache_root, digest)
            stage = "load"
            recommender = load_recommender(folder)
            explorer = read_explorer(folder, recommender)
            stage = "warm_up"
            warm_up_model(recommender)
        except Exception as exc:  # a broken version never replaces a working one
            stage = "checksum" if isinstance(exc, ChecksumMismatch) else stage
            kept = serving.version if serving else None
            self._failed(stage, f"{stage} of {version} failed: {exc}; still serving {kept}")
            return
        model = ServingModel(version, recommender, folder, digest, time.time(), explorer)
        with self._lock:
            if self._pending is not None:
                shutil.rmtree(self._pending.folder, ignore_errors=True)
            self._pending = model
        self.last_error = None
        log.info("loaded %s in %.1f s beside the serving model", version, time.monotonic() - began)

    def _failed(self, stage: str, message: str) -> None:
        """Count the failure by stage (the metric an alert watches), keep it as ``last_error`` and log it."""
        self.load_failures[stage] += 1
        self.last_error = message
        log.error("model load failure (%s): %s", stage, message)

    def _judge_event(self, named: tuple[str | None, str | None], version: str, digest: str | None) -> None:
        """Count and log an event that does not name the registry's champion and its manifest digest."""
        event_version, event_digest = named
        if event_version != version:
            why = f"it names {event_version}, but the registry's champion is {version}"
        elif event_digest != digest:
            why = f"it names {version} with digest {event_digest}, but the registry's digest is {digest}"
        else:
            return
        self.ignored_events += 1
        self.last_ignored_event = why
        log.warning("ignoring a model-update event: %s", why)


def watch_model_updates(kafka: KafkaSettings, follower: ChampionFollower, stop: threading.Event) -> threading.Thread:
    """A thread that reads the model-update topic from its end and tells ``follower`` about each event.

    Why its own consumer without a group commit: events are hints, and the periodic registry check is
    the safety net, so re-reading old events after a restart would only cause needless checks.
    """
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **client_config(kafka),
            "group.id": f"recflow-scorer-events-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "logger": logging.getLogger("recflow.streaming.librdkafka"),
        }
    )
    consumer.subscribe([kafka.model_updates_topic])

    def run() -> None:
        try:
            while not stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                follower.on_event(msg.value())
        finally:
            consumer.close()

    thread = threading.Thread(target=run, name="recflow-model-events", daemon=True)
    thread.start()
    return thread
