"""The HTTP API (``recflow serve``) as a real process against the real S3 registry and Kafka broker.

Nothing is mocked: the server is ``python -m recflow.serving_http`` with two worker processes, models
come from the S3 registry (digest-checked), swaps are announced with a model-update event on Kafka as
the training DAG announces them. Latency goals live in ``make bench-serving``, not here.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from scorer_support import free_port, wait

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.models.synthetic import random_als
from recflow.registry import ModelRegistry
from recflow.serving_http.launcher import ServerProcess, start_server
from recflow.streaming.events import encode, kafka_producer, model_update_event
from recflow.streaming.protocol import MAX_ITEM_IDS, MAX_REQUEST_BYTES

WORKERS = 2


@dataclasses.dataclass
class ServeWorld:
    settings: Settings
    bucket: str
    registry: ModelRegistry
    versions: tuple[str, str]

    def start(self, tag: str) -> ServerProcess:
        return start_server(
            port=free_port(),
            workers=WORKERS,
            env={"RECFLOW_MODELS_BUCKET": self.bucket, "RECFLOW_SERVE_CHECK_INTERVAL": "30"},
            name=f"serve-test-{tag}",
        )

    def promote(self, version: str) -> tuple[str, str]:
        """Promote ``version`` and announce it as the training DAG does; returns (version, digest)."""
        current = self.registry.champion_record()
        record = self.registry.chain.swap(
            version, expected_champion=None if current is None else current.version, reason="serve test", actor="pytest"
        )
        producer = kafka_producer(self.settings.kafka)
        event = model_update_event(
            version=version, digest=record.digest, uri=record.uri, promoted_at=record.promoted_at
        )
        producer.produce(self.settings.kafka.model_updates_topic, value=encode(event))
        producer.flush(10)
        return version, record.digest


@contextmanager
def _world(settings: Settings, tmp: Path) -> Iterator[ServeWorld]:
    """Two random ALS versions in a bucket of their own (the server resolves that bucket's champion)."""
    bucket = f"recflow-serve-{uuid.uuid4().hex[:12]}"
    client = s3_client(settings.s3)
    client.create_bucket(Bucket=bucket)
    registry = ModelRegistry.from_settings(dataclasses.replace(settings.s3, models_bucket=bucket))
    versions = []
    for seed in (1, 2):
        random_als(tmp / f"m{seed}", n_users=1000, n_items=400, rank=16, seed=seed)
        created = datetime(2026, 11, 1, tzinfo=UTC)
        versions.append(
            registry.register(tmp / f"m{seed}", family="als", metrics={}, lineage={}, created_at=created).version
        )
    try:
        yield ServeWorld(settings, bucket, registry, (versions[0], versions[1]))
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def world(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeWorld]:
    with _world(live_services, tmp_path_factory.mktemp("serve-models")) as made:
        yield made


@pytest.fixture(scope="module")
def served(world: ServeWorld) -> Iterator[tuple[ServerProcess, str, str]]:
    """A server of the champion A; yields it with A's version and digest."""
    version, digest = world.promote(world.versions[0])
    server = world.start("main")
    try:
        server.wait_ready(120)
        yield server, version, digest
    finally:
        server.stop()


def test_not_ready_until_a_champion_is_loaded_then_ready(
    live_services: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Live at once; ready (and answering) only once the champion is loaded and warmed in every worker."""
    with _world(live_services, tmp_path_factory.mktemp("serve-empty")) as empty:
        server = empty.start("empty")
        try:
            wait(lambda: server.readiness()[0] != 0, 60, "the server to answer")
            assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
            status, body = server.readiness()
            assert status == 503 and body["code"] == "not_ready", body
            assert "no champion" in body["error"], body
            assert httpx.get(f"{server.url}/v2/models/recflow/ready").status_code == 503
            answer = httpx.post(f"{server.url}/v1/recommend", json={"user_id": "u1"})
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "not_ready"
            version, digest = empty.promote(empty.versions[1])
            model = server.wait_ready(60)
            assert model["versions"] == [version] and model["parameters"]["model_digest"] == digest
            for _ in range(20):  # every worker: the readiness of the server, not of one process
                assert server.readiness()[0] == 200
                assert httpx.post(f"{server.url}/v1/recommend", json={"user_id": "u1"}).status_code == 200
        finally:
            server.stop()


def test_every_answer_names_the_version_and_digest(served: tuple[ServerProcess, str, str]) -> None:
    server, version, digest = served
    requests = [
        {"user_id": "u3"},
        {"request_id": "r-known", "user_id": "u5", "k": 5},
        {"request_id": "r-unknown", "user_id": "u-nobody", "k": 3},
        {"request_id": "r-rerank", "user_id": "u3", "k": 2, "item_ids": ["i301", "i302", "i399", "i-unknown"]},
        {"request_id": "r-context", "user_id": "u7", "context": {"page": "home"}},
    ]
    with httpx.Client(base_url=server.url) as client:
        for body in requests * 5:
            answer = client.post("/v1/recommend", json=body)
            assert answer.status_code == 200, answer.text
            doc = answer.json()
            assert (doc["model_version"], doc["model_digest"]) == (version, digest)
            assert doc["user_id"] == body["user_id"]
            assert doc["request_id"] == body.get("request_id", doc["request_id"]) and doc["request_id"]
            assert len(doc["items"]) == len(doc["scores"]) == body.get("k", 10)
            assert doc["source"] == ("fallback" if body["user_id"] == "u-nobody" else "model")
            if body.get("item_ids"):
                assert set(doc["items"]) <= set(body["item_ids"])


OVERSIZED = b'{"user_id": "u1", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}'
FORM = {"content-type": "application/x-www-form-urlencoded"}
BAD_REQUESTS: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    # (case, method, path, body, headers, status, code)
    ("empty body", "POST", "/v1/recommend", b"", {}, 400, "null_value"),
    ("not JSON", "POST", "/v1/recommend", b"{nope", {}, 400, "undecodable"),
    ("not UTF-8", "POST", "/v1/recommend", b"\xff\xfe{", {}, 400, "undecodable"),
    ("an array", "POST", "/v1/recommend", b"[1, 2]", {}, 400, "not_an_object"),
    ("missing user_id", "POST", "/v1/recommend", b'{"request_id": "r"}', {}, 422, "missing_field"),
    ("user_id a number", "POST", "/v1/recommend", b'{"user_id": 42}', {}, 422, "wrong_type"),
    ("k a string", "POST", "/v1/recommend", b'{"user_id": "u1", "k": "10"}', {}, 422, "wrong_type"),
    ("request_id null", "POST", "/v1/recommend", b'{"request_id": null, "user_id": "u1"}', {}, 422, "wrong_type"),
    ("empty request_id", "POST", "/v1/recommend", b'{"request_id": "", "user_id": "u"}', {}, 422, "invalid_request_id"),
    ("lone surrogate", "POST", "/v1/recommend", b'{"user_id": "\\ud800"}', {}, 422, "invalid_user_id"),
    ("k = 0", "POST", "/v1/recommend", b'{"user_id": "u1", "k": 0}', {}, 422, "k_out_of_range"),
    ("k = 101", "POST", "/v1/recommend", b'{"user_id": "u1", "k": 101}', {}, 422, "k_out_of_range"),
    (
        "too many item_ids",
        "POST",
        "/v1/recommend",
        json.dumps({"user_id": "u1", "item_ids": [f"i{i}" for i in range(MAX_ITEM_IDS + 1)]}).encode(),
        {},
        422,
        "too_many_item_ids",
    ),
    ("oversized body", "POST", "/v1/recommend", OVERSIZED, {}, 413, "oversize"),
    ("form body", "POST", "/v1/recommend", b"user_id=u1", FORM, 415, "unsupported_media_type"),
    ("unknown path", "GET", "/v1/nothing", None, {}, 404, "not_found"),
    ("GET recommend", "GET", "/v1/recommend", None, {}, 405, "method_not_allowed"),
    ("infer without inputs", "POST", "/v2/models/recflow/infer", b'{"id": "x"}', {}, 422, "missing_field"),
    ("infer k out of range", "POST", "/v2/models/recflow/infer",
     b'{"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u1"]},'
     b' {"name": "k", "shape": [1], "datatype": "INT32", "data": [0]}]}', {}, 422, "k_out_of_range"),
    ("infer shape mismatch", "POST", "/v2/models/recflow/infer",
     b'{"inputs": [{"name": "user_id", "shape": [3], "datatype": "BYTES", "data": ["u1"]}]}', {}, 422, "wrong_type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "headers", "status", "code"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_every_bad_request_gets_its_code_and_no_traceback(
    served: tuple[ServerProcess, str, str],
    case: str,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    server, _, _ = served
    answer = httpx.request(
        method, f"{server.url}{path}", content=body, headers={"content-type": "application/json", **headers}
    )
    assert answer.status_code == status, f"{case}: {answer.status_code} {answer.text[:300]}"
    doc = answer.json()
    got = doc["code"] if path.startswith("/v2/") else doc["error"]["code"]
    assert got == code, f"{case}: {doc}"
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    assert server.alive()


def test_the_open_inference_protocol(served: tuple[ServerProcess, str, str]) -> None:
    server, version, digest = served
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/models/recflow/ready").status_code == 200
        meta = client.get("/v2/models/recflow").json()
        assert meta["name"] == "recflow" and meta["versions"] == [version]
        call = {
            "id": "call-1",
            "inputs": [
                {"name": "user_id", "shape": [3], "datatype": "BYTES", "data": ["u3", "u4", "u-nobody"]},
                {"name": "k", "shape": [1], "datatype": "INT64", "data": [4]},
            ],
        }
        answer = client.post("/v2/models/recflow/infer", json=call)
        assert answer.status_code == 200, answer.text
        doc = answer.json()
        assert (doc["model_name"], doc["model_version"], doc["id"]) == ("recflow", version, "call-1")
        assert doc["parameters"]["model_digest"] == digest
        outputs = {o["name"]: o for o in doc["outputs"]}
        assert outputs["items"]["shape"] == outputs["scores"]["shape"] == [3, 4]
        assert outputs["counts"]["data"] == [4, 4, 4]
        assert outputs["source"]["data"] == ["model", "model", "fallback"]
        single = client.post("/v1/recommend", json={"user_id": "u3", "k": 4}).json()
        assert outputs["items"]["data"][:4] == single["items"]  # the same core answers both


def test_a_swap_under_load_has_no_error_and_no_readiness_gap(
    world: ServeWorld, served: tuple[ServerProcess, str, str]
) -> None:
    """A -> B -> A while 4 clients send requests and a probe polls readiness: every answer is 200, and
    names a (version, digest) pair the registry promoted; the probe never sees anything but 200."""
    server, version_a, digest_a = served
    stop = threading.Event()
    seen: list[tuple[int, Any, Any]] = []
    readiness: list[int] = []
    lock = threading.Lock()

    def load(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                answer = client.post("/v1/recommend", json={"user_id": f"u{(n * 997 + i) % 1200}", "k": 5})
                doc = answer.json()
                with lock:
                    seen.append((answer.status_code, doc.get("model_version"), doc.get("model_digest")))

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                readiness.append(client.get("/v2/health/ready").status_code)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)] + [threading.Thread(target=probe)]
    for thread in threads:
        thread.start()
    try:
        pairs = {(version_a, digest_a)}
        for version in (world.versions[1], version_a):
            pair = world.promote(version)
            pairs.add(pair)

            def serving_only(pair: tuple[str, str] = pair) -> bool:
                with lock:
                    tail = seen[-50:]
                return len(tail) == 50 and all((v, d) == pair for _, v, d in tail)

            wait(serving_only, 90, f"every worker to serve {pair[0]}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert seen and readiness
    errors = [s for s in seen if s[0] != 200]
    assert not errors, f"{len(errors)} of {len(seen)} answers failed, first {errors[:3]}"
    assert {(v, d) for _, v, d in seen} == pairs
    assert set(readiness) == {200}, f"readiness answered {sorted(set(readiness))} during the swaps"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'recflow_http_requests_total{endpoint="recommend",status="200"}' in metrics
