"""Slices of the hold-out: buckets from training counts, metrics per bucket with their sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recflow.config.settings import project_root
from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER
from recflow.evaluation.slices import SliceSpec, SliceSpecError, bucket_of, load_slices, slice_metrics

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
    specs = load_slices(project_root() / "models" / "slices.yaml")
    assert {s.kind for s in specs} == {"item_popularity", "user_activity"}
    (tmp_path / "bad.yaml").write_text("schema_version: 1\nslices:\n  x: {kind: item_popularity, buckets: {a: 0.5}}\n")
    with pytest.raises(SliceSpecError, match="end at 1"):
        load_slices(tmp_path / "bad.yaml")
