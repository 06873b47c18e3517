"""Duplicate lookup in bounded memory: spilled runs on disk give the same answers as a plain set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recflow.data.landing import iter_landing
from recflow.validation import hashing
from recflow.validation.hashing import _SeenHashes


@pytest.mark.parametrize(
    "filter_words",
    [hashing.DEFAULT_FILTER_WORDS, 1],  # 1 word: the filter lets every query through to the runs on disk
    ids=["filtered", "every-query-to-disk"],
)
def test_spilled_runs_answer_like_a_set(monkeypatch: pytest.MonkeyPatch, filter_words: int) -> None:
    monkeypatch.setattr(hashing, "RUN_SLICE", 64)  # many slices per run, so slice edges are exercised
    monkeypatch.setattr(hashing, "RUN_BLOCK", 16)  # many blocks per run, so block edges are exercised
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)
    pool[::97] &= np.uint64(0xFFFFFFFF00000000)  # values that share their top bits
    seen, ref = _SeenHashes(memory_hashes=1_000, filter_words=filter_words), set()
    for i in range(0, len(pool), 700):
        batch = np.concatenate([pool[i : i + 700], pool[max(0, i - 3000) : max(0, i - 3000) + 50], pool[i : i + 5] + 1])
        got = seen.contains(batch)
        assert got.tolist() == [int(h) in ref for h in batch]
        seen.add(batch)
        ref.update(int(h) for h in batch)
    assert len(seen._runs) >= 10, "the test must exercise runs on disk"
    folder = seen._dir
    assert folder is not None and folder.is_dir()
    seen.close()
    assert not folder.exists(), "close() deletes the spilled runs"


def test_a_run_reads_blocks_for_few_queries_and_scans_for_many(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hashing, "RUN_BLOCK", 8)
    values = np.sort(np.random.default_rng(2).integers(0, 2**64 - 1, 4_000, dtype=np.uint64))
    run = hashing._Run(tmp_path / "run.u64", values)
    scans: list[int] = []
    scan = run._scan

    def counted_scan(queries: np.ndarray) -> np.ndarray:
        scans.append(len(queries))
        return scan(queries)

    monkeypatch.setattr(run, "_scan", counted_scan)
    ref = set(values.tolist())
    few = np.sort(np.concatenate([values[[0, 7, 8, 3_999]], values[[5, 100]] + 1, [np.uint64(0)]]))
    assert run.contains(few).tolist() == [int(q) in ref for q in few]
    assert scans == [], "a few queries read their blocks, not the whole run"
    many = np.sort(np.concatenate([values[::3], values[1::3] + 1]))
    assert run.contains(many).tolist() == [int(q) in ref for q in many]
    assert scans == [len(many)], "queries in most blocks scan the run once"


def test_the_filter_never_forgets_and_rarely_lies() -> None:
    rng = np.random.default_rng(3)
    added = rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64)
    others = rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64)
    f = hashing._Filter(1 << 14)
    f.add(np.concatenate([added, added[:100]]))  # repeated words in one call must all be set
    assert f.may_contain(added).all()
    assert f.may_contain(others).mean() < 0.05
    with pytest.raises(ValueError, match="power of two"):
        hashing._Filter(3)


def test_clean_json_lines_are_parsed_by_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    rec = {"event_id": "e1", "user_id": "u", "item_id": "i", "event_ts": "2026-11-20T10:00:00Z", "quantity": 2,
           "amount": 12.5}  # fmt: skip
    path.write_text("".join(json.dumps({**rec, "event_id": f"e{i}"}) + "\n" for i in range(100)))
    (chunk,) = list(iter_landing(path))
    assert all(isinstance(t, pd.ArrowDtype) for t in chunk.frame.dtypes), "Arrow text, not Python objects"
    assert chunk.line_numbers().tolist() == list(range(1, 101))
