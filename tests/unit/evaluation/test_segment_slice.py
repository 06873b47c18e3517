"""A segmented model's segments are one more slice: its metrics per segment, keyed like the declared
slices, judged by the slice rules and shown in the run's report beside the model's overall figures."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER
from recflow.evaluation.slices import segment_metrics
from recflow.promotion.decision import slice_keys
from recflow.promotion.records import Decision, Judgement
from recflow.promotion.report import render_report


def test_metrics_per_segment_written_by_hand_and_shown_in_the_report() -> None:
    # a (segment 0) takes x and y, b (segment 1) takes z, c (unknown to the model) takes x
    truth = pd.DataFrame({COL_USER: ["a", "a", "b", "c"], COL_ITEM: ["x", "y", "z", "x"]})
    recs = pd.DataFrame(
        {
            COL_USER: ["a", "a", "b", "b", "c", "c"],
            COL_ITEM: ["x", "w", "w", "v", "x", "w"],
            COL_SCORE: [2.0, 1.0, 2.0, 1.0, 2.0, 1.0],
            COL_RANK: [1, 2, 1, 2, 1, 2],
        }
    )
    segments = pd.Series({"a": "0", "b": "1"})  # c has none: the global fallback serves it
    out = segment_metrics(truth, recs, segments, k=2)
    assert out["size[segment=0]"] == 1 and out["size[segment=1]"] == 1 and out["size[segment=none]"] == 1
    assert out["recall@2[segment=0]"] == pytest.approx(0.5)  # x of x, y
    assert out["recall@2[segment=1]"] == 0.0 and out["precision@2[segment=none]"] == pytest.approx(0.5)
    assert slice_keys(out, "recall@2") == ["segment=0", "segment=1", "segment=none"]  # the slice rules see them

    metrics = {"als_segmented": {"recall@2": 0.4, **out}, "als": {"recall@2": 0.5, "recall@2[item=head]": 0.1}}
    judgement = Judgement(Decision(None, "recall@2"), metrics, {}, None, {"start": "s", "end": "e"})
    html = render_report(judgement, run_id="r1", interval_end=datetime(2026, 11, 10, tzinfo=UTC))
    section = html.split("<h2>Per segment", 1)[1].split("<h2>", 1)[0]
    assert "<h3>als_segmented</h3>" in section and "<h3>als</h3>" not in section
    assert "<tr><th>0</th><td>1</td>" in section and "<th>none</th>" in section
    assert "<tr><th>all</th><td></td>" in section and "0.4000" in section
