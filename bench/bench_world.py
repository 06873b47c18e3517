"""The serving benchmarks' model registry: random-factor ALS champions in a bucket of the benchmark's own.

Shared by ``bench/serving.py`` (HTTP) and ``bench/streaming.py`` (Kafka), so both paths are measured on
models built, indexed, registered and promoted the same way:

* models A (seed 1) and, when a swap is measured, B (seed 2): ``recflow.models.synthetic.random_als``,
  ``users`` x ``items`` at ``rank``, 20 seen items per user;
* from ``recflow.scoring.ann.ANN_MIN_ITEMS`` items on, each artifact gets the item index training builds
  (``recflow.models.artifact.save_candidate_index``, tuned as training tunes it), and its build time is kept;
* the bucket is emptied first: an earlier run, or one written by an older registry schema, must not decide
  which champion this run serves;
* a promotion swaps the champion in the registry's chain and announces it on the model-update topic, as
  the training DAG does.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class BenchWorld:
    """What a benchmark serves: the registry, the versions (A first), the user ids requests draw from
    (110% of the known users: ~9% take the cold-start fallback), A's local folder and the index build time."""

    registry: Any
    versions: list[str]
    users: list[str]
    folder_a: Path
    index_build_s: float | None


def bench_world(settings: Any, bucket: str, tmp: Path, *, users: int, items: int, rank: int, models: int) -> BenchWorld:
    """Register ``models`` (1 or 2) random ALS models in ``bucket`` (emptied first) and promote A."""
    from recflow.config.s3 import s3_client
    from recflow.models.artifact import save_candidate_index
    from recflow.models.synthetic import random_als
    from recflow.registry import ModelRegistry
    from recflow.scoring.ann import ANN_MIN_ITEMS

    client = s3_client(settings.s3)
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    registry = ModelRegistry.from_settings(dataclasses.replace(settings.s3, models_bucket=bucket))
    versions, build_s = [], None
    for seed, tag in ((1, "A"), (2, "B"))[:models]:
        model = random_als(tmp / tag, n_users=users, n_items=items, rank=rank, seen_per_user=20, seed=seed)
        began = time.perf_counter()
        if save_candidate_index(model, tmp / tag, min_items=ANN_MIN_ITEMS) is not None:  # as training does
            build_s = round(time.perf_counter() - began, 1)
        mv = registry.register(
            tmp / tag, family="als", metrics={}, lineage={"bench": tag}, created_at=datetime.now(UTC)
        )
        versions.append(mv.version)
    promote(settings, registry, versions[0])
    return BenchWorld(registry, versions, [f"u{i}" for i in range(int(users * 1.1))], tmp / "A", build_s)


def promote(settings: Any, registry: Any, version: str, when: datetime | None = None) -> None:
    """Swap the champion to ``version`` and announce it on Kafka (``when``: the event's promotion time)."""
    from recflow.streaming.events import encode, kafka_producer, model_update_event

    current = registry.champion_record()
    record = registry.chain.swap(
        version, expected_champion=None if current is None else current.version, reason="bench", actor="bench"
    )
    producer = kafka_producer(settings.kafka)
    event = model_update_event(
        version=version, digest=record.digest, uri=record.uri, promoted_at=when or record.promoted_at
    )
    producer.produce(settings.kafka.model_updates_topic, value=encode(event))
    producer.flush(10)
