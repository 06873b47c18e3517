"""Read landing files (CSV, JSON lines or Parquet, optionally gzip) in bounded chunks, losing nothing.

Why a reader of our own rather than ``pd.read_csv(path)``: a landing file comes from outside and may be
empty, have the wrong header, carry non-UTF-8 bytes or be a truncated gzip. Each case must give either a
clear, named error (the whole file is then quarantined by the validator) or a per-line reject, and the
memory used must not grow with the file. So:

* text files are read as bytes in blocks of about ``chunk_bytes``, cut at line ends; a block that is not
  valid UTF-8 is split into lines and only the undecodable or malformed lines become :class:`BadLine`
  rejects (quarantined by the validator with their raw bytes, so nothing is lost);
* Parquet is read row group by row group (``iter_batches``);
* file-level problems raise a :class:`LandingError` subclass: :class:`EmptyFileError` (no bytes, or a
  header and no rows), :class:`SchemaMismatchError` (missing / extra / renamed columns),
  :class:`CorruptFileError` (truncated gzip, unreadable Parquet or JSON array) and
  :class:`NestedGzipError` (a gzip inside a gzip);
* every parsed row keeps where it came from (:attr:`LandingChunk.origin`: line number, or record index
  for Parquet, and its original text), so a row rejected later is quarantined with its raw text.

CSV blocks are parsed by pyarrow's CSV reader (all columns as text) and kept Arrow-backed
(:data:`ARROW_TEXT`): building a Python ``str`` per value and casting through pandas was ~60 % of the
ingestion time. Blocks the fast reader cannot take whole (bad UTF-8, blank lines, broken quoting) go
through the line-by-line path, which keeps the historic per-line semantics.

JSON (lines, or one array in a ``.json`` file) is read by :mod:`recflow.data.jsonl`. Values arrive as
text; :func:`~recflow.data.casting.coerce_chunk` casts them to the contract dtypes and returns, per row, why a
value could not be cast, so wrong types become row rejects with a reason rather than crashes.

Landing files may be local paths or ``s3://`` objects (:mod:`recflow.data.lake`): objects are read in
byte ranges through a buffered stream, so an object is never downloaded whole.

Limitation: text blocks are cut at newline bytes, so a CSV field with an embedded newline inside quotes is
only supported when it does not straddle a block boundary. The contract's fields never contain newlines.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Generator, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recflow.constants import COL_AMOUNT, COL_QUANTITY, COL_RATING, COL_TS
from recflow.data.casting import ARROW_TEXT, coerce_chunk
from recflow.data.chunks import (
    REASON_MALFORMED,
    REASON_NON_UTF8,
    BadLine,
    BlockRows,
    CorruptFileError,
    EmptyFileError,
    LandingChunk,
    LandingError,
    ListRows,
    NestedGzipError,
    RecordRows,
    SchemaMismatchError,
    check_columns,
    decode_block,
    has_blank_line,
    line_count,
    read_blocks,
    text_frame,
    text_types,
)
from recflow.data.contract import INTERACTION_COLUMNS, LANDING_STEM, partition_dir_name
from recflow.data.jsonl import iter_json
from recflow.data.lake import basename, input_size, join_uri, list_names, open_input

if TYPE_CHECKING:
    from recflow.config.s3 import S3Settings

__all__ = [
    "ARROW_TEXT",
    "REASON_MALFORMED",
    "REASON_NON_UTF8",
    "BadLine",
    "CorruptFileError",
    "EmptyFileError",
    "LandingChunk",
    "LandingError",
    "NestedGzipError",
    "SchemaMismatchError",
    "bad_lines_frame",
    "coerce_chunk",
    "detect_format",
    "find_landing_file",
    "iter_landing",
]

DEFAULT_CHUNK_BYTES: Final = 32 * 1024 * 1024
DEFAULT_CHUNK_ROWS: Final = 500_000
GZIP_MAGIC: Final = b"\x1f\x8b"


def detect_format(path: str | Path, s3: S3Settings | None = None) -> tuple[str, bool]:
    """``(fmt, gzipped)`` from the file name, with gzip confirmed or discovered by its magic bytes."""
    p = str(path)
    name = basename(p).lower()
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".csv"):
        fmt = "csv"
    elif base.endswith((".jsonl", ".json", ".ndjson")):
        fmt = "jsonl"
    elif base.endswith(".parquet"):
        fmt = "parquet"
    else:
        raise ValueError(f"cannot tell the format of {p}: expected .csv, .jsonl or .parquet, optionally .gz")
    with open_input(p, s3, buffer_size=4096) as fh:
        head = fh.read(4)
    gz = head[:2] == GZIP_MAGIC
    if fmt == "parquet" and gz:
        raise CorruptFileError(p, "gzip-wrapped Parquet is not supported; Parquet compresses internally")
    return fmt, gz


def iter_landing(
    path: str | Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    s3: S3Settings | None = None,
) -> Generator[LandingChunk, None, None]:
    """Yield a landing file in bounded chunks (``chunk_bytes`` for text, ``chunk_rows`` for Parquet).

    ``path`` is a local path or an ``s3://`` URI (``s3`` gives the endpoint; default from the env).
    Raises :class:`LandingError` subclasses for file-level problems; they may surface after some chunks
    were yielded (a truncated gzip is only noticed at its end), so callers must stage, not commit, chunks.
    """
    p = str(path)
    if input_size(p, s3) == 0:
        raise EmptyFileError(p, "the file has no bytes")
    fmt, gz = detect_format(p, s3)
    raw = open_input(p, s3)
    try:
        if fmt == "parquet":
            yield from _iter_parquet(p, raw, chunk_rows)
            return
        opened: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw  # type: ignore[assignment]
        try:
            if gz and opened.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
                raise NestedGzipError(p, "the gzip stream holds another gzip stream; decompress it once more")
            reader = _iter_csv if fmt == "csv" else iter_json
            yield from reader(p, opened, chunk_bytes)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise CorruptFileError(p, f"truncated or corrupt gzip stream ({exc})") from exc
        finally:
            opened.close()
    finally:
        raw.close()


def find_landing_file(landing_root: str | Path, day: date, s3: S3Settings | None = None) -> str:
    """The one landing file of ``day`` under ``<landing>/date=D/`` (a path or ``s3://`` URI).

    Raises FileNotFoundError when there is none and ValueError when there are several: which of two
    deliveries is the right one is a human decision, never a guess.
    """
    folder = join_uri(landing_root, partition_dir_name(day))
    found = [n for n in list_names(folder, s3) if n.startswith(f"{LANDING_STEM}.")]
    if not found:
        raise FileNotFoundError(f"no landing file for {day}: expected {folder}/{LANDING_STEM}.<csv|jsonl|parquet>[.gz]")
    if len(found) > 1:
        raise ValueError(f"{len(found)} landing files for {day} in {folder}: {found}; keep one")
    return join_uri(folder, found[0])


def _iter_csv(path: str, stream: BinaryIO, chunk_bytes: int) -> Iterator[LandingChunk]:
    header_raw = stream.readline()
    if not header_raw.strip():
        raise EmptyFileError(path, "no header line")
    try:
        header = next(csv.reader([header_raw.decode("utf-8-sig")]))
    except UnicodeDecodeError as exc:
        raise SchemaMismatchError(path, [repr(header_raw[:200])]) from exc
    header = [h.strip() for h in header]
    check_columns(path, header)
    line_no = 2
    rows = 0
    for block in read_blocks(stream, chunk_bytes):
        n_lines = line_count(block)
        fast = _parse_clean_block(block, header, n_lines, line_no)
        if fast is not None:
            frame, bad, row_lines = fast
            origin: BlockRows | ListRows = BlockRows(block, line_no, len(frame), row_lines)
        else:
            lines, numbers, bad = decode_block(block, line_no)
            keep = [(n, s) for n, s in zip(numbers, lines, strict=True) if s.strip()]
            parsed, kept = _parse_csv_lines(keep, header, bad)
            frame = _arrow_strings(parsed)
            origin = ListRows([s for _, s in kept], np.array([n for n, _ in kept], dtype=np.int64))
        line_no += n_lines
        rows += len(frame) + len(bad)
        yield LandingChunk(text_frame(frame), bad, origin)
        del block, frame, origin  # drop the block before reading the next one: peak = one block, not two
    if rows == 0:
        raise EmptyFileError(path, "a header and no data rows")


def _csv_options(header: list[str], *, threads: bool, on_invalid: Callable[[pacsv.InvalidRow], str]) -> dict[str, Any]:
    """pyarrow CSV options that reproduce ``pd.read_csv(dtype=str, keep_default_na=False, na_values=[""])``.

    Every column is read as text (casting is :func:`coerce_chunk`'s job, so a wrong type is a per-row
    reason, not a failed block); only the empty field is null; UTF-8 is checked (a bad byte raises).
    """
    return {
        "read_options": pacsv.ReadOptions(column_names=header, use_threads=threads, block_size=1 << 22),
        "parse_options": pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False),
        "convert_options": pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
            check_utf8=True,
        ),
    }


def _parse_clean_block(
    block: bytes, header: list[str], n_lines: int, first_line: int
) -> tuple[pd.DataFrame, list[BadLine], np.ndarray | None] | None:
    """Fast path: parse a block with pyarrow's CSV reader, or None to take the line-by-line path.

    Rows with the wrong number of fields are set aside by the reader's ``invalid_row_handler`` as
    :class:`BadLine` rejects with their text and file line number (so a few malformed lines do not
    cost the slow path). Valid only when every line is accounted for: the block is UTF-8 (pyarrow
    raises otherwise), has no blank lines (checked up front; the slow path skips them) and parsed rows
    plus invalid rows equal the line count. Anything else (a bad byte, an unbalanced quote) returns
    None and the slow path decides line by line, with the exact historic semantics. The third value
    maps each parsed row to its line in the block (None: row i is line i).
    """
    if has_blank_line(block):
        return None
    invalid: list[pacsv.InvalidRow] = []

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(pa.py_buffer(block), **_csv_options(header, threads=True, on_invalid=skip))
        if invalid and any(r.number is None for r in invalid):
            # Line numbers are only known to a single-threaded parse: redo this (rare) block so.
            invalid.clear()
            table = pacsv.read_csv(pa.py_buffer(block), **_csv_options(header, threads=False, on_invalid=skip))
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows + len(invalid) != n_lines:
        return None
    bad = [BadLine(first_line + int(r.number or 1) - 1, r.text.encode("utf-8"), REASON_MALFORMED) for r in invalid]
    row_lines = None
    if invalid:
        row_lines = np.setdiff1d(np.arange(n_lines), [int(r.number or 1) - 1 for r in invalid])
    return table.to_pandas(types_mapper=text_types), bad, row_lines


def _arrow_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Object text columns (slow path) as Arrow-backed text, so every CSV chunk has the same dtypes."""
    return frame.astype({c: ARROW_TEXT for c in frame.columns})


def _read_csv_text(text: str, header: list[str]) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), header=None, names=header, dtype=str, keep_default_na=False, na_values=[""])


def _parse_csv_lines(
    lines: list[tuple[int, str]], header: list[str], bad: list[BadLine]
) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Parse lines with the fast C parser; on a malformed line, fall back to per-line checks.

    Returns the frame and the ``(line_no, text)`` of each of its rows, in order.
    """
    if not lines:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in header}), []
    try:
        frame = _read_csv_text("\n".join(s for _, s in lines), header)
        if len(frame) == len(lines):
            return frame, lines
    except (pd.errors.ParserError, ValueError):
        pass
    good: list[tuple[int, str]] = []
    for n, s in lines:
        fields = next(csv.reader([s]), [])
        if len(fields) == len(header):
            good.append((n, s))
        else:
            bad.append(BadLine(n, s.encode("utf-8"), REASON_MALFORMED))
    if not good:
        return _parse_csv_lines([], header, bad)
    return _read_csv_text("\n".join(s for _, s in good), header), good


def _iter_parquet(path: str, stream: BinaryIO, chunk_rows: int) -> Iterator[LandingChunk]:
    try:  # a page written with a CRC is checked against it: a damaged page fails with that reason
        pf = pq.ParquetFile(stream, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptFileError(path, f"not a readable Parquet file ({exc})") from exc
    check_columns(path, list(pf.schema_arrow.names))
    if pf.metadata.num_rows == 0:
        raise EmptyFileError(path, "a schema and no rows")
    first = 0
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield LandingChunk(text_frame(batch.to_pandas()), [], RecordRows(batch, first))
            first += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptFileError(path, f"Parquet data ends early or is corrupt ({exc})") from exc


def bad_lines_frame(bad: list[BadLine]) -> pd.DataFrame:
    """Bad lines as contract-shaped reject rows: all fields null, the raw line and its number kept."""
    df = pd.DataFrame({c: pd.Series([None] * len(bad), dtype=object) for c in INTERACTION_COLUMNS})
    df[COL_TS] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns, UTC]")
    df[COL_QUANTITY] = pd.Series(pd.NA, index=df.index, dtype="Int64")
    for c in (COL_AMOUNT, COL_RATING):
        df[c] = np.nan
    df["reject_reason"] = [b.reason for b in bad]
    df["raw_line"] = [b.raw_text() for b in bad]
    df["line_no"] = pd.Series([b.line_no for b in bad], dtype="Int64")
    return df
