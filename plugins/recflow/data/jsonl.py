"""Read JSON landing files: JSON lines (``.jsonl``, ``.ndjson``, ``.json``) or one JSON array (``.json``).

Why pyarrow first: parsing each line with ``json.loads`` into Python dicts and building a pandas frame
from them cost a Python object per value and memory that grew with the block. pyarrow's JSON reader
fills Arrow buffers directly; the columns are then turned into Arrow text so the caster
(:func:`~recflow.data.casting.coerce_chunk`) treats JSON exactly like CSV: ``NaN`` and ``Infinity``
(which pyarrow and Python accept although JSON does not) become ``amount_not_numeric``, never a
missing amount, and a naive time is UTC.

A block pyarrow cannot take whole (a bad byte, a line that is not an object, a value of the wrong JSON
type, blank lines, a record split over lines) is read line by line, so each bad line becomes a
``malformed_line`` / ``non_utf8_line`` reject with its number and bytes. A UTF-8 byte-order mark at the
start is skipped, as for CSV.

A ``.json`` file whose first character is ``[`` is one array of records: it is read element by element
with :meth:`json.JSONDecoder.raw_decode` over a bounded buffer, and counted in records, not lines; each
element keeps its text and the line it starts on.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from recflow.constants import COL_EVENT, COL_ITEM, COL_TS, COL_USER
from recflow.data.chunks import (
    REASON_MALFORMED,
    BadLine,
    BlockRows,
    CorruptFileError,
    EmptyFileError,
    LandingChunk,
    ListRows,
    check_columns,
    decode_block,
    has_blank_line,
    line_count,
    read_blocks,
    text_frame,
    text_types,
)
from recflow.data.contract import INTERACTION_COLUMNS, REQUIRED_COLUMNS
from recflow.data.lake import basename

BOM: Final = codecs.BOM_UTF8
#: Columns that are JSON strings in the contract; read as text so pyarrow never infers a timestamp
#: (its inference would re-render ``10:00-05:00`` before the caster sees it).
_TEXT_COLUMNS: Final = (COL_EVENT, COL_USER, COL_ITEM, COL_TS)
_TEXT_SCHEMA: Final = pa.schema([(c, pa.string()) for c in _TEXT_COLUMNS])
_EMPTY: Final = pa.scalar(None, pa.string())
_SPACE: Final = re.compile(r"[ \t\r\n]*")


def _keep_constant(token: str) -> str:
    """``parse_constant`` hook: ``NaN`` / ``Infinity`` stay text, so the caster rejects them."""
    return token


_DECODER: Final = json.JSONDecoder(parse_constant=_keep_constant)


class _Columns:
    """The schema check of a JSON file: the first records with keys fix it, later ones may not add keys."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.checked = False

    def check(self, names: list[str]) -> None:
        if not self.checked and names:
            check_columns(self.path, names)
            self.checked = True
        elif self.checked and any(c not in INTERACTION_COLUMNS for c in names):
            check_columns(self.path, names)


def iter_json(path: str, stream: BinaryIO, chunk_bytes: int) -> Iterator[LandingChunk]:
    """Chunks of a JSON landing file (JSON lines, or one JSON array in a ``.json`` file)."""
    blocks = read_blocks(stream, chunk_bytes)
    first = next(blocks, b"").removeprefix(BOM)
    rest = itertools.chain([first], blocks)
    name = basename(path).lower().removesuffix(".gz")
    if name.endswith(".json") and first.lstrip()[:1] == b"[":
        yield from _iter_array(path, rest, chunk_bytes)
    else:
        yield from _iter_lines(path, rest)


def _iter_lines(path: str, blocks: Iterable[bytes]) -> Iterator[LandingChunk]:
    columns = _Columns(path)
    line_no = 1
    rows = 0
    for block in blocks:
        n_lines = line_count(block)
        frame = _arrow_block(block, n_lines, columns)
        if frame is not None:
            chunk = LandingChunk(frame, [], BlockRows(block, line_no, len(frame)))
        else:
            chunk = _python_block(block, line_no, columns)
        line_no += n_lines
        rows += chunk.rows
        yield chunk
        del block, chunk, frame  # peak = one block
    if rows == 0:
        raise EmptyFileError(path, "no JSON records")


def _arrow_block(block: bytes, n_lines: int, columns: _Columns) -> pd.DataFrame | None:
    """A block of JSON lines through pyarrow, as Arrow text; None when the line-by-line path must decide."""
    if has_blank_line(block):
        return None
    try:
        table = pajson.read_json(
            pa.py_buffer(block),
            read_options=pajson.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pajson.ParseOptions(explicit_schema=_TEXT_SCHEMA, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows != n_lines:
        return None
    if not columns.checked and any(table[c].null_count == table.num_rows for c in _TEXT_COLUMNS):
        return None  # absent key or null value? only the record itself can tell
    columns.check(table.column_names)
    out: dict[str, pa.ChunkedArray] = {}
    for name in table.column_names:
        arr = table[name]
        if not pa.types.is_string(arr.type):
            try:
                arr = pc.cast(arr, pa.string())  # 12.5 -> "12.5", NaN -> "nan": the caster decides
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None  # an object or a list where a value belongs
        if name in _TEXT_COLUMNS:
            arr = pc.if_else(pc.equal(arr, ""), _EMPTY, arr)  # "" is missing, as in CSV
        out[name] = arr
    for c in REQUIRED_COLUMNS:
        out.setdefault(c, pa.chunked_array([pa.nulls(table.num_rows, pa.string())]))
    frame = pa.table(out).to_pandas(types_mapper=text_types)
    return text_frame(frame)


def _python_block(block: bytes, first_line: int, columns: _Columns) -> LandingChunk:
    """The line-by-line path: each line is one record, or a reject with its number and bytes."""
    lines, numbers, bad = decode_block(block, first_line)
    held = _Records(bad=bad)
    for n, s in zip(numbers, lines, strict=True):
        if not s.strip():
            continue
        try:
            obj = _DECODER.decode(s)
        except json.JSONDecodeError:
            obj = None
        held.take(obj, s, n)
    return held.chunk(columns)


@dataclass
class _Records:
    """Decoded values of one chunk: objects become rows (with their text and line), anything else a reject."""

    records: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records) + len(self.bad)

    def take(self, obj: object, text: str, line: int) -> None:
        if isinstance(obj, dict):
            self.records.append(obj)
            self.texts.append(text)
            self.numbers.append(line)
        else:
            self.bad.append(BadLine(line, text.encode("utf-8"), REASON_MALFORMED))

    def chunk(self, columns: _Columns) -> LandingChunk:
        rows = ListRows(self.texts, np.array(self.numbers, dtype=np.int64))
        return LandingChunk(_records_frame(self.records, columns), self.bad, rows)


def _records_frame(records: list[dict[str, Any]], columns: _Columns) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    columns.check([str(c) for c in frame.columns])
    for c in REQUIRED_COLUMNS:
        if c not in frame.columns:
            frame[c] = None  # a record missing a key: its row is rejected for the null
    return text_frame(frame).astype(object)


def _iter_array(path: str, blocks: Iterable[bytes], chunk_bytes: int) -> Iterator[LandingChunk]:
    """One JSON array of records, element by element, in chunks of about ``chunk_bytes`` of text."""
    columns = _Columns(path)
    rows = 0
    held, held_bytes = _Records(), 0
    for obj, text, line in _ArrayElements(path, blocks, chunk_bytes):
        held.take(obj, text, line)
        held_bytes += len(text)
        if held_bytes >= chunk_bytes:
            rows += len(held)
            yield held.chunk(columns)
            held, held_bytes = _Records(), 0
    rows += len(held)
    if rows == 0:
        raise EmptyFileError(path, "an empty JSON array")
    yield held.chunk(columns)


class _ArrayElements:
    """The elements of one JSON array, decoded one at a time from a text buffer refilled block by block.

    Iterating yields ``(value, text, line)``: the decoded element, its exact text and the line it starts
    on. A file that is not one well-formed array raises :class:`CorruptFileError` naming the line.
    """

    def __init__(self, path: str, blocks: Iterable[bytes], chunk_bytes: int) -> None:
        self.path = path
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._source = iter(blocks)
        self._max_record = 2 * max(chunk_bytes, 1 << 20)  # a longer "record" is a broken file, not a record
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        self.count = 0  # elements decoded so far

    def __iter__(self) -> Iterator[tuple[object, str, int]]:
        self._more()
        self._skip_space()
        self.pos += 1  # the "["
        expect_value = True
        while True:
            if not self._skip_space():
                raise CorruptFileError(
                    self.path, f"the JSON array ends early (no closing ']'; {self.count} records read)"
                )
            ch = self.buf[self.pos]
            if ch == "]":
                self.pos += 1
                break
            if not expect_value:
                if ch != ",":
                    raise CorruptFileError(
                        self.path, f"not a valid JSON array: expected ',' or ']' at line {self.line}"
                    )
                self.pos += 1
                expect_value = True
                continue
            element = self._decode()
            if element is not None:
                yield element
                expect_value = False
        if self._skip_space():
            raise CorruptFileError(self.path, f"data after the end of the JSON array at line {self.line}")

    def _decode(self) -> tuple[object, str, int] | None:
        """The element at ``pos`` (moving past it), or None when the buffer was refilled to read it whole."""
        try:
            obj, end = _DECODER.raw_decode(self.buf, self.pos)
            complete = end < len(self.buf) or self.eof
        except json.JSONDecodeError as exc:
            if len(self.buf) - self.pos < self._max_record and self._more():  # maybe cut by the buffer end
                return None
            raise CorruptFileError(self.path, f"not a valid JSON array at line {self.line}: {exc.msg}") from exc
        if not complete:  # a number or literal cut by the buffer end: read on and parse it again
            self._more()
            return None
        text, line = self.buf[self.pos : end], self.line
        self.line += text.count("\n")
        self.pos = end
        self.count += 1
        return obj, text, line

    def _more(self) -> bool:
        """Append the next block's text to the unread rest of the buffer; False once the file has ended."""
        if self.eof:
            return False
        data = next(self._source, None)
        try:
            text = self._decoder.decode(data or b"", final=data is None)
        except UnicodeDecodeError as exc:
            raise CorruptFileError(self.path, f"the JSON array is not UTF-8 near line {self.line} ({exc})") from exc
        self.eof = data is None
        self.buf, self.pos = self.buf[self.pos :] + text, 0
        return True

    def _skip_space(self) -> bool:
        """Move to the next non-space character (counting lines); False at the end of the file."""
        while True:
            end = _SPACE.match(self.buf, self.pos).end()  # type: ignore[union-attr]  # matches the empty string
            self.line += self.buf.count("\n", self.pos, end)
            self.pos = end
            if self.pos < len(self.buf):
                return True
            if not self._more():
                return False
