"""The HTTP API's error paths a real server cannot be made to produce: a failing model, an internal bug,
workers that are not all ready, and the micro-batching of concurrent requests.

The app is the real Starlette app in-process (``TestClient``); the happy paths, every request-side error
code and the swap run against a real ``recflow serve`` process in ``tests/integration/test_serve_http.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from recflow.models.artifact import load_recommender
from recflow.models.synthetic import random_als
from recflow.serving_http import app as app_module
from recflow.serving_http.app import build_app
from recflow.serving_http.batcher import Batcher
from recflow.serving_http.champion import ServingChampion
from recflow.streaming.follower import ChampionFollower, ServingModel
from recflow.streaming.protocol import Request


def _champion(tmp: Path, model: ServingModel | None, **kwargs: Any) -> ServingChampion:
    follower = ChampionFollower(registry=None, cache_root=tmp)  # type: ignore[arg-type]
    follower.current = model
    return ServingChampion(follower, **kwargs)


@pytest.fixture
def model(tmp_path: Path) -> ServingModel:
    random_als(tmp_path / "m", n_users=20, n_items=10, rank=4, seen_per_user=2)
    return ServingModel("v1", load_recommender(tmp_path / "m"), tmp_path / "m", "digest-1")


class BrokenRecommender:
    """A model whose scoring raises (a corrupt artifact that loaded)."""

    @property
    def index(self) -> Any:
        raise RuntimeError("secret internal detail")


def test_a_failing_model_answers_scoring_failed_without_the_exception(tmp_path: Path) -> None:
    broken = ServingModel("v-broken", BrokenRecommender(), tmp_path, "d")  # type: ignore[arg-type]
    client = TestClient(build_app(_champion(tmp_path, broken)))
    answer = client.post("/v1/recommend", json={"request_id": "r1", "user_id": "u1"})
    assert answer.status_code == 500
    assert answer.json() == {
        "request_id": "r1",
        "error": {"code": "scoring_failed", "message": "scoring failed; the server log has the details"},
    }
    infer = client.post(
        "/v2/models/recflow/infer",
        json={"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u1"]}]},
    )
    assert infer.status_code == 500 and infer.json()["code"] == "scoring_failed"
    assert "secret" not in answer.text + infer.text


def test_an_internal_error_is_a_code_not_a_traceback(
    tmp_path: Path, model: ServingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*args: Any) -> Any:
        raise KeyError("secret internal detail")

    monkeypatch.setattr(app_module.oip, "encode_infer", bug)
    client = TestClient(build_app(_champion(tmp_path, model)))
    answer = client.post(
        "/v2/models/recflow/infer",
        json={"inputs": [{"name": "user_id", "shape": [1], "datatype": "BYTES", "data": ["u1"]}]},
    )
    assert answer.status_code == 500 and answer.json()["code"] == "internal_error"
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_not_ready_until_a_model_is_loaded(tmp_path: Path) -> None:
    client = TestClient(build_app(_champion(tmp_path, None)))
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    answer = client.post("/v1/recommend", json={"user_id": "u1"})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "not_ready"


def test_ready_only_when_every_worker_has_loaded_the_champion(tmp_path: Path, model: ServingModel) -> None:
    ready_dir = tmp_path / "ready"
    ready_dir.mkdir()
    (ready_dir / str(os.getpid())).touch()
    (ready_dir / "999999999").touch()  # a worker that died: its marker does not count
    champion = _champion(tmp_path, model, ready_dir=ready_dir, workers=2)
    client = TestClient(build_app(champion))
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503 and "1 of 2 workers" in ready.json()["error"]
    (ready_dir / str(os.getppid())).touch()  # a second live worker
    assert client.get("/v2/health/ready").status_code == 200


def test_concurrent_requests_are_scored_in_one_call(model: ServingModel) -> None:
    batcher = Batcher(lambda: model)

    async def three() -> list[Any]:
        requests = [Request(f"r{i}", f"u{i}", 3, None, None, None, -1, -1, 0) for i in range(3)]
        return await asyncio.gather(*(batcher.score(r) for r in requests))

    answers = asyncio.run(three())
    assert batcher.batches == 1
    assert [m.version for m, _ in answers] == ["v1"] * 3 and all(len(s.items) == 3 for _, s in answers)


def test_an_http_answer_carries_the_kafka_answers_propensities_and_eligible_offers(
    tmp_path: Path, offered_model: Path
) -> None:
    """One scoring core and one offer rule: the HTTP answer's propensities and offers are the Kafka path's."""
    from recflow.streaming.answers import catalog_from_env, eligible_offers, score_requests
    from recflow.streaming.protocol import parse_request

    served = ServingModel("v1", load_recommender(offered_model), offered_model, "digest-1")
    client = TestClient(build_app(_champion(tmp_path, served)))
    answer = client.post("/v1/recommend", json={"request_id": "r1", "user_id": "u1", "k": 8}).json()
    request = parse_request(
        b'{"request_id": "r1", "user_id": "u1", "k": 8}', None, partition=0, offset=0, timestamp_ms=0
    )
    assert isinstance(request, Request)
    (kafka,) = score_requests(served.recommender, [request])
    catalog = catalog_from_env()
    assert catalog is not None
    assert answer["items"] == kafka.items and answer["propensities"] == kafka.propensities
    assert all(p is not None and 0 <= p <= 1 for p in answer["propensities"])
    assert answer["offers"] and answer["offers"] == eligible_offers(kafka, catalog)  # threshold 0 is always met
    assert answer["catalog_digest"] == catalog.digest


def test_the_http_answer_has_every_field_of_the_kafka_answer_and_the_digest(
    model: ServingModel, tmp_path: Path
) -> None:
    """Both paths build their answer with ``answer_body``: the HTTP one adds only ``model_digest``, the
    Kafka one only its transport fields (``error``, ``request``, ``timing``)."""
    import json

    from recflow.streaming.protocol import encode_answer

    client = TestClient(build_app(_champion(tmp_path, model)))
    http = client.post("/v1/recommend", json={"request_id": "r1", "user_id": "u1", "k": 3}).json()
    request = Request("r1", "u1", 3, None, None, None, 0, 0, 0)
    kafka = json.loads(encode_answer(request, items=[], scores=[], source="model", model_version="v1", timing={}))
    assert set(http) - {"model_digest"} == set(kafka) - {"error", "request", "timing"}
    assert http["model_version"] == "v1" and http["model_digest"] == "digest-1"
