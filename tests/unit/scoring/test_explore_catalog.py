"""An item nobody has bought yet is explorable: it comes from the catalog (the lake's ``items/``), not the
model's catalog, reaches a top-K only through an exploration slot, identically in the batch workers' Arrow
scorer and the Kafka answer path (even when the batch's lake seen items differ from the training items),
carries no score and no calibrated propensity, passes the batch checks, and is never a model hit."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recflow.batch.checks import ExpectedUsers, user_checks
from recflow.constants import COL_ITEM, COL_LOGGING_PROPENSITY, COL_PROPENSITY, COL_SCORE, COL_SOURCE, COL_USER
from recflow.data.item_history import COL_FIRST_SEEN, COL_INTERACTIONS, COL_TAGS, catalog_history
from recflow.evaluation.exploration import explore_line, model_slots_ndcg
from recflow.evaluation.metrics import ndcg_at_k
from recflow.models.artifact import load_recommender
from recflow.models.base import Recommender
from recflow.models.exploration import read_explorer, write_exploration
from recflow.models.popularity import PopularityRecommender
from recflow.models.synthetic import random_als
from recflow.scoring.arrow import COL_CODE, COL_FACTORS, COL_TRAIN_SEEN, ArrowScorer
from recflow.scoring.core import Ragged, UserBatch, score_batch
from recflow.scoring.explore import SOURCE_EXPLORE, Explorer, ItemHistory
from recflow.scoring.explore_policy import ExplorePolicy
from recflow.scoring.seen import COL_SEEN
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request, encode_answer, parse_request

DAY = date(2026, 11, 10)
POLICY = ExplorePolicy(new_within_days=2, min_interactions=0, slots=(4,), user_share=0.5, seed=3)
K = 8
LAUNCH, FUTURE = "launch-1", "launch-2"


def test_catalog_history_adds_items_without_events_at_their_launch_or_the_day_the_catalog_was_read() -> None:
    events = pd.DataFrame({COL_ITEM: ["b", "a"], COL_FIRST_SEEN: [DAY, DAY], COL_INTERACTIONS: [3, 9]})
    items = pd.DataFrame(
        {COL_ITEM: ["a", "c", "d"], COL_TAGS: [["x"], ["y"], []], COL_FIRST_SEEN: [None, None, DAY + timedelta(5)]}
    )
    out = catalog_history(events, items, DAY + timedelta(1))
    assert out[COL_ITEM].tolist() == ["a", "b", "c", "d"]
    assert out[COL_INTERACTIONS].tolist() == [9, 3, 0, 0]
    assert out[COL_FIRST_SEEN].tolist() == [DAY, DAY, DAY + timedelta(1), DAY + timedelta(5)]
    assert catalog_history(events, None, DAY) is events


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ALS artifact whose items i0..i3 are new (first seen yesterday) and the rest old, and whose
    catalog also lists two items with no event: ``launch-1`` launched yesterday and ``launch-2`` launching
    in three days."""
    folder: Path = tmp_path_factory.mktemp("explore-catalog") / "model"
    model = random_als(folder, n_users=300, n_items=60, rank=8, seen_per_user=6, seed=9)
    items = list(model.index.items)
    first = [DAY - timedelta(1 if int(item[1:]) < 4 else 90) for item in items]
    events = pd.DataFrame({COL_ITEM: items, COL_FIRST_SEEN: first, COL_INTERACTIONS: 50})
    catalog = pd.DataFrame(
        {
            COL_ITEM: [*items, LAUNCH, FUTURE],
            COL_TAGS: [[f"g{i % 3}"] for i in range(60)] + [["g0"], ["g1"]],
            COL_FIRST_SEEN: [None] * 60 + [DAY - timedelta(1), DAY + timedelta(3)],
        }
    )
    history = catalog_history(events, catalog, DAY - timedelta(1))
    write_exploration(folder, POLICY, history, dict(zip(catalog[COL_ITEM], catalog[COL_TAGS], strict=True)))
    return folder


def request(i: int, user: str) -> Request:
    body = json.dumps({"request_id": f"r{i}", "user_id": user, "k": K}).encode()
    ts = int(datetime(DAY.year, DAY.month, DAY.day, 9, tzinfo=UTC).timestamp() * 1000)
    parsed = parse_request(body, None, partition=0, offset=i, timestamp_ms=ts)
    assert isinstance(parsed, Request)
    return parsed


def lists(ragged: Ragged) -> list[list[int]]:
    return [ragged.values[a:b].tolist() for a, b in zip(ragged.offsets[:-1], ragged.offsets[1:], strict=True)]


def batch_table(
    model: Recommender, explorer: Explorer, users: list[str]
) -> tuple[pa.Table, ArrowScorer, UserBatch, Ragged]:
    """What a batch worker writes with the item side it is shipped (``for_workers``) and each user's factor
    row: seen = the lake's (here: the training items plus the new items i0 and i1, bought since),
    train_seen = the artifact's training items."""
    codes = model.index.user_codes(users)
    trained = model.seen.ragged(codes)
    lake = [row + [int(c) for c in model.index.item_codes(["i0", "i1"]) if c not in row] for row in lists(trained)]
    rb = pa.RecordBatch.from_pydict(
        {
            COL_USER: pa.array(users, type=pa.string()),
            COL_CODE: pa.array([int(c) if c >= 0 else None for c in codes], type=pa.int32()),
            COL_SEEN: pa.array(lake, type=pa.list_(pa.int32())),
            COL_TRAIN_SEEN: pa.array(lists(trained), type=pa.list_(pa.int32())),
            COL_FACTORS: pa.array(
                [model.user_factors[c].tolist() if c >= 0 else None for c in codes],  # type: ignore[attr-defined]
                type=pa.list_(pa.float32()),
            ),
        }
    )
    scorer = ArrowScorer(model.for_workers(), version="v1", k=K, n_candidates=None, explorer=explorer, day=DAY)
    seen = Ragged.from_lists(lake)
    return pa.Table.from_batches([scorer(rb)]), scorer, UserBatch(codes=codes, seen=seen), trained


def test_an_item_without_interactions_is_explored_identically_in_batch_and_streaming(artifact: Path) -> None:
    model = load_recommender(artifact)
    explorer = read_explorer(artifact, model)
    assert explorer is not None
    assert explorer.history.extra_ids.tolist() == [LAUNCH, FUTURE]
    assert model.index.item_codes([LAUNCH, FUTURE]).tolist() == [-1, -1]  # the model never saw them
    users = [f"u{i}" for i in range(300)] + ["stranger"]
    table, scorer, inputs, trained = batch_table(model, explorer, users)
    batch = table.to_pandas()
    answers = score_requests(model, [request(i, u) for i, u in enumerate(users)], explorer)
    for user, answer in zip(users, answers, strict=True):
        rows = batch[batch[COL_USER] == user].sort_values("rank")
        slots = rows[rows[COL_SOURCE] == SOURCE_EXPLORE]
        expected = [
            {"rank": int(r["rank"]), "item_id": r[COL_ITEM], COL_LOGGING_PROPENSITY: r[COL_LOGGING_PROPENSITY]}
            for _, r in slots.iterrows()
        ]
        assert (answer.explore or []) == expected, user  # the same draw, though the lake's seen items differ
    launched = batch[batch[COL_ITEM] == LAUNCH]
    assert len(launched) > 5 and set(launched[COL_SOURCE]) == {SOURCE_EXPLORE} and set(launched["rank"]) == {4}
    assert launched[COL_SCORE].isna().all() and launched[COL_PROPENSITY].isna().all()  # no model score to map
    assert ((launched[COL_LOGGING_PROPENSITY] > 0) & (launched[COL_LOGGING_PROPENSITY] <= 0.5)).all()
    assert FUTURE not in set(batch[COL_ITEM])  # launches after the scored day: never shown
    assert LAUNCH not in set(batch.loc[batch[COL_SOURCE] != SOURCE_EXPLORE, COL_ITEM])
    # the answer carries null for the item's score and propensity, and encodes as JSON null
    user = launched[COL_USER].iloc[0]
    answer = answers[users.index(user)]
    assert answer.scores[3] is None and answer.propensities[3] is None and answer.items[3] == LAUNCH
    wire = encode_answer(request(0, user), items=answer.items, scores=answer.scores, source=answer.source,
                         model_version="v1", timing={}, propensities=answer.propensities)  # fmt: skip
    assert json.loads(wire)["scores"][3] is None
    # the batch checks take the row: complete, a known item, nothing else broken; explore rows are judged
    # against the training items (a new item bought since training may come back in a slot)
    expected_users = ExpectedUsers.of_batch(model, K, pa.array(users), inputs.codes, inputs.seen, trained)
    checks = user_checks(table, expected_users, scorer.items).to_pandas()
    for column in ("incomplete_rows", "unknown_items", "duplicate_items", "scores_out_of_order", "seen_items"):
        assert (checks[column] == 0).all(), column
    assert (checks["user_rows"] == checks["expected_rows"]).all()
    # an explore slot holding one of the user's training items is caught
    explored = batch[(batch[COL_SOURCE] == SOURCE_EXPLORE) & (batch[COL_USER] == users[0])]
    if explored.empty:
        explored = batch[batch[COL_SOURCE] == SOURCE_EXPLORE].head(1)
    row = int(explored.index[0])
    own = model.index.item_array[trained.take(np.asarray([users.index(batch.at[row, COL_USER])])).values[0]]
    planted = table.set_column(2, COL_ITEM, pa.array(batch[COL_ITEM].where(batch.index != row, own)))
    planted_checks = user_checks(planted, expected_users, scorer.items).to_pandas()
    assert planted_checks["seen_items"].sum() == 1


def test_an_explored_new_item_is_never_a_model_hit(artifact: Path) -> None:
    model = load_recommender(artifact)
    explorer = read_explorer(artifact, model)
    assert explorer is not None
    users = [f"u{i}" for i in range(300)]
    slates = batch_table(model, explorer, users)[0].to_pandas()
    explored = slates.loc[slates[COL_ITEM] == LAUNCH, COL_USER].unique()
    truth = pd.DataFrame({COL_USER: explored, COL_ITEM: LAUNCH})  # every shown user takes it
    assert explore_line(slates, truth, k=K)["hits"] == len(explored)
    assert model_slots_ndcg(slates, truth, k=K) == 0.0  # the model's own slots caught none of it
    assert ndcg_at_k(truth, slates.assign(score=-slates["rank"].astype(float)), k=K) > 0.1  # as a hit it would


def test_a_drawn_item_the_model_already_listed_is_shown_once_in_its_slot() -> None:
    n_items = 12
    rows = [(f"u{u}", f"o{i:02d}") for i in range(n_items) for u in range(n_items + 2 - i)]
    model = PopularityRecommender.fit(pd.DataFrame(rows, columns=[COL_USER, COL_ITEM]))
    first_seen = np.full(n_items, DAY.toordinal() - 60, dtype=np.int64)
    new = int(model.index.item_codes(["o01"])[0])  # the second most popular item counts as new
    first_seen[new] = DAY.toordinal()
    explorer = Explorer(
        ExplorePolicy(new_within_days=1, min_interactions=0, slots=(6,), user_share=1.0),
        ItemHistory(first_seen, np.full(n_items, 100, dtype=np.int64)),
    )
    n = 5
    batch = UserBatch(codes=np.full(n, -1, dtype=np.int64), seen=Ragged.empty(n))
    top = score_batch(model, batch, k=8)
    assert (top.items[:, 1] == new).all()
    slate = explorer.apply(model, top, batch, np.asarray([f"w{i}" for i in range(n)], dtype=object), DAY)
    for row in range(n):
        assert (slate.top.items[row] == new).sum() == 1 and slate.top.items[row, 5] == new
        assert slate.explore[row, 5] and not slate.explore[row, 1]
    # the model's other items keep their order, moved up where the duplicate left
    others = [c for c in top.items[0].tolist() if c != new]
    assert [c for c in slate.top.items[0].tolist() if c != new] == others[:7]


def test_a_batch_without_the_training_items_cannot_explore(artifact: Path) -> None:
    """Drawing against the lake's seen items instead would differ from streaming: refused, not guessed."""
    model = load_recommender(artifact)
    explorer = read_explorer(artifact, model)
    assert explorer is not None
    rb = pa.RecordBatch.from_pydict(
        {
            COL_USER: pa.array(["u1"], type=pa.string()),
            COL_CODE: pa.array([int(model.index.user_codes(["u1"])[0])], type=pa.int32()),
            COL_SEEN: pa.array([[]], type=pa.list_(pa.int32())),
        }
    )
    scorer = ArrowScorer(model, version="v1", k=K, n_candidates=None, explorer=explorer, day=DAY)
    with pytest.raises(ValueError, match=COL_TRAIN_SEEN):
        scorer(rb)
    assert len(ArrowScorer(model, version="v1", k=K, n_candidates=None)(rb)) == K  # no explorer: not needed
