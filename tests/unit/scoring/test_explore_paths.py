"""Batch and streaming explore identically: the batch workers' Arrow scorer and the Kafka scorer's answer
path, on one artifact with ``exploration.json``, give each user the same explore item in the same slot with
the same logging propensity on the same day; and the artifact file refuses a catalog it does not match."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recflow.constants import COL_ITEM, COL_LOGGING_PROPENSITY, COL_SOURCE, COL_USER
from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.exploration import EXPLORATION_FILE, read_explorer, write_exploration
from recflow.models.index import ArtifactError
from recflow.models.synthetic import random_als
from recflow.scoring.arrow import COL_CODE, COL_TRAIN_SEEN, ArrowScorer
from recflow.scoring.explore import SOURCE_EXPLORE, Explorer
from recflow.scoring.explore_policy import ExplorePolicy
from recflow.scoring.seen import COL_SEEN
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request, parse_request

DAY = date(2026, 11, 10)
POLICY = ExplorePolicy(new_within_days=3, min_interactions=0, slots=(3, 7), user_share=0.5, seed=11)
K = 8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ALS artifact whose items i0..i5 are new (first seen 0..5 days before DAY) with genre tags."""
    folder: Path = tmp_path_factory.mktemp("explore") / "model"
    model = random_als(folder, n_users=300, n_items=60, rank=8, seen_per_user=6, seed=5)
    items = list(model.index.items)
    first_seen = [DAY - timedelta(days=int(i[1:]) if int(i[1:]) < 6 else 90) for i in items]
    history = pd.DataFrame({COL_ITEM: items, "first_seen": first_seen, "interactions": [50] * len(items)})
    tags = {item: [f"g{int(item[1:]) % 3}"] for item in items}
    write_exploration(folder, POLICY, history, tags)
    return folder


def request(i: int, user: str, day: date) -> Request:
    body = json.dumps({"request_id": f"r{i}", "user_id": user, "k": K}).encode()
    ts = int(datetime(day.year, day.month, day.day, 15, tzinfo=UTC).timestamp() * 1000)
    parsed = parse_request(body, None, partition=0, offset=i, timestamp_ms=ts)
    assert isinstance(parsed, Request)
    return parsed


def batch_rows(model: Recommender, explorer: Explorer, users: list[str], day: date) -> pd.DataFrame:
    """What a batch worker writes for ``users`` (seen items: the model's, as streaming uses online)."""
    codes = model.index.user_codes(users)
    seen = model.seen.ragged(codes)
    rows = [seen.values[seen.offsets[j] : seen.offsets[j + 1]].tolist() for j in range(len(users))]
    rb = pa.RecordBatch.from_pydict(
        {
            COL_USER: pa.array(users, type=pa.string()),
            COL_CODE: pa.array([int(c) if c >= 0 else None for c in codes], type=pa.int32()),
            COL_SEEN: pa.array(rows, type=pa.list_(pa.int32())),
            COL_TRAIN_SEEN: pa.array(rows, type=pa.list_(pa.int32())),
        }
    )
    scorer = ArrowScorer(model, version="v1", k=K, n_candidates=None, explorer=explorer, day=day)
    return scorer(rb).to_pandas()


def test_a_user_gets_the_same_explore_slots_in_batch_and_in_streaming(artifact: Path) -> None:
    model = load_recommender(artifact)
    explorer = read_explorer(artifact, model)
    assert explorer is not None and explorer.policy == POLICY
    users = [f"u{i}" for i in range(300)] + ["stranger-1", "stranger-2"]
    batch = batch_rows(model, explorer, users, DAY)
    answers = score_requests(model, [request(i, u, DAY) for i, u in enumerate(users)], explorer)
    explored = 0
    for user, answer in zip(users, answers, strict=True):
        rows = batch[batch[COL_USER] == user].sort_values("rank")
        assert rows[COL_ITEM].tolist() == answer.items, user
        np.testing.assert_allclose(rows["score"].to_numpy(), answer.scores, atol=1e-6)  # answers keep 6 decimals
        slots = rows[rows[COL_SOURCE] == SOURCE_EXPLORE]
        expected = [
            {"rank": int(r["rank"]), "item_id": r[COL_ITEM], COL_LOGGING_PROPENSITY: r[COL_LOGGING_PROPENSITY]}
            for _, r in slots.iterrows()
        ]
        assert (answer.explore or []) == expected, user
        explored += bool(expected)
    assert 100 < explored < 200  # about half of the users explore (user_share 0.5)
    assert set(batch.loc[batch[COL_SOURCE] == SOURCE_EXPLORE, "rank"]) == {3, 7}
    assert batch.loc[batch[COL_SOURCE] != SOURCE_EXPLORE, COL_LOGGING_PROPENSITY].isna().all()
    # another day: other users explore, the same function decides in both paths
    other = batch_rows(model, explorer, users, DAY + timedelta(days=1))
    assert set(other.loc[other[COL_SOURCE] == SOURCE_EXPLORE, COL_USER]) != set(
        batch.loc[batch[COL_SOURCE] == SOURCE_EXPLORE, COL_USER]
    )


def test_an_exploration_file_for_another_catalog_is_refused(artifact: Path, tmp_path: Path) -> None:
    model = load_recommender(artifact)
    document = json.loads((artifact / EXPLORATION_FILE).read_text())
    document["items"][0] = "not-in-the-catalog"
    (tmp_path / EXPLORATION_FILE).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="catalog"):
        read_explorer(tmp_path, model)
    assert read_explorer(tmp_path / "none", model) is None
