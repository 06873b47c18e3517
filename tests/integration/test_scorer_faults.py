"""The streaming scorer against the real broker and S3 registry: bad inputs, a swap A -> B -> A under
load, a kill under load, a broker outage under load, and a reconciliation of every request.

Nothing is mocked: the scorer is the real ``python -m recflow.streaming`` process, requests and answers go
through the local Kafka broker, models come from the S3 registry. Latency goals live in
``make bench-streaming``; these tests check that nothing is lost, duplicated silently or mis-served.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from scorer_support import USERS, ScorerWorld, dead_letter_consumer, make_world, wait

from recflow.config.settings import Settings
from recflow.models.synthetic import random_als
from recflow.streaming.client import AnswerListener, report, send_requests
from recflow.streaming.protocol import MAX_ITEM_IDS, header_map
from recflow.streaming.reconcile import reconcile


@pytest.fixture(scope="module")
def world(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> ScorerWorld:
    return make_world(live_services, tmp_path_factory.mktemp("scorer-models"))


@pytest.fixture
def dlq(world: ScorerWorld) -> Iterator[Any]:
    with dead_letter_consumer(world) as consumer:
        yield consumer


def _produce_raw(world: ScorerWorld, records: list[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Produce records as they are (no encoding); returns each record's (partition, offset) from its
    delivery report (offsets are per partition, and the request topic has several)."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": world.settings.kafka.bootstrap_servers, "message.max.bytes": 2 << 20, "linger.ms": 0}
    )
    where: dict[int, tuple[int, int]] = {}
    for i, (key, value) in enumerate(records):

        def done(err: Any, msg: Any, i: int = i) -> None:
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        producer.produce(world.settings.kafka.score_requests_topic, key=key, value=value, on_delivery=done)
    assert producer.flush(30) == 0
    return [where[i] for i in range(len(records))]


BIG = b'{"request_id":"big","user_id":"u1","pad":"' + b"x" * 1_000_000 + b'"}'
BAD_INPUTS: list[tuple[str, bytes | None, bytes | None, str, str | None]] = [
    # (case, key, value, reason, request_id echoed in the error answer)
    ("lone surrogate", b"k-surrogate", b'{"request_id": "\\ud800", "user_id": "u1"}', "invalid_request_id", None),
    ("key-only record", b"k-keyonly", None, "null_value", None),
    ("null record", None, None, "null_value", None),
    ("JSON null", b"k-jsonnull", b"null", "not_an_object", None),
    ("1 MB value", b"k-big", BIG, "oversize", None),
    ("not UTF-8", b"k-latin", b"\xff\xfe{", "undecodable", None),
    ("not JSON", b"k-json", b"{nope", "undecodable", None),
    ("array", b"k-array", b"[1, 2]", "not_an_object", None),
    ("user_id wrong type", b"k-uid", b'{"request_id": "r-uid", "user_id": 42}', "wrong_type", "r-uid"),
    ("k wrong type", b"k-ktype", b'{"request_id": "r-ktype", "user_id": "u1", "k": "10"}', "wrong_type", "r-ktype"),
    ("k is a bool", b"k-kbool", b'{"request_id": "r-kbool", "user_id": "u1", "k": true}', "wrong_type", "r-kbool"),
    ("missing user_id", b"k-missing", b'{"request_id": "r-missing"}', "missing_field", "r-missing"),
    ("missing request_id, no key", None, b'{"user_id": "u1"}', "missing_field", None),
    ("k = 0", b"k-k0", b'{"request_id": "r-k0", "user_id": "u1", "k": 0}', "k_out_of_range", "r-k0"),
    ("k = 101", b"k-k101", b'{"request_id": "r-k101", "user_id": "u1", "k": 101}', "k_out_of_range", "r-k101"),
    ("empty request_id", b"k-empty", b'{"request_id": "", "user_id": "u1"}', "invalid_request_id", None),
    ("item_ids a string", b"k-it", b'{"request_id": "r-it", "user_id": "u1", "item_ids": "i1"}', "wrong_type", "r-it"),
    (
        "too many item_ids",
        b"k-manyitems",
        json.dumps({"request_id": "r-many", "user_id": "u1", "item_ids": [f"i{i}" for i in range(MAX_ITEM_IDS + 1)]})
        .encode(),
        "too_many_item_ids",
        "r-many",
    ),
]  # fmt: skip


def test_every_bad_input_is_dead_lettered_and_the_next_request_answered(world: ScorerWorld, dlq: Any) -> None:
    scorer = world.start("bad")
    listener = AnswerListener(world.settings.kafka)
    try:
        good = (b"good-1", json.dumps({"request_id": "good-1", "user_id": "u3", "k": 5}).encode())
        rerank = (
            b"good-rerank",
            json.dumps(
                {"request_id": "good-rerank", "user_id": "u3", "k": 3, "item_ids": ["i301", "i302", "i303", "i399"]}
            ).encode(),
        )
        records = [(key, value) for _, key, value, _, _ in BAD_INPUTS] + [good, rerank]
        offsets = _produce_raw(world, records)
        wait(lambda: listener.count({b"good-1", b"good-rerank"}) == 2, 60, "the good requests' answers")
        assert scorer.alive(), f"the scorer died; log: {scorer.log_path}"
        dead: dict[tuple[int, int], Any] = {}
        deadline = time.monotonic() + 30
        while len(dead) < len(BAD_INPUTS) and time.monotonic() < deadline:
            for msg in dlq.consume(100, 0.5):
                if msg.error() is None:
                    headers = header_map(msg.headers())
                    dead[(int(headers["recflow.source.partition"]), int(headers["recflow.source.offset"]))] = msg
        for (case, key, value, reason, request_id), (partition, offset) in zip(BAD_INPUTS, offsets, strict=False):
            msg = dead.get((partition, offset))
            assert msg is not None, f"{case}: no dead letter for partition {partition} offset {offset}"
            headers = header_map(msg.headers())
            assert headers["recflow.reason"] == reason, (case, headers)
            assert msg.value() == value and msg.key() == key, f"{case}: the dead letter must hold the original bytes"
            assert headers["recflow.source.topic"] == world.settings.kafka.score_requests_topic
            if key is not None:
                answers = listener.answers(key)
                assert answers, f"{case}: an identifiable caller gets an error answer"
                doc = answers[0].doc
                assert doc["error"]["code"] == reason and doc["source"] == "error", (case, doc)
                assert doc["request_id"] == request_id, (case, doc)
                assert doc["request"] == {"partition": partition, "offset": offset}, (case, doc)
        answer = listener.answers(b"good-1")[0].doc
        assert answer["error"] is None and len(answer["items"]) == 5 and answer["source"] == "model"
        assert answer["model_version"] == world.versions[0]
        assert answer["scores"] == sorted(answer["scores"], reverse=True)
        reranked = listener.answers(b"good-rerank")[0].doc
        assert set(reranked["items"]) <= {"i301", "i302", "i303", "i399"} and len(reranked["items"]) == 3, reranked
        wait(lambda: (scorer.status() or {}).get("dlq", 0) >= len(BAD_INPUTS), 10, "the status to count the DLQ")
    finally:
        listener.close()
        scorer.stop()


def _load(world: ScorerWorld, n: int, rate: float, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        out["sent"] = send_requests(world.settings.kafka, USERS, n=n, rate=rate, seed=7)

    thread = threading.Thread(target=run, name="load")
    thread.start()
    return thread


def test_swap_a_b_a_under_load_switches_cleanly(world: ScorerWorld) -> None:
    a, b = world.versions
    world.promote(a)
    scorer = world.start("swap")
    listener = AnswerListener(world.settings.kafka)
    since = int(time.time() * 1000)
    load: dict[str, Any] = {}
    try:
        thread = _load(world, n=3000, rate=200.0, out=load)
        time.sleep(3)
        world.promote(b)
        scorer.wait_version(b, 60)
        time.sleep(2)
        world.promote(a)
        scorer.wait_version(a, 60)
        thread.join()
        sent = load["sent"]
        listener.wait_for(set(sent), 60)
        result = report(sent, listener)
        assert result.errors == 0 and result.lost == 0, result
        assert set(result.model_versions) == {a, b}, result
        # on every partition, answers in request order switch A -> B -> A exactly twice: no request
        # served by a stale model (offsets are per partition; the request topic may have several)
        by_partition: dict[int, list[tuple[int, str]]] = {}
        for answers in map(listener.answers, sent):
            request = answers[0].doc["request"]
            by_partition.setdefault(request["partition"], []).append(
                (request["offset"], answers[0].doc["model_version"])
            )
        for partition, answered in by_partition.items():
            versions = [v for _, v in sorted(answered)]
            switches = [i for i in range(1, len(versions)) if versions[i] != versions[i - 1]]
            assert len(switches) == 2 and versions[0] == a and versions[-1] == a, (partition, switches)
        status = scorer.status()
        assert status is not None and status["swaps"] == 2, status
        print(f"swap under load: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms")
        wait(lambda: (scorer.status() or {}).get("lag") == 0, 30, "lag 0")
        assert reconcile(world.settings.kafka, since_ms=since).lost == 0
    finally:
        listener.close()
        scorer.stop()


def test_scorer_killed_under_load_answers_every_request_after_restart(world: ScorerWorld) -> None:
    group = f"recflow-test-kill-{uuid.uuid4().hex[:6]}"
    scorer = world.start("kill", group=group)
    listener = AnswerListener(world.settings.kafka)
    since = int(time.time() * 1000)
    load: dict[str, Any] = {}
    try:
        thread = _load(world, n=4000, rate=500.0, out=load)
        time.sleep(3)
        scorer.kill()  # SIGKILL: nothing flushed, nothing committed
        time.sleep(1)
        scorer = world.start("kill", group=group)
        thread.join()
        sent = load["sent"]
        assert listener.wait_for(set(sent), 90), "not every request was answered after the restart"
        result = report(sent, listener)
        assert result.lost == 0 and result.errors == 0, result
        print(f"kill under load: {result.duplicates} duplicate answers (at-least-once), {result.sent} requests")
        wait(lambda: (scorer.status() or {}).get("lag") == 0, 30, "lag 0")
        rec = reconcile(world.settings.kafka, since_ms=since)
        assert rec.lost == 0 and rec.requests >= len(sent), rec
    finally:
        listener.close()
        scorer.stop()


@pytest.mark.slow
def test_broker_down_two_minutes_under_load_loses_nothing(world: ScorerWorld, live_services: Settings) -> None:
    """Really stops this project's Kafka broker for RECFLOW_OUTAGE_S seconds (default 120) under load."""
    from recflow.services import manager

    outage_s = float(os.environ.get("RECFLOW_OUTAGE_S", "120"))
    kafka = next(s for s in manager.default_services(live_services) if s.name == "kafka")
    scorer = world.start("outage")
    listener = AnswerListener(world.settings.kafka)
    since = int(time.time() * 1000)
    load: dict[str, Any] = {}
    try:
        rate = 50.0
        thread = _load(world, n=int(rate * (outage_s + 20)), rate=rate, out=load)
        time.sleep(5)
        manager.services_down(live_services, services=[kafka])
        time.sleep(outage_s)
        manager.ensure_services_up(live_services, services=[kafka])
        thread.join()
        sent = load["sent"]
        listener.wait_for(set(sent), 180)
        result = report(sent, listener)
        assert scorer.alive(), f"the scorer died in the outage; log: {scorer.log_path}"
        assert result.lost == 0 and result.errors == 0, result
        wait(lambda: (scorer.status() or {}).get("lag") == 0, 60, "lag 0")
        rec = reconcile(world.settings.kafka, since_ms=since)
        assert rec.lost == 0, rec
        print(
            f"outage {outage_s:.0f} s: {result.sent} sent, {result.duplicates} duplicates, max {result.max_ms:.0f} ms"
        )
    finally:
        listener.close()
        scorer.stop()


def test_events_naming_another_version_or_digest_are_ignored_and_the_champion_keeps_serving(
    world: ScorerWorld,
) -> None:
    """The event is a hint: the scorer swaps only to what the registry resolves, and says why it ignored one."""
    from recflow.streaming.client import send_burst
    from recflow.streaming.events import encode, kafka_producer, model_update_event

    a, b = world.versions
    world.promote(a)
    champion, other = world.registry.get(a), world.registry.get(b)
    scorer = world.start("events", check_interval=600.0)  # only events trigger a check in this test
    producer = kafka_producer(world.settings.kafka)

    def publish(version: str, digest: str) -> None:
        event = model_update_event(
            version=version, digest=digest, uri=world.registry.uri(version), promoted_at=datetime.now(UTC)
        )
        producer.produce(world.settings.kafka.model_updates_topic, value=encode(event))
        producer.flush(10)

    def ignored() -> int:
        return int((scorer.status() or {}).get("ignored_model_events") or 0)

    try:
        assert scorer.wait_ready() == a
        # b is registered and its digest is genuine, but b is not the champion. The event watcher reads from
        # the topic's end once its partition is assigned: re-send until the first one is seen.
        deadline = time.monotonic() + 60
        while ignored() == 0 and time.monotonic() < deadline:
            publish(b, other.digest)
            wait_until = time.monotonic() + 3
            while ignored() == 0 and time.monotonic() < wait_until:
                time.sleep(0.1)
        status = scorer.status() or {}
        assert ignored() >= 1, status
        assert status["last_ignored_model_event"] == f"it names {b}, but the registry's champion is {a}", status
        before = ignored()
        publish(a, "0" * 64)  # the champion's name with bits nobody evaluated
        wait(lambda: ignored() == before + 1, 30, "the wrong-digest event to be ignored")
        status = scorer.status() or {}
        assert status["last_ignored_model_event"] == (
            f"it names {a} with digest {'0' * 64}, but the registry's digest is {champion.digest}"
        ), status
        assert (status["model_version"], status["model_digest"], status["swaps"]) == (a, champion.digest, 0), status
        answers = send_burst(world.settings.kafka, USERS[:50], n=20, k=5, timeout_s=60)
        assert answers.answered == 20 and answers.model_versions == (a,), answers
        log = scorer.log_path.read_text()
        assert "ignoring a model-update event: it names " + b in log and "with digest " + "0" * 64 in log
    finally:
        scorer.stop()


def test_scorer_members_counts_the_processes_of_the_scorer_group(world: ScorerWorld) -> None:
    """What batch_scoring's confirm_streaming_scorer checks first (its probe: test_kafka_provider_dag.py)."""
    from recflow.streaming.probe import scorer_members

    world.promote(world.versions[0])
    group = f"recflow-test-probe-{uuid.uuid4().hex[:6]}"
    assert scorer_members(world.settings.kafka, group) == 0
    scorer = world.start("probe", group=group)
    try:
        assert scorer_members(world.settings.kafka, group) == 1
    finally:
        scorer.stop()


def test_a_new_champion_that_fails_the_warm_up_never_serves(
    world: ScorerWorld, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The scorer process's own warm-up (the one every ``recflow serve`` worker runs) probes a new champion
    before the swap: one with NaN item factors loads but answers nothing, so it is refused, counted as a
    ``warm_up`` failure (``recflow_scorer_model_load_failures{stage="warm_up"}``) and the old one serves."""
    from recflow.streaming.client import send_burst

    a, _ = world.versions
    world.promote(a)
    folder = tmp_path_factory.mktemp("diverged") / "als-diverged"
    model = random_als(folder, n_users=1000, n_items=400, rank=16, seed=3)
    model.item_factors[:] = np.nan  # a diverged fit: the artifact is well-formed
    model.save(folder)
    created = datetime(2026, 11, 2, tzinfo=UTC)
    broken = world.registry.register(folder, family="als", metrics={"ndcg@10": 0.1}, lineage={}, created_at=created)
    scorer = world.start("warm-up", check_interval=2.0)  # the periodic check finds it even if the event is missed

    def warm_up_failures() -> int:
        return int(((scorer.status() or {}).get("model_load_failures") or {}).get("warm_up", 0))

    try:
        assert scorer.wait_ready() == a and warm_up_failures() == 0
        world.promote(broken.version)
        wait(lambda: warm_up_failures() >= 1, 90, "the warm-up of the diverged champion to fail")
        status = scorer.status() or {}
        assert (status["model_version"], status["swaps"]) == (a, 0), status
        assert f"warm_up of {broken.version} failed" in status["last_model_error"], status
        assert "no item for any of the 32 known probe users" in status["last_model_error"], status
        answers = send_burst(world.settings.kafka, USERS[:50], n=20, k=5, timeout_s=60)
        assert answers.answered == 20 and answers.model_versions == (a,), answers
    finally:
        scorer.stop()
        world.promote(a)
