"""User codes are the same whether a few ids are looked up one by one or many at once as a pandas Index."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recflow.models.index import IdIndex


def test_few_and_many_ids_get_the_same_codes() -> None:
    index = IdIndex(users=tuple(f"u{i}" for i in range(50)), items=("a",))
    ids = ["u3", "missing", "u49", "u3", 7, "u0"]  # an int id is looked up as its string, as pandas' astype(str)
    many = index.user_codes(ids * 3)  # above the one-by-one size
    few = index.user_codes(ids)
    assert few.tolist() == [3, -1, 49, 3, -1, 0]
    assert many.tolist() == few.tolist() * 3
    assert index.user_codes(pd.Series(["u1", "x"])).tolist() == [1, -1]
    assert index.user_codes(np.array(["u2"], dtype=object)).tolist() == [2]
    assert index.user_codes([]).tolist() == []
