"""Regression tests for issue 12: no silent value changes, and every reject keeps its original text.

Each test here failed before its fix: mixed UTC offsets shifted naive times, JSON ``NaN`` became a
missing amount, rejects lost their raw line, a gzip inside a gzip was a ``schema_mismatch``, a JSON array
was one ``malformed_line``, a BOM broke JSON lines, and ids had no length limit.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.config.settings import project_root
from recflow.constants import COL_AMOUNT, COL_EVENT, COL_TS, COL_USER
from recflow.data.contract import INTERACTION_COLUMNS, MAX_ID_BYTES
from recflow.data.landing import coerce_chunk, iter_landing
from recflow.validation import COL_REASON, LandingDayRequest, ValidationFailed, ValidationResult, validate_partition

DAY = date(2026, 11, 20)
HEADER = ",".join(INTERACTION_COLUMNS)


def row(i: int, ts: str = "2026-11-20T10:00:00Z", **kw: str) -> dict[str, str]:
    r = {"event_id": f"e{i}", "user_id": f"u{i % 7}", "item_id": f"i{i % 5}", "event_ts": ts,
         "quantity": "1", "amount": f"{i + 1}.5", "rating": ""}  # fmt: skip
    return {**r, **kw}


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(INTERACTION_COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


def validate(path: Path, lake: Path, **kw: object) -> ValidationResult:
    try:
        return validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, data_docs=False, **kw))  # type: ignore[arg-type]
    except ValidationFailed as exc:
        return exc.result


def rejects(result: ValidationResult) -> pd.DataFrame:
    return pd.read_parquet(Path(result.quarantine_path) / "rejects.parquet")


def lake_rows(lake: Path) -> pd.DataFrame:
    return pd.read_parquet(lake / "interactions" / f"event_date={DAY}")


# ---------------------------------------------------------------------- 1. mixed offsets, naive = UTC


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_naive_time_after_an_offset_is_read_as_utc(tmp_path: Path, fmt: str) -> None:
    rows = [row(0, "2026-11-20T10:00:00-05:00"), row(1, "2026-11-20T22:00:00"),
            row(2, "2026-11-20T10:00:00+01:00"), row(3, "2026-11-20T10:00:00"), row(4, "2026-11-20 11:30")]  # fmt: skip
    path = tmp_path / f"interactions.{fmt}"
    if fmt == "csv":
        path.write_bytes(csv_bytes(rows))
    else:
        path.write_text("".join(json.dumps({k: v or None for k, v in r.items()}) + "\n" for r in rows))
    result = validate(path, tmp_path / "lake")
    assert result.success and result.accepted == 5, result.summary()
    got = lake_rows(tmp_path / "lake").set_index(COL_EVENT)[COL_TS]
    want = ["2026-11-20T15:00:00Z", "2026-11-20T22:00:00Z", "2026-11-20T09:00:00Z", "2026-11-20T10:00:00Z",
            "2026-11-20T11:30:00Z"]  # fmt: skip
    assert got.loc[["e0", "e1", "e2", "e3", "e4"]].tolist() == [pd.Timestamp(w) for w in want]


# ---------------------------------------------------------------- 2. NaN / Infinity are not amounts


@pytest.mark.parametrize("blank_line", [False, True], ids=["arrow-path", "line-path"])
def test_json_nan_and_infinity_are_rejected_like_csv(tmp_path: Path, blank_line: bool) -> None:
    base = '{"event_id":"e%d","user_id":"u","item_id":"i","event_ts":"2026-11-20T10:00:00Z","quantity":1,"amount":%s}'
    values = ["12.5", "NaN", "Infinity", "-Infinity", "null"]
    jsonl = tmp_path / "interactions.jsonl"
    jsonl.write_text("\n".join(base % (i, v) for i, v in enumerate(values)) + ("\n\n" if blank_line else "\n"))
    text = tmp_path / "interactions.csv"
    text.write_bytes(csv_bytes([row(i, amount=v if v != "null" else "") for i, v in enumerate(values)]))
    for path in (jsonl, text):
        frame = pd.concat([c.frame for c in iter_landing(path)], ignore_index=True)
        typed, reasons = coerce_chunk(frame)
        assert reasons.tolist() == [None, "amount_not_numeric", "amount_not_numeric", "amount_not_numeric", None]
        assert typed[COL_AMOUNT].iloc[0] == 12.5 and typed[COL_AMOUNT].iloc[1:].isna().all()


# ------------------------------------------------------- 3. every reject keeps raw_line and line_no


def test_every_reject_is_rebuilt_from_quarantine_alone(tmp_path: Path) -> None:
    rows = [row(i) for i in range(40)]
    rows[3]["event_ts"] = "1763632800"  # epoch seconds: a cast failure
    rows[5]["user_id"] = ""  # a rule failure
    rows[7]["event_id"] = "e6"  # a duplicate
    rows[9]["amount"] = "twelve"
    rows[11]["user_id"] = "x" * 100_000
    body = csv_bytes(rows).split(b"\n")
    body.insert(20, HEADER.encode())  # a header line repeated mid-file
    body.insert(25, b"e99,u\xff,i1,2026-11-20T10:00:00Z,1,1.0,")  # not UTF-8
    body.insert(30, b"e98,too,many,fields,1,2,3,4,5")  # malformed
    path = tmp_path / "interactions.csv"
    path.write_bytes(b"\n".join(body))
    result = validate(path, tmp_path / "lake", threshold=0.5)
    assert result.success and result.landed == result.accepted + result.quarantined == 43
    rej = rejects(result)
    assert len(rej) == 8 and rej["raw_line"].notna().all() and rej["line_no"].notna().all()
    lines = path.read_bytes().split(b"\n")
    for _, r in rej.iterrows():  # the original line, from the quarantine alone
        assert r["raw_line"] == lines[int(r["line_no"]) - 1].decode("utf-8", errors="backslashreplace")
    by_line = rej.set_index("line_no")
    assert by_line.loc[5, COL_REASON] == "event_ts_unparsable;null_event_ts"  # epoch seconds
    assert by_line.loc[5, "raw_line"].split(",")[3] == "1763632800", "the value that failed to cast is kept"
    assert "null_event_ts" in by_line.loc[21, COL_REASON] and by_line.loc[21, "raw_line"] == HEADER
    assert by_line.loc[13, COL_REASON] == "id_too_long" and len(by_line.loc[13, COL_USER]) == 100_000


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_failed_batch_is_rebuilt_from_quarantine_alone(tmp_path: Path, fmt: str) -> None:
    rows = [row(i) for i in range(30)]
    rows[4]["user_id"] = ""
    rows[8]["amount"] = "abc"
    path = tmp_path / f"interactions.{fmt}"
    if fmt == "csv":
        path.write_bytes(csv_bytes(rows))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({k: v or None for k, v in r.items()}) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist([{k: v or None for k, v in r.items()} for r in rows]), path)
    result = validate(path, tmp_path / "lake", chunk_bytes=256, chunk_rows=7)
    assert not result.success and result.quarantined == result.landed == 30
    rej = rejects(result).sort_values("line_no")
    assert rej["raw_line"].notna().all()
    if fmt == "parquet":  # record index and the record as JSON
        assert rej["line_no"].tolist() == list(range(30))
        assert [json.loads(t) for t in rej["raw_line"]] == pq.read_table(path).to_pylist()
    else:  # the whole file again, from the quarantine alone
        assert rej["line_no"].tolist() == list(range(2, 32) if fmt == "csv" else range(1, 31))
        header = [HEADER] if fmt == "csv" else []
        assert "\n".join([*header, *rej["raw_line"]]) + "\n" == path.read_text()


# -------------------------------------------------------------------------- 4. accurate reason codes


def test_gzip_inside_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv.gz"
    content = gzip.compress(gzip.compress(csv_bytes([row(0)])))
    path.write_bytes(content)
    result = validate(path, tmp_path / "lake")
    assert result.error is not None and result.error.startswith("nested_gzip"), result.error
    assert (Path(result.quarantine_path) / "source-interactions.csv.gz").read_bytes() == content


def test_a_json_array_is_read_as_records(tmp_path: Path) -> None:
    records: list[object] = [{k: v or None for k, v in row(i).items()} for i in range(5)]
    records.insert(2, [1, 2])  # not a record
    path = tmp_path / "interactions.json"
    path.write_text(json.dumps(records, indent=2))
    result = validate(path, tmp_path / "lake", threshold=0.5)
    assert (result.landed, result.accepted, result.quarantined) == (6, 5, 1), result.summary()
    rej = rejects(result)
    assert rej[COL_REASON].tolist() == ["malformed_line"] and json.loads(rej["raw_line"].iloc[0]) == [1, 2]
    text_lines = path.read_text().split("\n")
    assert text_lines[int(rej["line_no"].iloc[0]) - 1].strip() == "[", "line_no is where the element starts"


def test_a_bom_at_the_start_of_json_lines_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    lines = [json.dumps({k: v or None for k, v in row(i).items()}) for i in range(3)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    result = validate(path, tmp_path / "lake")
    assert result.success and (result.landed, result.accepted) == (3, 3), result.summary()


# ------------------------------------------------------------------------------ 5. id length limit


def test_ids_longer_than_the_contract_limit_are_rejected(tmp_path: Path) -> None:
    assert MAX_ID_BYTES == 256
    rows = [row(i) for i in range(6)]
    rows[0]["user_id"] = "x" * 100_000
    rows[1]["item_id"] = "é" * 128  # 256 UTF-8 bytes: the limit itself is allowed
    rows[2]["item_id"] = "é" * 129  # 258 bytes, 129 characters
    rows[3]["event_id"] = "e" * 257
    path = tmp_path / "interactions.csv"
    path.write_bytes(csv_bytes(rows))
    result = validate(path, tmp_path / "lake", threshold=0.9)
    assert result.success and result.accepted == 3
    rej = rejects(result).sort_values("line_no")
    assert rej["line_no"].tolist() == [2, 4, 5] and set(rej[COL_REASON]) == {"id_too_long"}
    contract = (project_root() / "docs" / "data-contract.md").read_text()
    assert "id_too_long" in contract and "256" in contract


def test_a_json_array_read_in_small_buffers_and_a_truncated_one(tmp_path: Path) -> None:
    records = [{**{k: v or None for k, v in row(i).items()}, "quantity": i + 1} for i in range(200)]
    path = tmp_path / "interactions.json"
    path.write_text(json.dumps(records))  # one line: elements straddle every buffer end
    chunks = list(iter_landing(path, chunk_bytes=256))
    assert len(chunks) > 10 and sum(c.rows for c in chunks) == 200
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    assert frame[COL_EVENT].tolist() == [f"e{i}" for i in range(200)]
    assert [int(q) for q in frame["quantity"]] == list(range(1, 201)), "numbers cut by a buffer end are read whole"
    path.write_text(json.dumps(records)[:-300])
    result = validate(path, tmp_path / "lake")
    assert result.error is not None and result.error.startswith("corrupt_file") and not result.success
