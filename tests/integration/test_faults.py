"""Faults injected at named points (``RECFLOW_FAULTS``) into the real local services.

Each test stops or pauses a real server at the point where the code is most exposed, checks that
nothing was lost or half-published, brings the server back and checks that the next run completes.
``docs/faults.md`` lists the points, where they sit and what the system does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scorer_support import free_port, make_world, wait

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.data.lake import S3Lake
from recflow.models.synthetic import random_als
from recflow.registry import ModelRegistry
from recflow.registry.objects import RetryPolicy
from recflow.services import ensure_services_up
from recflow.services.faults import resume
from recflow.services.process import port_open
from recflow.streaming.client import AnswerListener
from recflow.streaming.follower import ChampionFollower
from recflow.streaming.launcher import start_scorer
from recflow.streaming.metrics import ScorerMetrics
from recflow.streaming.reconcile import reconcile

pytestmark = pytest.mark.slow

PART = "interactions/event_date=2026-11-03"


@pytest.fixture
def restore(live_services: Settings) -> Iterator[Settings]:
    """Whatever a test stops or pauses is running and healthy again afterwards, for the other tests
    (ask for it after ``lake``, so it is torn down first and the lake's clean-up finds S3 running)."""
    yield live_services
    resume("s3")
    resume("kafka")
    ensure_services_up(live_services)


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    root = f"s3://{live_services.s3.lake_bucket}/faults-{uuid.uuid4().hex[:10]}/lake"
    yield S3Lake(root, live_services.s3)
    client = s3_client(live_services.s3)
    bucket, prefix = root[5:].split("/", 1)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rsplit("/", 1)[0]):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])


def _staged(tmp_path: Path, rows: list[str]) -> Path:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    pd.DataFrame({"user_id": rows}).to_parquet(folder / "part-0.parquet", index=False)
    return folder


def _users(lake: S3Lake, part: str = PART) -> list[str]:
    return [str(u) for batch in lake.read_column(part, "user_id") for u in batch]


@pytest.mark.parametrize("point", ["lake.publish.before_commit", "batch.publish.before_commit"])
def test_s3_stopped_before_the_commit_keeps_the_previous_partition(
    lake: S3Lake, restore: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """The S3 server stops after the attempt is uploaded and checked, before the commit record."""
    other = "offers/event_date=2026-11-03"
    lake.publish_together({PART: _staged(tmp_path, ["a", "b"]), other: _staged(tmp_path, ["o"])}, key=PART)
    before = lake.files(PART), lake.files(other)
    monkeypatch.setenv("RECFLOW_FAULTS", f"{point}=stop:s3")
    with pytest.raises(Exception, match=r"Could not connect|Connect timeout|Connection"):
        lake.publish_together({PART: _staged(tmp_path, ["c"]), other: _staged(tmp_path, ["p"])}, key=PART, point=point)
    monkeypatch.delenv("RECFLOW_FAULTS")
    ensure_services_up(restore)
    assert (lake.files(PART), lake.files(other)) == before, "both tables still show the previous commit"
    assert _users(lake) == ["a", "b"] and lake.partition_rows(PART) == 2
    lake.publish_together({PART: _staged(tmp_path, ["c"]), other: _staged(tmp_path, ["p"])}, key=PART, point=point)
    assert _users(lake) == ["c"] and _users(lake, other) == ["p"], "the next run completes"


def test_s3_paused_mid_publish_fails_the_publish_and_keeps_the_partition(
    lake: S3Lake, restore: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the port still accepts connections but nothing answers; the client times out."""
    lake.publish(_staged(tmp_path, ["a"]), PART)
    slow = S3Lake(lake.root, client=s3_client(restore.s3, connect_timeout=2, read_timeout=2, max_attempts=1))
    monkeypatch.setenv("RECFLOW_FAULTS", "lake.publish.before_commit=pause:s3")
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        slow.publish(_staged(tmp_path, ["b"]), PART)
    monkeypatch.delenv("RECFLOW_FAULTS")
    assert resume("s3")
    assert _users(lake) == ["a"]


# ------------------------------------------------------------------------------ the scorer's model swap


def _version(
    registry: ModelRegistry, tmp_path: Path, seed: int, edit: dict[str, Any] | None = None, nan_items: bool = False
) -> str:
    """Register a random ALS model; ``edit`` changes its ``model.json``, ``nan_items`` makes every item
    factor NaN (a diverged fit: the artifact loads, its answers are empty)."""
    folder = tmp_path / f"model-{seed}"
    model = random_als(folder, n_users=50, n_items=20, rank=4, seed=seed)
    if nan_items:
        model.item_factors[:] = np.nan
        model.save(folder)
    if edit:
        doc = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps({**doc, **edit}))
    created = datetime(2026, 11, 1, tzinfo=UTC)
    return registry.register(folder, family="als", metrics={}, lineage={}, created_at=created).version


def _promote(registry: ModelRegistry, version: str) -> None:
    current = registry.champion_record()
    registry.chain.swap(version, expected_champion=current and current.version, reason="fault test", actor="pytest")


@pytest.fixture
def serving(registry: ModelRegistry, tmp_path: Path) -> tuple[ChampionFollower, str]:
    """A follower serving version A of a fresh registry (fast retries, so an outage fails in seconds)."""
    fast = ModelRegistry(registry.store.s3, registry.bucket, registry.prefix, RetryPolicy(attempts=2, base=0.1))
    a = _version(fast, tmp_path, seed=1)
    _promote(fast, a)
    follower = ChampionFollower(fast, tmp_path / "cache", check_interval_s=0.5)
    assert (model := follower.load_now()) is not None and model.version == a
    return follower, a


def test_s3_stopped_while_the_scorer_fetches_keeps_the_old_model_then_swaps(
    serving: tuple[ChampionFollower, str], restore: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    follower, a = serving
    b = _version(follower.registry, tmp_path, seed=2)
    _promote(follower.registry, b)
    monkeypatch.setenv("RECFLOW_FAULTS", "scorer.fetch=stop:s3")
    follower._check()  # what the periodic check runs; S3 goes down between resolving B and fetching it
    monkeypatch.delenv("RECFLOW_FAULTS")
    assert follower.take_pending() is None and follower.current and follower.current.version == a
    assert follower.load_failures["fetch"] == 1 and f"fetch of {b} failed" in str(follower.last_error)
    metrics = ScorerMetrics()
    metrics.watch_load_failures(follower.load_failures)
    assert metrics.registry.get_sample_value("recflow_scorer_model_load_failures", {"stage": "fetch"}) == 1
    ensure_services_up(restore)
    follower.start()  # the periodic registry check alone, no model-update event
    try:
        deadline = time.monotonic() + 60
        while (model := follower.take_pending()) is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        follower.stop()
    assert model is not None and model.version == b and follower.current is model


@pytest.mark.parametrize("stage", ["checksum", "load", "warm_up"])
def test_a_broken_new_champion_never_replaces_the_serving_one(
    serving: tuple[ChampionFollower, str], tmp_path: Path, stage: str
) -> None:
    follower, a = serving
    registry = follower.registry
    edit = {"recommender": "builtins.eval"} if stage == "load" else None  # not a recflow.models class
    b = _version(registry, tmp_path, seed=3, edit=edit, nan_items=stage == "warm_up")
    _promote(registry, b)
    if stage == "checksum":  # the stored bytes change after the version was registered and promoted
        key = registry.layout.version_key(b, "files", "items.parquet")
        registry.store.s3.put_object(Bucket=registry.bucket, Key=key, Body=b"not the registered bytes")
    follower._check()
    assert follower.take_pending() is None and follower.current and follower.current.version == a
    assert follower.load_failures[stage] == 1, follower.load_failures
    assert sum(follower.load_failures.values()) == 1 and f"{stage} of {b} failed" in str(follower.last_error)
    if stage == "warm_up":  # the follower's own warm-up (the scorer's and every HTTP worker's) refused it
        assert "no item for any of the" in str(follower.last_error), follower.last_error


# ------------------------------------------------------------------------ dead letters in a broker outage


def test_broker_stopped_while_dead_lettering_loses_nothing(live_services: Settings, tmp_path: Path) -> None:
    """The scorer itself stops the broker as it dead-letters a record (``scorer.dead_letter=stop:kafka*1``);
    the broker comes back 10 s later. Every request is answered or dead-lettered: reconcile finds 0 lost."""
    from confluent_kafka import Producer

    from recflow.services import manager

    world = make_world(live_services, tmp_path / "models")
    kafka = next(s for s in manager.default_services(live_services) if s.name == "kafka")
    env = {**world.env(), "RECFLOW_FAULTS": "scorer.dead_letter=stop:kafka*1"}
    scorer = start_scorer(env, name="scorer-test-dlq-outage", extra_args=[
        "--group", f"recflow-test-dlq-{uuid.uuid4().hex[:6]}", "--metrics-port", str(free_port())])  # fmt: skip
    listener = AnswerListener(world.settings.kafka)
    try:
        scorer.wait_ready(120)
        since = int(time.time() * 1000)
        keys = [f"before-{i}".encode() for i in range(20)]
        producer = Producer({"bootstrap.servers": world.settings.kafka.bootstrap_servers, "linger.ms": 0})
        topic = world.settings.kafka.score_requests_topic
        for i, key in enumerate(keys):
            producer.produce(topic, key=key, value=json.dumps({"request_id": key.decode(), "user_id": f"u{i}", "k": 3}))
        producer.produce(topic, key=b"bad-1", value=b"{not json")  # identifiable: a dead letter and an error answer
        producer.flush(10)
        wait(lambda: not port_open(kafka.ports[0]), 60, "the scorer to stop the broker at the dead letter")
        time.sleep(10)
        manager.ensure_services_up(live_services, services=[kafka])
        assert listener.wait_for({*keys, b"bad-1"}, 180), "every request answered after the outage"
        assert scorer.alive(), f"the scorer died in the outage; log: {scorer.log_path}"
        wait(lambda: (scorer.status() or {}).get("lag") == 0, 120, "lag 0")
        rec = reconcile(world.settings.kafka, since_ms=since)
        assert rec.lost == 0 and rec.requests == len(keys) + 1 and rec.dead_lettered >= 1, rec
        # A replay after the outage may answer twice; every second answer is counted, none is silent.
        seen_twice = sum(len(listener.answers(key)) - 1 for key in keys)
        assert rec.duplicates >= seen_twice, (rec, seen_twice)
    finally:
        listener.close()
        scorer.stop()
        manager.ensure_services_up(live_services)
