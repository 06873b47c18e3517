"""What the compare step hands the slices: the training rows with their day (for new versus returning
users) and the lake's feature tables (for feature slices), read through the lake store."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.data.local_lake import LocalLake
from recflow.data.window import TrainingWindow
from recflow.evaluation.slices import SliceSpec
from recflow.promotion.compare import feature_tables, shared_holdout

TAGS = SliceSpec("item_tags", "feature", entity="item", table="items", feature="tags")


def _day(lake: Path, day: str, pairs: list[tuple[str, str]]) -> None:
    part = lake / "interactions" / f"{COL_DATE}={day}"
    part.mkdir(parents=True)
    pd.DataFrame(pairs, columns=[COL_USER, COL_ITEM]).to_parquet(part / "part-0.parquet")


def test_the_training_rows_carry_their_day(tmp_path: Path) -> None:
    _day(tmp_path, "2026-11-10", [("a", "x"), ("b", "x")])
    _day(tmp_path, "2026-11-11", [("a", "y")])
    _day(tmp_path, "2026-11-12", [("a", "z"), ("b", "y")])  # the hold-out day
    window = TrainingWindow(date(2026, 11, 10), date(2026, 11, 12), date(2026, 11, 13))
    truth, train = shared_holdout(tmp_path, window)
    assert train.to_dict("records") == [
        {COL_USER: "a", COL_ITEM: "x", COL_DATE: "2026-11-10"},
        {COL_USER: "b", COL_ITEM: "x", COL_DATE: "2026-11-10"},
        {COL_USER: "a", COL_ITEM: "y", COL_DATE: "2026-11-11"},
    ]
    assert truth[[COL_USER, COL_ITEM]].to_numpy().tolist() == [["b", "y"]]  # z is no training item


def test_feature_tables_come_from_the_lake_and_an_absent_one_is_left_out(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    assert feature_tables(lake, [TAGS]) == {}  # no items/: the slice is skipped
    (tmp_path / "items").mkdir()
    table = pa.table({COL_ITEM: ["x", "y"], "tags": [["drama", "comedy"], []], "title": ["X", "Y"]})
    pq.write_table(table, tmp_path / "items" / "part-0.parquet")
    got = feature_tables(lake, [TAGS, SliceSpec("pop", "item_popularity", (("all", 1.0),))])
    assert list(got) == ["items"] and sorted(got["items"].columns) == [COL_ITEM, "tags"]  # only what slices use
    assert got["items"][COL_ITEM].tolist() == ["x", "y"]
    assert [list(v) for v in got["items"]["tags"]] == [["drama", "comedy"], []]
