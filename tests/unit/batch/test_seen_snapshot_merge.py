"""The seen table's pure parts: when a snapshot can answer a request (``covers``), and the worker-side
conversion of seen item ids to sorted model codes (``_coded_batches``) on hand-made Arrow batches."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from recflow.batch.layout import ScoringRequest
from recflow.batch.seen_snapshot import Window, _coded_batches, covers
from recflow.scoring.seen import SeenPolicy

DAY = date(2026, 11, 10)
ENTRY = pa.struct([("item_id", pa.string()), ("last_date", pa.date32())])


def _request(active_days: int) -> ScoringRequest:
    return ScoringRequest(day=DAY, version="v", k=3, active_days=active_days)


def test_covers_names_what_reaches_past_the_retention() -> None:
    window = Window(DAY, retention_days=10)  # 2026-11-01 .. 2026-11-10
    assert covers(window, _request(10), SeenPolicy(lookback_days=10), None) is None
    assert "active window" in str(covers(window, _request(11), SeenPolicy(lookback_days=3), None))
    assert "before the retention" in str(covers(window, _request(3), SeenPolicy(lookback_days=11), None))
    assert "no start" in str(covers(window, _request(3), SeenPolicy(), None))
    assert covers(window, _request(3), SeenPolicy(), date(2026, 11, 1)) is None
    assert covers(window, _request(3), SeenPolicy(exclude_seen="none"), None) is None
    with pytest.raises(ValueError, match="retention"):
        Window(DAY, retention_days=0)


def test_ids_become_sorted_codes_of_known_items_inside_the_look_back() -> None:
    d = date
    seen = [
        [("c", d(2026, 11, 9)), ("a", d(2026, 11, 2)), ("b", d(2026, 11, 8))],  # a is before the start
        [],
        [("zz-unknown", d(2026, 11, 9)), ("a", d(2026, 11, 10))],
        [("b", d(2026, 11, 5)), ("c", d(2026, 11, 5))],  # on the start day: kept
    ]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["u1", "u2", "u3", "u4"]), pa.array(seen, pa.list_(ENTRY))], names=["user_id", "seen"]
    )
    catalog = ["c", "b", "a"]  # codes: c=0, b=1, a=2
    whole = list(_coded_batches(iter([batch]), catalog, date(2026, 11, 5)))
    assert whole[0].column(1).to_pylist() == [[0, 1], [], [2], [0, 1]]
    assert whole[0].column(0).to_pylist() == ["u1", "u2", "u3", "u4"]
    # a sliced batch (non-zero offsets into the list and struct children) gives the same rows
    sliced = list(_coded_batches(iter([batch.slice(2, 2)]), catalog, date(2026, 11, 5)))
    assert sliced[0].column(1).to_pylist() == [[2], [0, 1]]
    assert sliced[0].schema.field("seen").type == pa.list_(pa.int32())
