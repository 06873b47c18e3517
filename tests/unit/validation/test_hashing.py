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


def test_spilled_runs_answer_like_a_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "RUN_SLICE", 64)  # many slices per run, so slice edges are exercised
    rng = np.random.default_rng(1)
    pool = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)
    pool[::97] &= np.uint64(0xFFFFFFFF00000000)  # values that share their top bits
    seen, ref = _SeenHashes(memory_hashes=1_000), set()
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


def test_clean_json_lines_are_parsed_by_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    rec = {"event_id": "e1", "user_id": "u", "item_id": "i", "event_ts": "2026-11-20T10:00:00Z", "quantity": 2,
           "amount": 12.5}  # fmt: skip
    path.write_text("".join(json.dumps({**rec, "event_id": f"e{i}"}) + "\n" for i in range(100)))
    (chunk,) = list(iter_landing(path))
    assert all(isinstance(t, pd.ArrowDtype) for t in chunk.frame.dtypes), "Arrow text, not Python objects"
    assert chunk.line_numbers().tolist() == list(range(1, 101))
