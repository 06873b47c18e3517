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
  header and no rows), :class:`SchemaMismatchError` (missing / extra / renamed columns) and
  :class:`CorruptFileError` (truncated gzip, unreadable Parquet).

CSV blocks are parsed by pyarrow's CSV reader (all columns as text) and kept Arrow-backed
(:data:`ARROW_TEXT`): building a Python ``str`` per value and casting through pandas was ~60 % of the
ingestion time. Blocks the fast reader cannot take whole (bad UTF-8, blank lines, broken quoting) go
through the line-by-line path, which keeps the historic per-line semantics.

Values arrive as text; :func:`coerce_chunk` casts them to the contract dtypes and returns, per row, why a
value could not be cast, so wrong types become row rejects with a reason rather than crashes.

Landing files may be local paths or ``s3://`` objects (:mod:`recflow.data.stores`): objects are read in
byte ranges through a buffered stream, so an object is never downloaded whole.

Limitation: text blocks are cut at newline bytes, so a CSV field with an embedded newline inside quotes is
only supported when it does not straddle a block boundary. The contract's fields never contain newlines.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.contract import (
    INTERACTION_COLUMNS,
    LANDING_STEM,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    partition_dir_name,
)
from recflow.data.stores import basename, input_size, join_uri, list_names, open_input

if TYPE_CHECKING:
    from recflow.config import S3Settings

DEFAULT_CHUNK_BYTES: Final = 32 * 1024 * 1024
DEFAULT_CHUNK_ROWS: Final = 500_000
GZIP_MAGIC: Final = b"\x1f\x8b"
PARQUET_MAGIC: Final = b"PAR1"

#: Row-reject reasons produced while reading and casting (the validator adds the rule reasons).
REASON_NON_UTF8: Final = "non_utf8_line"
REASON_MALFORMED: Final = "malformed_line"


class LandingError(Exception):
    """A landing file that cannot be read as a whole; ``reason`` is a short machine-readable code."""

    reason = "unreadable_file"

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.reason}: {path}: {detail}")


class EmptyFileError(LandingError):
    """No bytes at all, or a header and no data rows."""

    reason = "empty_file"


class SchemaMismatchError(LandingError):
    """The file's columns are not the contract's: some are missing, unexpected, or renamed."""

    reason = "schema_mismatch"

    def __init__(self, path: str | Path, found: list[str]) -> None:
        self.found = found
        self.missing = [c for c in REQUIRED_COLUMNS if c not in found]
        self.extra = [c for c in found if c not in INTERACTION_COLUMNS]
        hint = " (renamed columns show up as one missing and one unexpected)" if self.missing and self.extra else ""
        super().__init__(
            path,
            f"missing columns {self.missing}, unexpected columns {self.extra}{hint}; "
            f"expected {list(INTERACTION_COLUMNS)} (rating optional), found {found}",
        )


class CorruptFileError(LandingError):
    """The bytes end early or are not the format they claim (truncated gzip, broken Parquet)."""

    reason = "corrupt_file"


@dataclass(frozen=True)
class BadLine:
    """A line that could not be decoded or parsed; kept verbatim so the quarantine loses nothing."""

    line_no: int
    raw: bytes
    reason: str

    def raw_text(self) -> str:
        """The raw bytes as text with undecodable bytes escaped (``\\xff``), for Parquet and reports."""
        return self.raw.decode("utf-8", errors="backslashreplace")


@dataclass
class LandingChunk:
    """One bounded slice of a landing file: parsed rows (contract columns, text or typed) and bad lines."""

    frame: pd.DataFrame
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def rows(self) -> int:
        """Rows this chunk accounts for: parsed rows plus rejected lines."""
        return len(self.frame) + len(self.bad_lines)


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
) -> Iterator[LandingChunk]:
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
            reader = _iter_csv if fmt == "csv" else _iter_jsonl
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


def _blocks(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """Blocks of about ``chunk_bytes`` that always end at a line end (or the end of the file)."""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += stream.readline()
        yield block


def _decode_block(block: bytes, first_line: int) -> tuple[list[str], list[int], list[BadLine]]:
    """Decode a block into lines, setting aside lines that are not UTF-8 (fast path: the whole block)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        good: list[str] = []
        numbers: list[int] = []
        bad: list[BadLine] = []
        for i, raw in enumerate(block.splitlines()):
            try:
                good.append(raw.decode("utf-8"))
                numbers.append(first_line + i)
            except UnicodeDecodeError:
                bad.append(BadLine(first_line + i, raw, REASON_NON_UTF8))
        return good, numbers, bad
    lines = text.splitlines()
    return lines, list(range(first_line, first_line + len(lines))), []


def _check_columns(path: str | Path, found: list[str]) -> None:
    if any(c not in found for c in REQUIRED_COLUMNS) or any(c not in INTERACTION_COLUMNS for c in found):
        raise SchemaMismatchError(path, found)
    if len(set(found)) != len(found):
        raise SchemaMismatchError(path, found)


def _text_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Contract columns in contract order; an absent optional column becomes all-null."""
    arrow = any(isinstance(t, pd.ArrowDtype) for t in records.dtypes)
    for c in OPTIONAL_COLUMNS:
        if c not in records.columns:
            records[c] = pd.Series(None, index=records.index, dtype=ARROW_TEXT) if arrow else None
    return records.loc[:, list(INTERACTION_COLUMNS)]


def _iter_csv(path: str, stream: BinaryIO, chunk_bytes: int) -> Iterator[LandingChunk]:
    header_raw = stream.readline()
    if not header_raw.strip():
        raise EmptyFileError(path, "no header line")
    try:
        header = next(csv.reader([header_raw.decode("utf-8-sig")]))
    except UnicodeDecodeError as exc:
        raise SchemaMismatchError(path, [repr(header_raw[:200])]) from exc
    header = [h.strip() for h in header]
    _check_columns(path, header)
    line_no = 2
    rows = 0
    for block in _blocks(stream, chunk_bytes):
        n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        fast = _parse_clean_block(block, header, n_lines, line_no)
        if fast is not None:
            frame, bad = fast
        else:
            lines, numbers, bad = _decode_block(block, line_no)
            keep = [(n, s) for n, s in zip(numbers, lines, strict=True) if s.strip()]
            frame = _arrow_strings(_parse_csv_lines(keep, header, bad))
        line_no += n_lines
        rows += len(frame) + len(bad)
        yield LandingChunk(_text_frame(frame), bad)
        del block, frame  # drop the block before reading the next one: peak = one block, not two
    if rows == 0:
        raise EmptyFileError(path, "a header and no data rows")


#: An interior blank (or whitespace-only) line. It starts with a literal ``\n`` so ``re`` scans for that
#: byte with memchr; the first and the last line of a block are checked by :func:`_has_blank_line`.
#: (The former ``(^|\n)...(\n|$)`` also matched the end of every block, so the fast path never ran.)
_BLANK_LINE: Final = re.compile(rb"\n[ \t\r]*\n")
_BLANK_EDGE: Final = re.compile(rb"[ \t\r]*")


def _has_blank_line(block: bytes) -> bool:
    """Whether some line of ``block`` is empty or whitespace only (pandas and the slow path skip those)."""
    first_end = block.find(b"\n")
    first = block if first_end < 0 else block[:first_end]
    last = block[block.rfind(b"\n") + 1 :]
    return (
        _BLANK_EDGE.fullmatch(first) is not None
        or (bool(last) and _BLANK_EDGE.fullmatch(last) is not None)
        or _BLANK_LINE.search(block) is not None
    )


#: Arrow-backed text: pyarrow's CSV reader fills these buffers directly, and slicing, filtering and
#: writing them to Parquet never creates a Python ``str`` per value (which was ~60 % of ingestion).
ARROW_TEXT: Final = pd.ArrowDtype(pa.string())


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
) -> tuple[pd.DataFrame, list[BadLine]] | None:
    """Fast path: parse a block with pyarrow's CSV reader, or None to take the line-by-line path.

    Rows with the wrong number of fields are set aside by the reader's ``invalid_row_handler`` as
    :class:`BadLine` rejects with their text and file line number (so a few malformed lines do not
    cost the slow path). Valid only when every line is accounted for: the block is UTF-8 (pyarrow
    raises otherwise), has no blank lines (checked up front; the slow path skips them) and parsed rows
    plus invalid rows equal the line count. Anything else (a bad byte, an unbalanced quote) returns
    None and the slow path decides line by line, with the exact historic semantics.
    """
    if _has_blank_line(block):
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
    return table.to_pandas(types_mapper=_text_types), bad


def _text_types(dtype: pa.DataType) -> pd.ArrowDtype | None:
    """``types_mapper`` for ``Table.to_pandas``: strings stay in Arrow buffers (zero copy)."""
    return ARROW_TEXT if pa.types.is_string(dtype) else None


def _arrow_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Object text columns (slow path) as Arrow-backed text, so every CSV chunk has the same dtypes."""
    return frame.astype({c: ARROW_TEXT for c in frame.columns})


def _read_csv_text(text: str, header: list[str]) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), header=None, names=header, dtype=str, keep_default_na=False, na_values=[""])


def _parse_csv_lines(lines: list[tuple[int, str]], header: list[str], bad: list[BadLine]) -> pd.DataFrame:
    """Parse lines with the fast C parser; on a malformed line, fall back to per-line checks."""
    if not lines:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in header})
    try:
        frame = _read_csv_text("\n".join(s for _, s in lines), header)
        if len(frame) == len(lines):
            return frame
    except (pd.errors.ParserError, ValueError):
        pass
    good: list[str] = []
    for n, s in lines:
        fields = next(csv.reader([s]), [])
        if len(fields) == len(header):
            good.append(s)
        else:
            bad.append(BadLine(n, s.encode("utf-8"), REASON_MALFORMED))
    return _read_csv_text("\n".join(good), header) if good else _parse_csv_lines([], header, bad)


def _iter_jsonl(path: str, stream: BinaryIO, chunk_bytes: int) -> Iterator[LandingChunk]:
    line_no = 1
    rows = 0
    checked = False
    for block in _blocks(stream, chunk_bytes):
        lines, numbers, bad = _decode_block(block, line_no)
        line_no += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        records: list[dict[str, object]] = []
        for n, s in zip(numbers, lines, strict=True):
            if not s.strip():
                continue
            try:
                obj = json.loads(s)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                records.append(obj)
            else:
                bad.append(BadLine(n, s.encode("utf-8"), REASON_MALFORMED))
        frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
        if not checked and len(frame.columns):
            _check_columns(path, [str(c) for c in frame.columns])
            checked = True
        elif checked and any(c not in INTERACTION_COLUMNS for c in frame.columns):
            _check_columns(path, [str(c) for c in frame.columns])
        for c in REQUIRED_COLUMNS:
            if c not in frame.columns:
                frame[c] = None  # a record missing a key: its row is rejected for the null
        rows += len(frame) + len(bad)
        yield LandingChunk(_text_frame(frame).astype(object), bad)
    if rows == 0:
        raise EmptyFileError(path, "no JSON records")


def _iter_parquet(path: str, stream: BinaryIO, chunk_rows: int) -> Iterator[LandingChunk]:
    try:
        pf = pq.ParquetFile(stream)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptFileError(path, f"not a readable Parquet file ({exc})") from exc
    _check_columns(path, list(pf.schema_arrow.names))
    if pf.metadata.num_rows == 0:
        raise EmptyFileError(path, "a schema and no rows")
    try:
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield LandingChunk(_text_frame(batch.to_pandas()))
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptFileError(path, f"Parquet data ends early or is corrupt ({exc})") from exc


# ------------------------------------------------------------------------------------------ casting


def _as_text(s: pd.Series) -> pd.Series:
    """Strings (``str`` objects) with blanks as None; non-string values (ints in Parquet or JSON) are
    stringified, not lost. Surrounding spaces are data and are kept."""
    out = s.astype(object)
    isnull = out.isna()
    if pd.api.types.infer_dtype(out, skipna=True) not in ("string", "empty"):
        out = out.where(isnull, out.astype(str))
    return out.where(~isnull & (out != ""), None).astype(object)


def _arrow_text(s: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow string buffers behind ``s`` when it is Arrow-backed text (the CSV reader's output)."""
    if isinstance(s.dtype, pd.ArrowDtype) and pa.types.is_string(s.dtype.pyarrow_dtype):
        arr: pa.ChunkedArray = s.array.__arrow_array__()
        return arr
    return None


def _try_cast(arr: pa.ChunkedArray | None, to: pa.DataType) -> pa.ChunkedArray | None:
    """Arrow's cast of a whole text column, or None when any value does not parse.

    Arrow's parsers are stricter than pandas' (no ``+5``, no surrounding spaces, no naive timestamps),
    so a successful cast only ever accepts values pandas would also accept with the same meaning; on
    failure the caller takes the pandas path for that column of that chunk, which names the bad rows.
    Clean data (the common case) never builds a Python object per value.
    """
    if arr is None:
        return None
    try:
        out: pa.ChunkedArray = pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return out


def _arrow_series(arr: pa.ChunkedArray, index: pd.Index, dtype: str) -> pd.Series:
    """A numpy-backed Series from an Arrow column (nulls become NaN / NaT / <NA> as ``dtype`` says)."""
    return pd.Series(arr.to_pandas(), index=index).astype(dtype)


def coerce_chunk(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Cast a chunk to the contract dtypes; also return, per row, why a present value failed to cast.

    Returns ``(typed, reasons)``: ``typed`` has the contract columns (``quantity`` as nullable ``Int64``
    so an unparsable or fractional quantity can stay null), ``reasons`` holds ``None`` or codes like
    ``amount_not_numeric`` joined by ``;``. Naive timestamps are read as UTC (the contract's zone).

    Arrow-backed text (CSV chunks) is cast with Arrow compute, column by column, and text columns stay
    Arrow-backed (:data:`ARROW_TEXT`); a column Arrow cannot cast whole, and any object column (JSON
    lines, Parquet, the slow CSV path), goes through pandas, which decides row by row.
    """
    index = frame.index
    typed = pd.DataFrame(index=index)
    problems: dict[str, np.ndarray] = {}
    for c in (COL_EVENT, COL_USER, COL_ITEM):
        text = _arrow_text(frame[c])
        if text is not None:  # the CSV reader already made empty fields null
            typed[c] = frame[c]
        else:
            typed[c] = _as_text(frame[c])

    raw_ts = frame[COL_TS]
    fast_ts = _try_cast(_arrow_text(raw_ts), pa.timestamp("ns", tz="UTC"))
    if fast_ts is not None:
        typed[COL_TS] = _arrow_series(fast_ts, index, "datetime64[ns, UTC]")
    else:
        if isinstance(raw_ts.dtype, pd.DatetimeTZDtype):
            ts = raw_ts.dt.tz_convert("UTC")
        elif pd.api.types.is_datetime64_dtype(raw_ts.dtype):
            ts = raw_ts.dt.tz_localize("UTC")
        else:
            text_ts = _as_text(raw_ts)
            ts = pd.to_datetime(text_ts, utc=True, errors="coerce", format="ISO8601")
            problems["event_ts_unparsable"] = (text_ts.notna() & ts.isna()).to_numpy()
        typed[COL_TS] = ts.astype("datetime64[ns, UTC]")

    fast_qty = _try_cast(_arrow_text(frame[COL_QUANTITY]), pa.int64())
    if fast_qty is not None:
        typed[COL_QUANTITY] = _arrow_series(fast_qty, index, "Int64")
    else:
        qty = pd.to_numeric(frame[COL_QUANTITY], errors="coerce")
        whole = qty.notna() & np.isfinite(qty.astype(float)) & (qty.astype(float) % 1 == 0)
        problems["quantity_not_integer"] = (frame[COL_QUANTITY].notna() & ~whole).to_numpy()
        typed[COL_QUANTITY] = qty.where(whole).astype("Float64").astype("Int64")

    for c, code in ((COL_AMOUNT, "amount_not_numeric"), (COL_RATING, "rating_not_numeric")):
        fast = _try_cast(_arrow_text(frame[c]), pa.float64())
        if fast is not None:
            num = fast.to_numpy()  # nulls -> NaN
            problems[code] = frame[c].notna().to_numpy() & np.isnan(num)  # a literal "nan" is not a number
            typed[c] = pd.Series(num, index=index, dtype=np.float64)
            continue
        num = pd.to_numeric(frame[c], errors="coerce").astype(np.float64)
        problems[code] = (frame[c].notna() & num.isna()).to_numpy()
        typed[c] = num

    reasons = _join_reasons(problems, len(frame))
    return typed.loc[:, list(INTERACTION_COLUMNS)], pd.Series(reasons, index=index, dtype=object)


def _join_reasons(problems: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Per row, the ``;``-joined names of the masks that are true there (``None`` when none is)."""
    out = np.full(n, None, dtype=object)
    for code, mask in problems.items():
        if not mask.any():
            continue
        idx = np.flatnonzero(mask)
        out[idx] = [code if prev is None else f"{prev};{code}" for prev in out[idx]]
    return out


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
