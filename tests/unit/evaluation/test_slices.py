"""Slices of the hold-out: buckets from training counts, metrics per bucket with their sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recflow.config.settings import project_root
from recflow.constants import COL_DATE, COL_ITEM, COL_RANK, COL_SCORE, COL_USER
from recflow.evaluation.slices import (
    NO_VALUE,
    SliceSpec,
    SliceSpecError,
    bucket_of,
    feature_members,
    load_slices,
    slice_metrics,
    tenure_of,
)

POPULARITY = SliceSpec("item_popularity", "item_popularity", (("head", 0.2), ("torso", 0.5), ("tail", 1.0)))


def test_buckets_follow_the_rank_share_of_training_counts() -> None:
    counts = pd.Series({f"i{n}": 10 - n for n in range(10)})  # i0 most popular
    buckets = bucket_of(counts, POPULARITY)
    assert [buckets[f"i{n}"] for n in range(10)] == ["head"] * 2 + ["torso"] * 3 + ["tail"] * 5


def test_metrics_per_bucket_with_sizes_written_by_hand() -> None:
    # training: h has 3 users, t 1; of 2 items, h's rank share is 0.5 (head) and t's 1.0 (tail)
    train = pd.DataFrame({COL_USER: ["a", "b", "c", "a"], COL_ITEM: ["h", "h", "h", "t"]})
    spec = SliceSpec("item_popularity", "item_popularity", (("head", 0.5), ("tail", 1.0)))
    # hold-out: a takes h and t, b takes t; both lists hold h first, then t for a only
    truth = pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["h", "t", "t"]})
    recs = pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["h", "t", "h"], COL_SCORE: [2.0, 1.0, 2.0],
                         COL_RANK: [1, 2, 1]})  # fmt: skip
    out = slice_metrics(truth, recs, train, [spec], k=2)
    assert out["size[item_popularity=head]"] == 1 and out["size[item_popularity=tail]"] == 2
    assert out["recall@2[item_popularity=head]"] == pytest.approx(1.0)  # a's h is caught
    assert out["recall@2[item_popularity=tail]"] == pytest.approx(0.5)  # a's t caught, b's t missed


def test_the_project_slices_load(tmp_path: Path) -> None:
    specs = {s.name: s for s in load_slices(project_root() / "models" / "slices.yaml")}
    assert {s.kind for s in specs.values()} == {"item_popularity", "user_activity", "user_tenure", "feature"}
    assert specs["new_vs_returning"].new_days == 2
    tags = specs["item_tags"]
    assert (tags.entity, tags.table, tags.feature, tags.column, tags.buckets) == ("item", "items", "tags", COL_ITEM, ())
    (tmp_path / "bad.yaml").write_text("schema_version: 1\nslices:\n  x: {kind: item_popularity, buckets: {a: 0.5}}\n")
    with pytest.raises(SliceSpecError, match="end at 1"):
        load_slices(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{kind: user_tenure}", r"x\.new_days: a whole number of days >= 1"),
        ("{kind: user_tenure, new_days: 0}", r"x\.new_days"),
        ("{kind: user_tenure, new_days: 2, buckets: {a: 1}}", r"unknown keys \['buckets'\] for kind user_tenure"),
        ("{kind: feature, table: items, column: tags}", r"x\.entity: 'user' or 'item'"),
        ("{kind: feature, entity: item, column: tags}", r"x\.table: a non-empty name"),
        ("{kind: feature, entity: user, table: users, column: ''}", r"x\.column: a non-empty name"),
        ("{kind: feature, entity: user, table: users, column: spend, buckets: {hi: 0.5}}", "end at 1"),
        ("{kind: cohort}", "kind must be one of"),
    ],
)
def test_a_bad_slice_is_refused_with_its_key(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(f"schema_version: 1\nslices:\n  x: {body}\n")
    with pytest.raises(SliceSpecError, match=message):
        load_slices(tmp_path / "bad.yaml")


def _two_users_lists() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold-out: a takes x and y, b takes y; a's list is x then y, b's is x (so b's y is missed)."""
    truth = pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["x", "y", "y"]})
    recs = pd.DataFrame({COL_USER: ["a", "a", "b"], COL_ITEM: ["x", "y", "x"], COL_SCORE: [2.0, 1.0, 2.0],
                         COL_RANK: [1, 2, 1]})  # fmt: skip
    return truth, recs


def test_new_and_returning_users_by_their_first_training_day() -> None:
    # training days 10..12; with new_days 2 the new users are those first seen on the 11th or 12th
    train = pd.DataFrame({COL_USER: ["a", "a", "b", "c"], COL_ITEM: ["x", "z", "x", "z"],
                          COL_DATE: ["2026-11-10", "2026-11-12", "2026-11-11", "2026-11-12"]})  # fmt: skip
    assert tenure_of(train, 2).to_dict() == {"a": "returning", "b": "new", "c": "new"}
    assert tenure_of(train, 3).to_dict() == {"a": "new", "b": "new", "c": "new"}
    assert tenure_of(train, 1).to_dict() == {"a": "returning", "b": "returning", "c": "new"}
    truth, recs = _two_users_lists()
    out = slice_metrics(truth, recs, train, [SliceSpec("tenure", "user_tenure", new_days=2)], k=2)
    assert out["size[tenure=returning]"] == 1 and out["recall@2[tenure=returning]"] == pytest.approx(1.0)  # a
    assert out["size[tenure=new]"] == 1 and out["recall@2[tenure=new]"] == pytest.approx(0.0)  # b missed y
    with pytest.raises(SliceSpecError, match="event_date"):
        slice_metrics(truth, recs, train.drop(columns=COL_DATE), [SliceSpec("t", "user_tenure", new_days=1)], k=2)


def test_a_categorical_item_feature_with_list_values_and_items_without_one() -> None:
    """Tags: x is in both 'drama' and 'comedy', y in 'comedy'; z has no row and w a null value: (none)."""
    table = pd.DataFrame({COL_ITEM: ["x", "y", "w"], "tags": [["drama", "comedy"], ["comedy"], None]})
    spec = SliceSpec("genre", "feature", entity="item", table="items", feature="tags")
    members = feature_members(table, spec)
    assert sorted(map(tuple, members.to_numpy().tolist())) == [("x", "comedy"), ("x", "drama"), ("y", "comedy")]
    truth = pd.DataFrame({COL_USER: ["a", "a", "b", "b"], COL_ITEM: ["x", "y", "y", "z"]})
    recs = pd.DataFrame({COL_USER: ["a", "a", "b", "b"], COL_ITEM: ["x", "q", "z", "q"],
                         COL_SCORE: [2.0, 1.0, 2.0, 1.0], COL_RANK: [1, 2, 1, 2]})  # fmt: skip
    out = slice_metrics(truth, recs, truth, [spec], k=2, features={"items": table})
    # drama: a's x (caught); comedy: a's x (caught), a's y and b's y (missed); (none): b's z (caught)
    assert out["size[genre=drama]"] == 1 and out["recall@2[genre=drama]"] == pytest.approx(1.0)
    assert out["size[genre=comedy]"] == 2 and out["recall@2[genre=comedy]"] == pytest.approx((1 / 2 + 0) / 2)
    assert out[f"size[genre={NO_VALUE}]"] == 1 and out[f"recall@2[genre={NO_VALUE}]"] == pytest.approx(1.0)
    # a slice whose table was not supplied is skipped; a supplied table without the column is an error
    assert slice_metrics(truth, recs, truth, [spec], k=2) == {}
    with pytest.raises(SliceSpecError, match=r"table 'items' lacks \['tags'\]"):
        slice_metrics(truth, recs, truth, [spec], k=2, features={"items": table.drop(columns="tags")})


def test_a_numeric_user_feature_is_bucketed_by_the_rank_share_of_its_value() -> None:
    """A segment or spend column: a has the highest spend (top half: 'high'), b the lowest."""
    table = pd.DataFrame({COL_USER: ["a", "b"], "spend": [120.0, 3.5]})
    spec = SliceSpec("spend", "feature", (("high", 0.5), ("low", 1.0)), entity="user", table="users", feature="spend")
    truth, recs = _two_users_lists()
    out = slice_metrics(truth, recs, truth, [spec], k=2, features={"users": table})
    assert out["size[spend=high]"] == 1 and out["recall@2[spend=high]"] == pytest.approx(1.0)
    assert out["size[spend=low]"] == 1 and out["recall@2[spend=low]"] == pytest.approx(0.0)
    assert f"size[spend={NO_VALUE}]" not in out  # every judged user has a value
    segments = SliceSpec("segment", "feature", entity="user", table="segments", feature="segment")
    by_segment = slice_metrics(
        truth,
        recs,
        truth,
        [segments],
        k=2,
        features={"segments": pd.DataFrame({COL_USER: ["a", "b"], "segment": [0, 1]})},
    )
    assert by_segment["recall@2[segment=0]"] == pytest.approx(1.0) and by_segment["recall@2[segment=1]"] == 0.0
    with pytest.raises(SliceSpecError, match=r"buckets need numbers in 'spend'"):
        slice_metrics(truth, recs, truth, [spec], k=2, features={"users": table.assign(spend=["lots", "few"])})
