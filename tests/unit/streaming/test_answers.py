"""The scorer's answer path on a real (random) ALS artifact, against a brute-force NumPy oracle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.synthetic import random_als
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request, parse_request


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    folder: Path = tmp_path_factory.mktemp("als") / "model"
    random_als(folder, n_users=50, n_items=40, rank=8, seen_per_user=5, seed=3)
    return load_recommender(folder)


def request(i: int, user: str, k: int = 5, item_ids: list[str] | None = None) -> Request:
    body: dict[str, object] = {"request_id": f"r{i}", "user_id": user, "k": k}
    if item_ids is not None:
        body["item_ids"] = item_ids
    parsed = parse_request(json.dumps(body).encode(), None, partition=0, offset=i, timestamp_ms=0)
    assert isinstance(parsed, Request)
    return parsed


def oracle(model: Recommender, user: str, k: int, among: list[str] | None = None) -> list[str]:
    """Top-k by brute force: dot products, the user's training items removed, optional candidate list."""
    code = int(model.index.user_codes([user])[0])
    scores = model.user_factors[code] @ model.item_factors.T  # type: ignore[attr-defined]
    seen = set(model.seen.indices[model.seen.indptr[code] : model.seen.indptr[code + 1]].tolist())
    items = model.index.items
    allowed = [i for i in range(len(items)) if i not in seen and (among is None or items[i] in among)]
    return [items[i] for i in sorted(allowed, key=lambda i: (-scores[i], i))[:k]]


def test_a_mixed_batch_gets_each_request_its_own_k_and_candidates(model: Recommender) -> None:
    candidates = ["i1", "i2", "i3", "i30", "no-such-item"]
    reqs = [
        request(0, "u1", k=3),
        request(1, "u2", k=7),
        request(2, "u1", k=2, item_ids=candidates),
        request(3, "stranger", k=4),
        request(4, "stranger", k=2, item_ids=["i5", "i6", "i7"]),
    ]
    got = score_requests(model, reqs)
    assert [len(g.items) for g in got[:2]] == [3, 7]
    assert got[0].items == oracle(model, "u1", 3) and got[1].items == oracle(model, "u2", 7)
    assert got[2].items == oracle(model, "u1", 2, among=candidates)
    assert [g.source for g in got] == ["model", "model", "model", "fallback", "fallback"]
    assert all(0 <= s <= 1 for s in got[3].scores)  # the fallback is on a stated scale
    assert set(got[4].items) <= {"i5", "i6", "i7"} and len(got[4].items) == 2  # re-rank holds for cold users
    for g in got:
        assert g.scores == sorted(g.scores, reverse=True)
