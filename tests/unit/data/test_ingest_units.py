"""Small pieces of the ingestion path: the GX sample, duplicate lookup, URIs, and the run's day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recflow.data.lake import is_s3, join_uri, split_s3
from recflow.validation import HashSample, _SeenHashes, hash_values


def _sample(ids: list[str], chunk: int, cap: int) -> list[str]:
    s = HashSample(cap)
    for i in range(0, len(ids), chunk):
        part = pd.DataFrame({"event_id": ids[i : i + chunk]})
        s.add(part, hash_values(part["event_id"].to_numpy()))
    frame = s.frame()
    assert s.rows <= cap
    return [] if frame is None else list(frame["event_id"])


def test_hash_sample_is_bounded_and_independent_of_chunking() -> None:
    ids = [f"e{i}" for i in range(5_000)] + ["e7"] * 3  # a duplicated id travels with its copies
    a, b = _sample(ids, 97, 800), _sample(ids, 2_000, 800)
    assert a == b and 200 < len(a) <= 800
    assert a.count("e7") in (0, 4)
    assert _sample(ids[:500], 50, 800) == ids[:500], "inputs under the cap are kept whole, in order"


def test_hash_sample_keeps_the_rows_under_the_first_limit_that_fits() -> None:
    """The limit only halves while more than ``cap`` rows fall under it: the sample is every row under the
    largest such limit, whatever order the limit was lowered in (the rows GX sees did not change)."""
    ids = [f"ev-{i:07d}" for i in range(20_000)]
    hashes = hash_values(np.array(ids, dtype=object))
    limit = int(np.iinfo(np.uint64).max)
    while int((hashes <= np.uint64(limit)).sum()) > 1_500:
        limit //= 2
    expected = [i for i, h in zip(ids, hashes, strict=True) if h <= np.uint64(limit)]
    for chunk in (20_000, 3_333, 400):
        s = HashSample(1_500)
        for i in range(0, len(ids), chunk):
            part = pd.DataFrame({"event_id": ids[i : i + chunk]})
            s.add(part, hashes[i : i + chunk])
        frame = s.frame()
        assert frame is not None and list(frame["event_id"]) == expected
        assert s.limit == limit and s.rows == len(expected) and s.seen == len(ids)


def test_seen_hashes_lookup_across_chunks() -> None:
    seen = _SeenHashes(["a", "b"])
    seen.add(hash_values(np.array(["c"], dtype=object)))
    assert list(seen.contains(hash_values(np.array(["c", "d", "a"], dtype=object)))) == [True, False, True]
    assert not _SeenHashes().contains(hash_values(np.array(["x"], dtype=object))).any()


def test_uris() -> None:
    assert is_s3("s3://b/p") and is_s3("s3a://b/p") and not is_s3("/tmp/x")
    assert split_s3("s3://bucket/a/b/") == ("bucket", "a/b")
    assert join_uri("s3://b/p/", "date=1", "f.csv") == "s3://b/p/date=1/f.csv"
    with pytest.raises(ValueError, match="no bucket"):
        split_s3("s3:///key")


def test_completed_day_and_event_day() -> None:
    from recflow.orchestration.context import completed_day, interval_day, interval_end

    run = {"data_interval_end": datetime(2026, 11, 4, 1, tzinfo=UTC)}
    assert completed_day(run) == date(2026, 11, 3)
    assert completed_day({"data_interval_end": datetime(2026, 11, 4, tzinfo=UTC)}) == date(2026, 11, 3)
    events = {"asset": [SimpleNamespace(extra={"day": "2026-11-02"}), SimpleNamespace(extra={"day": "2026-11-05"})]}
    triggered = {"triggering_asset_events": events, "data_interval_end": datetime(2026, 11, 25, 13, tzinfo=UTC)}
    assert interval_end(triggered) == datetime(2026, 11, 6, tzinfo=UTC)
    assert interval_day(triggered) == date(2026, 11, 5)
    dag_run = SimpleNamespace(run_after=datetime(2026, 11, 25, 13, 7, tzinfo=UTC))
    assert interval_end({"data_interval_end": None, "dag_run": dag_run}) == datetime(2026, 11, 25, tzinfo=UTC)
