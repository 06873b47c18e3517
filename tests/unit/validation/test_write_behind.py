"""Ingestion's write-behind and read-ahead pieces: Parquet encoded in a thread gives the same file, its
errors are raised in the caller, and closing the cast chunks closes the landing file."""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recflow.data.landing import LandingChunk, iter_landing
from recflow.validation.output import LINES_SCHEMA, LazyWriter
from recflow.validation.row_judge import typed_chunk, typed_chunks


def _tables() -> list[pa.Table]:
    rng = np.random.default_rng(4)
    return [pa.table({"line_no": rng.integers(0, 10**9, n)}, schema=LINES_SCHEMA) for n in (5, 70_000, 0, 3)]


def test_writing_in_a_thread_gives_the_same_bytes(tmp_path: Path) -> None:
    direct = LazyWriter(tmp_path / "direct" / "f.parquet", LINES_SCHEMA)
    with ThreadPoolExecutor(max_workers=1) as pool:
        behind = LazyWriter(tmp_path / "behind" / "f.parquet", LINES_SCHEMA, executor=pool)
        for t in _tables():
            direct.write(t)
            behind.write(t)
        assert behind.rows == direct.rows == 70_008, "rows count what was handed over"
        direct.close()
        behind.close()
        behind.close()  # closing again (GX's Spark path closes before the caller does) changes nothing
    assert behind.path.read_bytes() == direct.path.read_bytes()


def test_an_empty_writer_in_a_thread_still_leaves_an_empty_file(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        w = LazyWriter(tmp_path / "e.parquet", LINES_SCHEMA, executor=pool)
        w.close()
    assert pa.parquet.read_table(w.path).num_rows == 0


def test_a_failed_write_in_the_thread_is_raised_to_the_caller(tmp_path: Path) -> None:
    wrong = pa.table({"other": [1, 2]})  # not the writer's schema: Arrow refuses it in the worker thread
    with ThreadPoolExecutor(max_workers=1) as pool:
        w = LazyWriter(tmp_path / "x.parquet", LINES_SCHEMA, executor=pool)
        w.write(wrong)
        with pytest.raises(ValueError, match="schema"):
            w.write(_tables()[0])
        w2 = LazyWriter(tmp_path / "y.parquet", LINES_SCHEMA, executor=pool)
        w2.write(wrong)
        with pytest.raises(ValueError, match="schema"):
            w2.close()
        w3 = LazyWriter(tmp_path / "z.parquet", LINES_SCHEMA, executor=pool)
        w3.write(wrong)
        w3.abort()  # after an error elsewhere: releases the file, does not raise a second error


def test_closing_the_cast_chunks_closes_the_landing_file(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    header = "event_id,user_id,item_id,event_ts,quantity,amount,rating\n"
    path.write_text(header + "".join(f"e{i},u,i,2026-11-03T10:00:00Z,1,2.5,\n" for i in range(2_000)))
    landing = iter_landing(path, chunk_bytes=4_096)
    chunks = typed_chunks(landing)
    first = next(chunks)
    assert first.typed is not None and first.cast_reasons is not None
    assert str(first.typed["event_ts"].dtype) == "datetime64[ns, UTC]"
    chunks.close()
    assert inspect.getgeneratorstate(landing) == "GEN_CLOSED", "the landing file was not closed"


def test_a_chunk_of_only_bad_lines_has_nothing_to_cast() -> None:
    chunk = LandingChunk(pd.DataFrame())
    cast = typed_chunk(chunk)
    assert cast.chunk is chunk and cast.typed is None and cast.cast_reasons is None
