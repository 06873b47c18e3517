"""The sequence family: transition and history weights on a hand-worked example, the blend, the artifact.

Hand-worked example (window 2, step_decay 0.5, backward_weight 0.25, history 2, history_decay 0.5);
item codes w=0, x=1, y=2, z=3 (sorted ids):

    user a: x@1 y@2 z@3                  -> x>y 1, y>z 1 (d=1); x>z 0.5 (d=2)
    user b: y@1 x@2 w@5 z@5 (tie: w < z) -> y>x 1, x>w 1, w>z 1 (d=1); y>w 0.5, x>z 0.5 (d=2)
    user c: z@1 z@2 y@3                  -> z>z skipped, z>y 1 (d=1); z>y 0.5 (d=2)

Forward F: x>y 1, y>z 1, x>z 1, y>x 1, x>w 1, w>z 1, y>w 0.5, z>y 1.5, so T = F + 0.25 F^T has
T[x,y] = T[y,x] = 1.25, T[y,z] = 1 + 0.25 * 1.5 = 1.375, T[z,y] = 1.5 + 0.25 = 1.75, T[x,z] = 1,
T[z,x] = 0.25, T[x,w] = 1, T[w,x] = 0.25, T[w,z] = 1, T[z,w] = 0.25, T[y,w] = 0.5, T[w,y] = 0.125.
Recent items (latest first, weights 1, 0.5): a: z, y; b: z, w (the tie, latest first by item id); c: y, z.
User a's scores h_a T = T[z] + 0.5 T[y] = [0.25 + 0.25, 0.25 + 0.625, 1.75, 0 + 0.6875].
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.models.artifact import load_recommender
from recflow.models.sequence import RecentItems, SequenceParams, SequenceRecommender

W, X, Y, Z = range(4)
HAND = SequenceParams(window=2, step_decay=0.5, backward_weight=0.25, history=2, history_decay=0.5, ease_weight=0.0)
EVENTS = [
    ("a", "x", 1),
    ("a", "y", 2),
    ("a", "z", 3),
    ("b", "z", 5),  # listed before w: the tie on time must be ordered by item id, not by input order
    ("b", "y", 1),
    ("b", "x", 2),
    ("b", "w", 5),
    ("c", "z", 1),
    ("c", "z", 2),
    ("c", "y", 3),
]


@pytest.fixture(scope="module")
def spark(local_spark: Any) -> Iterator[Any]:
    with local_spark("test-sequence") as session:
        yield session


def _fit(spark: Any, params: SequenceParams) -> SequenceRecommender:
    frame = pd.DataFrame(EVENTS, columns=[COL_USER, COL_ITEM, "day"])
    frame[COL_TS] = pd.to_datetime(frame.pop("day"), unit="D", utc=True).astype("datetime64[ms, UTC]")
    return SequenceRecommender.fit(spark, spark.createDataFrame(frame), params)


def test_transitions_and_history_match_the_hand_worked_example(spark: Any) -> None:
    model = _fit(spark, HAND)
    expected = np.zeros((4, 4))
    for (a, b), value in {
        (X, Y): 1.25,
        (Y, X): 1.25,
        (Y, Z): 1.375,
        (Z, Y): 1.75,
        (X, Z): 1.0,
        (Z, X): 0.25,
        (X, W): 1.0,
        (W, X): 0.25,
        (W, Z): 1.0,
        (Z, W): 0.25,
        (Y, W): 0.5,
        (W, Y): 0.125,
    }.items():
        expected[a, b] = value
    np.testing.assert_allclose(model.transitions, expected)
    recent = model.recent.matrix(np.arange(3), 4)
    np.testing.assert_allclose(recent, [[0, 0, 0.5, 1], [0.5, 0, 0, 1], [0, 0, 1, 0.5]])
    np.testing.assert_allclose(model.score(np.array([0])), [[0.5, 0.875, 1.75, 0.6875]])
    recs = model.recommend(["a", "c"], k=2)
    assert recs[recs[COL_USER] == "a"][COL_ITEM].tolist() == ["w"], "a has seen x, y, z"
    assert recs[recs[COL_USER] == "c"][COL_ITEM].tolist() == ["x", "w"]  # T[y]+0.5T[z]: x 1.375, w 0.625


def test_blend_and_artifact_round_trip(spark: Any, tmp_path: Path) -> None:
    blended = _fit(spark, replace(HAND, ease_weight=0.5, ease_lambda=1.0))
    assert blended.ease is not None and blended.ease.shape == (4, 4)
    scores = blended.score(np.arange(3))
    np.testing.assert_allclose(scores.mean(axis=1), 0.0, atol=1e-5)  # a mean of standardised rows
    for model, folder in ((blended, tmp_path / "blend"), (_fit(spark, HAND), tmp_path / "alone")):
        model.save(folder)
        assert (folder / "users.parquet").is_file(), "batch scoring joins users through users.parquet"
        loaded = load_recommender(folder)
        assert isinstance(loaded, SequenceRecommender) and loaded.params == model.params
        np.testing.assert_array_equal(loaded.score(np.arange(3)), model.score(np.arange(3)))
    assert not (tmp_path / "alone" / "ease_weights.npy").exists()


def test_recent_items_add_up_repeats() -> None:
    rows = pd.DataFrame({"u": [0, 0, 2], "i": [1, 1, 0], "weight": [0.5, 0.25, 1.0]})
    recent = RecentItems.from_frame(rows, n_users=3)
    np.testing.assert_allclose(recent.matrix(np.array([0, 1, 2]), 2), [[0, 0.75], [0, 0], [1, 0]])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"windwo": 4}, "unknown sequence parameters"),
        ({"window": 0}, "window and history must be >= 1"),
        ({"step_decay": 0.0}, "step_decay and history_decay must be in"),
        ({"history_decay": 1.5}, "step_decay and history_decay must be in"),
        ({"backward_weight": -1.0}, "backward_weight must be >= 0"),
        ({"ease_weight": 1.5}, "ease_weight must be in"),
        ({"ease_lambda": 0.0}, "ease_lambda must be > 0"),
    ],
)
def test_bad_parameters_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SequenceParams.from_dict(raw)  # type: ignore[arg-type]
