"""ALS's confidence input: the strength per (user, item), with and without recency decay, by hand.

Events (half_life_days = 10; ages count back from each user's OWN latest event):

    user a: x@day0 amount 3 (age 10 -> weight 0.5), y@day5 amount 1 (age 5 -> sqrt(0.5)),
            y@day10 amount 2 (age 0 -> 1)
    user b: x@day20 amount 4 (its own latest: weight 1, although it is later than all of a's)

binary = the pair's largest weight, count = the sum of weights, amount = log1p(sum of weighted amounts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER
from recflow.models.als import AlsParams, confidence_frame

HALF = math.sqrt(0.5)
EXPECTED = {
    # (confidence, half_life_days): {(user, item): strength}
    ("binary", None): {("a", "x"): 1.0, ("a", "y"): 1.0, ("b", "x"): 1.0},
    ("count", None): {("a", "x"): 1.0, ("a", "y"): 2.0, ("b", "x"): 1.0},
    ("amount", None): {("a", "x"): math.log1p(3), ("a", "y"): math.log1p(3), ("b", "x"): math.log1p(4)},
    ("binary", 10.0): {("a", "x"): 0.5, ("a", "y"): 1.0, ("b", "x"): 1.0},
    ("count", 10.0): {("a", "x"): 0.5, ("a", "y"): HALF + 1.0, ("b", "x"): 1.0},
    ("amount", 10.0): {("a", "x"): math.log1p(1.5), ("a", "y"): math.log1p(HALF + 2.0), ("b", "x"): math.log1p(4)},
}


@pytest.fixture(scope="module")
def events(spark: Any) -> Any:
    frame = pd.DataFrame(
        {
            COL_USER: ["a", "a", "a", "b"],
            COL_ITEM: ["x", "y", "y", "x"],
            COL_AMOUNT: [3.0, 1.0, 2.0, 4.0],
            COL_TS: pd.to_datetime([0, 5, 10, 20], unit="D", utc=True).astype("datetime64[ms, UTC]"),
        }
    )
    return spark.createDataFrame(frame)


@pytest.fixture(scope="module")
def spark(local_spark: Any) -> Iterator[Any]:
    with local_spark("test-als") as session:
        yield session


@pytest.mark.parametrize(("confidence", "half_life"), list(EXPECTED), ids=[f"{c}-{h}" for c, h in EXPECTED])
def test_strength_by_hand(events: Any, confidence: Any, half_life: float | None) -> None:
    rows = confidence_frame(events, confidence, half_life).toPandas()
    got = {(r[COL_USER], r[COL_ITEM]): r["strength"] for r in rows.to_dict("records")}
    assert got.keys() == EXPECTED[(confidence, half_life)].keys()
    for pair, value in EXPECTED[(confidence, half_life)].items():
        assert got[pair] == pytest.approx(value, rel=1e-9), pair


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError, match="half_life_days must be > 0"):
        AlsParams.from_dict({"half_life_days": 0.0})
    assert AlsParams.from_dict({"half_life_days": None}).half_life_days is None
