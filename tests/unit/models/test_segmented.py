"""The segment router and the model per segment: nearest centroid after scaling, the segment's own
ranking for its users, the same routing in the batch workers' Arrow scorer and in the Kafka answer path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.artifact import load_recommender
from recflow.models.index import ArtifactError, IdIndex, SeenItems
from recflow.models.popularity import PopularityRecommender
from recflow.models.segmented import SegmentedRecommender, SegmentRouter
from recflow.scoring.arrow import COL_CODE, ArrowScorer
from recflow.scoring.seen import COL_SEEN
from recflow.streaming.answers import score_requests
from recflow.streaming.protocol import Request, parse_request

ROUTER = SegmentRouter(
    ("activity", "spend"),
    mean=np.array([10.0, 100.0]),
    scale=np.array([2.0, 50.0]),
    centroids=np.array([[-1.0, -1.0], [1.0, 1.0]]),
)


def test_the_router_scales_then_takes_the_nearest_centroid() -> None:
    features = np.array([[8.0, 50.0], [12.0, 150.0], [10.5, 40.0], [np.nan, 100.0]])
    # scaled: (-1, -1) -> 0; (1, 1) -> 1; (0.25, -1.2) -> 0 (distance 1.25^2+0.2^2 < 0.75^2+2.2^2)
    assert ROUTER.route(features).tolist() == [0, 1, 0, -1]
    again = SegmentRouter.from_dict(json.loads(json.dumps(ROUTER.as_dict())))
    assert again.route(features).tolist() == [0, 1, 0, -1]
    with pytest.raises(ValueError, match="centroids"):
        SegmentRouter(("a",), np.zeros(1), np.ones(1), np.zeros((2, 2)))


def segmented(folder: Path) -> SegmentedRecommender:
    """Users a* in segment 0 buy x-items, b* in segment 1 buy y-items; each segment's popularity model."""
    a = [(f"a{u}", f"x{i}") for u in range(4) for i in range(4 - u % 2)]
    b = [(f"b{u}", f"y{i}") for u in range(4) for i in range(4 - u % 2)] + [("b0", "x0")]
    pairs = pd.DataFrame(a + b, columns=[COL_USER, COL_ITEM])
    index = IdIndex.from_frame(pairs)
    parts = [PopularityRecommender.fit(pd.DataFrame(p, columns=[COL_USER, COL_ITEM])) for p in (a, b)]
    user_segment = np.array([0 if u.startswith("a") else 1 for u in index.users])
    model = SegmentedRecommender(index, SeenItems.from_frame(pairs, index), ROUTER, user_segment, parts)
    model.save(folder)
    return model


def request(i: int, user: str) -> Request:
    body = json.dumps({"request_id": f"r{i}", "user_id": user, "k": 5}).encode()
    ts = int(datetime(2026, 11, 10, tzinfo=UTC).timestamp() * 1000)
    parsed = parse_request(body, None, partition=0, offset=i, timestamp_ms=ts)
    assert isinstance(parsed, Request)
    return parsed


def test_a_user_is_routed_to_the_same_segment_in_batch_and_in_streaming(tmp_path: Path) -> None:
    segmented(tmp_path / "m")
    model = load_recommender(tmp_path / "m")
    assert isinstance(model, SegmentedRecommender) and len(model.segments) == 2
    users = ["a1", "a3", "b1", "b2", "stranger"]
    answers = score_requests(model, [request(i, u) for i, u in enumerate(users)])
    codes = model.index.user_codes(users)
    seen = model.seen.ragged(codes)
    rb = pa.RecordBatch.from_pydict(
        {
            COL_USER: pa.array(users, type=pa.string()),
            COL_CODE: pa.array([int(c) if c >= 0 else None for c in codes], type=pa.int32()),
            COL_SEEN: pa.array(
                [seen.values[seen.offsets[j] : seen.offsets[j + 1]].tolist() for j in range(len(users))],
                type=pa.list_(pa.int32()),
            ),
        }
    )
    batch = ArrowScorer(model.for_workers(), version="v", k=5, n_candidates=None)(rb).to_pandas()
    for user, answer in zip(users, answers, strict=True):
        assert batch.loc[batch[COL_USER] == user, COL_ITEM].tolist() == answer.items, user
    by_user = dict(zip(users, answers, strict=True))
    # a1 (segment 0) saw x0..x2: its segment's model ranks x3 first, then the other segment's items
    assert by_user["a1"].items[0] == "x3" and by_user["a1"].source == "model"
    assert all(item.startswith("y") for item in by_user["a1"].items[1:])
    # b1 (segment 1): y3 first, then x0 (its segment saw it once), then the other x items by popularity
    assert by_user["b1"].items[:2] == ["y3", "x0"]
    assert by_user["stranger"].source == "fallback"  # no features: the global fallback


def test_an_artifact_whose_segments_do_not_match_is_refused(tmp_path: Path) -> None:
    model = segmented(tmp_path / "m")
    with pytest.raises(ArtifactError, match="segment models"):
        SegmentedRecommender(model.index, model.seen, ROUTER, model.user_segment, model.segments[:1])
    with pytest.raises(ArtifactError, match="user segments"):
        SegmentedRecommender(model.index, model.seen, ROUTER, model.user_segment[:-1], model.segments)
