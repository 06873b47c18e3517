"""Shared set-up of the scorer fault tests: a registry of two random ALS models and scorer processes.

Why a bucket of its own: the scorer process resolves the champion of ``RECFLOW_MODELS_BUCKET``; giving
it a bucket no other test promotes in keeps the pipeline test's champion and this module's apart.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings, load_settings
from recflow.models.synthetic import random_als
from recflow.registry import ModelRegistry
from recflow.streaming.client import listen_from_end
from recflow.streaming.events import encode, kafka_producer, model_update_event
from recflow.streaming.launcher import ScorerProcess, start_scorer

USERS = [f"u{i}" for i in range(1200)]  # u1000.. are unknown to the models: the fallback path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ScorerWorld:
    settings: Settings
    bucket: str
    registry: ModelRegistry
    versions: tuple[str, str]
    promoted: int = 0

    def env(self) -> dict[str, str]:
        return {"RECFLOW_MODELS_BUCKET": self.bucket}

    def start(self, tag: str, *, group: str | None = None, check_interval: float = 30.0) -> ScorerProcess:
        scorer = start_scorer(
            self.env(),
            name=f"scorer-test-{tag}",
            extra_args=[
                "--group", group or f"recflow-test-{tag}-{uuid.uuid4().hex[:6]}",
                "--metrics-port", str(free_port()),
                "--check-interval", str(check_interval),
            ],
        )  # fmt: skip
        scorer.wait_ready(120)
        return scorer

    def promote(self, version: str) -> None:
        """Promote ``version`` and announce it, as the training DAG does."""
        self.promoted += 1
        current = self.registry.champion_record()
        record = self.registry.chain.swap(
            version,
            expected_champion=None if current is None else current.version,
            reason="scorer test",
            actor="pytest",
        )
        producer = kafka_producer(self.settings.kafka)
        event = model_update_event(
            version=version, digest=record.digest, uri=record.uri, promoted_at=record.promoted_at
        )
        producer.produce(self.settings.kafka.model_updates_topic, value=encode(event))
        producer.flush(10)


def make_world(settings: Settings, tmp: Path) -> ScorerWorld:
    bucket = f"{settings.s3.models_bucket}-scorer"[:63]
    client = s3_client(settings.s3)
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    registry = ModelRegistry.from_settings(dataclasses.replace(settings.s3, models_bucket=bucket))
    created = datetime(2026, 11, 1, tzinfo=UTC)
    versions = []
    for seed, name in ((1, "als-scorertestA"), (2, "als-scorertestB")):
        random_als(tmp / name, n_users=1000, n_items=400, rank=16, seed=seed)
        mv = registry.register(tmp / name, family="als", metrics={"ndcg@10": 0.1}, lineage={}, created_at=created)
        versions.append(mv.version)
    world = ScorerWorld(load_settings(), bucket, registry, (versions[0], versions[1]))
    world.promote(versions[0])
    return world


@contextmanager
def dead_letter_consumer(world: ScorerWorld) -> Iterator[Any]:
    """A consumer of the dead-letter topic in a group of its own, positioned at its end: it sees only
    the dead letters the test causes from now on."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": world.settings.kafka.bootstrap_servers, "group.id": f"t-{uuid.uuid4().hex[:8]}"}
    )
    listen_from_end(consumer, world.settings.kafka.score_requests_dlq_topic)
    try:
        yield consumer
    finally:
        consumer.close()


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
