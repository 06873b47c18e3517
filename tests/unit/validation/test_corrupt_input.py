"""Corrupt landing files beyond truncation: flipped bits, a bad CRC, a damaged Parquet page; and the
valid multi-member gzip. A corrupt file reaches the lake with nothing; its bytes are kept in quarantine."""

from __future__ import annotations

import gzip
import io
import json
import struct
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recflow.data import synthetic
from recflow.data.contract import INTERACTION_COLUMNS
from recflow.validation import LandingDayRequest, ValidationFailed, ValidationResult, validate_partition

DAY = date(2024, 3, 4)
HEADER = b"event_id,user_id,item_id,event_ts,quantity,amount\n"


def _rows(first: int, n: int) -> bytes:
    return b"".join(b"e%d,u%d,i%d,2024-03-04T01:00:00Z,1,%d\n" % (i, i * 7 % 301, i % 13, 1 + i % 50)
                    for i in range(first, first + n))  # fmt: skip


CSV = HEADER + _rows(0, 5000)


@pytest.fixture(autouse=True)
def _no_shared_offers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(synthetic.ENV_OFFERS, str(tmp_path / "missing-offerList.csv"))


def _validate(tmp_path: Path, content: bytes, name: str) -> ValidationResult:
    """Validate in 16 KiB chunks, so a stream's end (where gzip checks its CRC) comes after many chunks."""
    path = tmp_path / "landing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return validate_partition(
        LandingDayRequest(path, day=DAY, lake_root=tmp_path / "lake", data_docs=False, chunk_bytes=16 * 1024)
    )


def _quarantined_whole(tmp_path: Path, content: bytes, name: str, why: str) -> ValidationResult:
    with pytest.raises(ValidationFailed) as info:
        _validate(tmp_path, content, name)
    result = info.value.result
    assert result.error is not None and result.error.startswith("corrupt_file") and why in result.error, result.error
    assert result.accepted == 0 and result.lake_path is None
    assert not (tmp_path / "lake" / "interactions" / f"event_date={DAY}").exists(), "nothing reaches the lake"
    kept = Path(str(result.quarantine_path)) / f"source-{name}"
    assert kept.read_bytes() == content, "the corrupt file's bytes are kept verbatim"
    assert json.loads(Path(str(result.report_json_path)).read_text())["error"] == result.error
    return result


def test_gzip_with_flipped_bits_is_quarantined_as_corrupt(tmp_path: Path) -> None:
    body = bytearray(gzip.compress(CSV))
    middle = len(body) // 2
    body[middle : middle + 4] = bytes(b ^ 0xFF for b in body[middle : middle + 4])
    _quarantined_whole(tmp_path, bytes(body), "interactions.csv.gz", "gzip")


def test_gzip_with_a_bad_crc_is_quarantined_after_every_chunk_was_read(tmp_path: Path) -> None:
    """The CRC is checked only at the stream's end, after every row was judged: none may be published."""
    body = bytearray(gzip.compress(CSV))
    crc = struct.unpack("<I", body[-8:-4])[0]
    body[-8:-4] = struct.pack("<I", crc ^ 0x1)
    result = _quarantined_whole(tmp_path, bytes(body), "interactions.csv.gz", "CRC")
    # Every chunk before the stream's last one was read and judged; those rows are held, not published
    # (the last chunk's rows are in the kept source file).
    assert 4000 < result.landed == result.quarantined < 5000, result


def test_multi_member_gzip_is_read_to_the_last_member(tmp_path: Path) -> None:
    body = gzip.compress(HEADER + _rows(0, 3000)) + gzip.compress(_rows(3000, 2000)) + gzip.compress(_rows(5000, 7))
    result = _validate(tmp_path, body, "interactions.csv.gz")
    assert result.success and result.landed == result.accepted == 5007
    lake = pd.read_parquet(tmp_path / "lake" / "interactions" / f"event_date={DAY}")
    assert len(lake) == 5007 and lake["event_id"].is_unique and "e5006" in set(lake["event_id"])


def _parquet_with_checksums() -> bytes:
    frame = pd.read_csv(io.BytesIO(CSV), dtype=str)
    table = pa.Table.from_pandas(frame[list(INTERACTION_COLUMNS[:6])], preserve_index=False)
    out = io.BytesIO()
    pq.write_table(table, out, compression="none", write_page_checksum=True, data_page_size=16 * 1024)
    return out.getvalue()


def test_parquet_with_a_damaged_page_is_quarantined_with_a_clear_reason(tmp_path: Path) -> None:
    body = bytearray(_parquet_with_checksums())
    meta = pq.ParquetFile(io.BytesIO(bytes(body))).metadata.row_group(0).column(1)  # user_id's pages
    start = meta.data_page_offset + 64  # inside the first data page, past its header
    body[start : start + 8] = bytes(b ^ 0x5A for b in body[start : start + 8])
    _quarantined_whole(tmp_path, bytes(body), "interactions.parquet", "CRC checksum verification failed")
