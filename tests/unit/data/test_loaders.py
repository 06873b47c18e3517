"""Source loaders (MovieLens, purchase card) and the landing-file reader's handling of bad files."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data import movielens, synthetic
from recflow.data.contract import INTERACTION_COLUMNS, INTERACTION_DTYPES
from recflow.data.landing import (
    REASON_MALFORMED,
    REASON_NON_UTF8,
    CorruptFileError,
    EmptyFileError,
    SchemaMismatchError,
    coerce_chunk,
    iter_landing,
)
from recflow.data.pcard import load_pcard

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DAY = date(2024, 3, 4)
HEADER = ",".join(INTERACTION_COLUMNS)
ROW = "ev-1,u000001,BOOK STORES,2024-03-04T10:00:00Z,1,12.5,"


def read_all(path: Path, **kw: int) -> tuple[pd.DataFrame, list]:
    chunks = list(iter_landing(path, **kw))
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    return frame, [b for c in chunks for b in c.bad_lines]


# ---------------------------------------------------------------------------------------- MovieLens


def test_movielens_maps_onto_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n")
    monkeypatch.setenv(movielens.ENV_DIR, str(tmp_path))
    df = movielens.load_movielens()
    assert tuple(df.columns) == INTERACTION_COLUMNS
    assert {c: str(t) for c, t in df.dtypes.items()} == INTERACTION_DTYPES
    first = df.iloc[0]
    assert (first[COL_USER], first[COL_ITEM], first[COL_RATING]) == ("196", "242", 3.0)
    assert first[COL_EVENT] == "ml100k-196-242-881250949"
    assert first[COL_TS] == pd.Timestamp(881250949, unit="s", tz="UTC")
    assert (df[COL_QUANTITY] == 1).all() and df[COL_AMOUNT].isna().all()


def test_movielens_missing_file_names_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(movielens.ENV_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=movielens.ENV_DIR):
        movielens.load_movielens()


def test_movielens_real_file() -> None:
    """CI has ../shared: a missing MovieLens-100K fails here (with the env var to set), never skips."""
    df = movielens.load_movielens()
    assert len(df) == 100_000 and df[COL_EVENT].is_unique
    assert df[COL_RATING].between(1, 5).all()


# -------------------------------------------------------------------------------------------- PCard


def test_pcard_fixture() -> None:
    df = load_pcard(FIXTURES / "pcard_small.csv")
    assert tuple(df.columns) == INTERACTION_COLUMNS and len(df) == 7
    assert df[COL_USER].tolist()[:3] == ["Mason C", "Mason C", "Massey J"]
    assert df[COL_ITEM].iloc[4] == "STATIONERY, OFFICE AND SCHOOL SUPPLY STORES"
    assert df[COL_TS].iloc[0] == pd.Timestamp("2013-07-30", tz="UTC")
    assert df[COL_TS].iloc[3] == pd.Timestamp("2013-07-30", tz="UTC"), "date without a time part"
    assert df[COL_AMOUNT].iloc[3] == pytest.approx(1096.84), "thousands separator"
    assert df[COL_AMOUNT].iloc[4] == pytest.approx(-20.17), "refunds stay negative for the validator"
    # identical rows get distinct, deterministic ids; bad date and missing initial survive as nulls
    assert df[COL_EVENT].is_unique
    assert df[COL_EVENT].iloc[4][:-2] == df[COL_EVENT].iloc[5][:-2]
    assert pd.isna(df[COL_TS].iloc[6]) and df[COL_USER].iloc[6] is None
    pd.testing.assert_frame_equal(df, load_pcard(FIXTURES / "pcard_small.csv"))


def test_pcard_event_ids_do_not_depend_on_row_order(tmp_path: Path) -> None:
    lines = (FIXTURES / "pcard_small.csv").read_text().splitlines()
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    assert set(load_pcard(shuffled)[COL_EVENT]) == set(load_pcard(FIXTURES / "pcard_small.csv")[COL_EVENT])


def test_pcard_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("Amount,Vendor\n1,X\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_pcard(bad)


# ------------------------------------------------------------------------------------------ landing


@pytest.mark.parametrize(("fmt", "gz"), [("csv", False), ("csv", True), ("jsonl", False), ("jsonl", True),
                                         ("parquet", False), ("parquet", True)])  # fmt: skip
def test_every_landing_format_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, gz: bool) -> None:
    monkeypatch.setenv(synthetic.ENV_OFFERS, str(tmp_path / "none.csv"))
    params: dict[str, Any] = {"n_users": 50, "n_items": 20, "events_per_day": 2_000, "seed": 3}
    path = synthetic.write_day(DAY, tmp_path, fmt=fmt, gzip=gz, **params)
    frame, bad = read_all(path, chunk_bytes=20_000, chunk_rows=300)
    typed, reasons = coerce_chunk(frame)
    expected = synthetic.generate_day(DAY, **params)
    assert not bad and reasons.isna().all()
    assert typed[COL_EVENT].tolist() == expected[COL_EVENT].tolist()
    assert (typed[COL_TS] == expected[COL_TS]).all()
    assert np.allclose(typed[COL_AMOUNT], expected[COL_AMOUNT])
    assert (typed[COL_QUANTITY].astype(int) == expected[COL_QUANTITY]).all()


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "interactions.csv"
    empty.write_bytes(b"")
    with pytest.raises(EmptyFileError, match="no bytes"):
        list(iter_landing(empty))
    header_only = tmp_path / "h.csv"
    header_only.write_text(HEADER + "\n")
    with pytest.raises(EmptyFileError, match="header and no data rows"):
        list(iter_landing(header_only))
    empty_gz = tmp_path / "e.jsonl.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    with pytest.raises(EmptyFileError):
        list(iter_landing(empty_gz))


@pytest.mark.parametrize(
    ("header", "missing", "extra"),
    [
        ("event_id,user_id,item_id,event_ts,quantity", ["amount"], []),
        (HEADER + ",coupon", [], ["coupon"]),
        (HEADER.replace("user_id", "customer_id"), ["user_id"], ["customer_id"]),
    ],
    ids=["missing", "extra", "renamed"],
)
def test_schema_mismatch_names_the_columns(tmp_path: Path, header: str, missing: list, extra: list) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(header + "\n" + ROW + "\n")
    with pytest.raises(SchemaMismatchError) as info:
        list(iter_landing(path))
    assert info.value.missing == missing and info.value.extra == extra
    assert "missing columns" in str(info.value)


def test_rating_column_is_optional(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(HEADER.removesuffix(",rating") + "\n" + ROW.removesuffix(",") + "\n")
    frame, _ = read_all(path)
    assert tuple(frame.columns) == INTERACTION_COLUMNS and frame[COL_RATING].isna().all()


def test_non_utf8_lines_are_set_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    bad = b"ev-2,u\xff\xfe01,BOOK STORES,2024-03-04T10:00:00Z,1,3.0,\n"
    path.write_bytes((HEADER + "\n" + ROW + "\n").encode() + bad + b"ev-3" + ROW[4:].encode() + b"\n")
    frame, bad_lines = read_all(path)
    assert frame[COL_EVENT].tolist() == ["ev-1", "ev-3"]
    assert [(b.line_no, b.reason) for b in bad_lines] == [(3, REASON_NON_UTF8)]
    assert bad_lines[0].raw == bad.rstrip(b"\n") and "\\xff" in bad_lines[0].raw_text()


def test_malformed_csv_line_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(HEADER + "\n" + ROW + "\n" + "ev-9,u1,too,many,fields,here,1,2,3\n")
    frame, bad_lines = read_all(path)
    assert len(frame) == 1 and [b.reason for b in bad_lines] == [REASON_MALFORMED]


def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    full = gzip.compress((HEADER + "\n" + "\n".join([ROW] * 5000) + "\n").encode())
    path = tmp_path / "interactions.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(CorruptFileError, match="truncated or corrupt gzip"):
        list(iter_landing(path, chunk_bytes=4096))


def test_broken_and_empty_parquet(tmp_path: Path) -> None:
    broken = tmp_path / "interactions.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorruptFileError):
        list(iter_landing(broken))
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in INTERACTION_COLUMNS}), empty)
    with pytest.raises(EmptyFileError):
        list(iter_landing(empty))


def test_jsonl_bad_records_and_extra_keys(tmp_path: Path) -> None:
    ok = '{"event_id":"e1","user_id":"u1","item_id":"i1","event_ts":"2024-03-04T01:00:00Z","quantity":1,"amount":2}'
    path = tmp_path / "interactions.jsonl"
    path.write_text(ok + "\n{not json\n[1,2]\n")
    frame, bad_lines = read_all(path)
    assert len(frame) == 1 and [b.line_no for b in bad_lines] == [2, 3]
    extra = tmp_path / "extra.jsonl"
    extra.write_text(ok[:-1] + ',"coupon":"x"}\n')
    with pytest.raises(SchemaMismatchError, match="coupon"):
        list(iter_landing(extra))


def test_wrong_types_become_row_reasons(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    rows = [ROW, "ev-2,u2,i2,yesterday,1,2.0,", "ev-3,u3,i3,2024-03-04T10:00:00Z,1.5,abc,", "ev-4,u4,i4,"
            "2024-03-04T10:00:00Z,two,3.0,x"]  # fmt: skip
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    frame, _ = read_all(path)
    typed, reasons = coerce_chunk(frame)
    assert reasons.tolist() == [
        None,
        "event_ts_unparsable",
        "quantity_not_integer;amount_not_numeric",
        "quantity_not_integer;rating_not_numeric",
    ]
    assert typed[COL_QUANTITY].dtype == "Int64" and str(typed[COL_TS].dtype) == "datetime64[ns, UTC]"


def test_chunks_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(HEADER + "\n" + "\n".join(f"ev-{i}" + ROW[4:] for i in range(3000)) + "\n")
    chunks = list(iter_landing(path, chunk_bytes=8_192))
    assert len(chunks) > 10 and max(len(c.frame) for c in chunks) < 200
    assert sum(c.rows for c in chunks) == 3000
