"""What a landing reader yields (:class:`LandingChunk`) and how a landing file fails as a whole.

Why a module of its own: the CSV, JSON and Parquet readers share these types, and every row they yield
must say where it came from (its line number, or record index for Parquet, and its original text), so
that a rejected row can be quarantined with every byte it had, not only with the values that could be
cast. The raw text is produced lazily, only for the rows that are rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from recflow.data.casting import ARROW_TEXT
from recflow.data.contract import INTERACTION_COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS

#: Row-reject reasons produced while reading (the caster and the validator add theirs).
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
    """The bytes end early or are not the format they claim (truncated gzip, broken Parquet or JSON)."""

    reason = "corrupt_file"


class NestedGzipError(LandingError):
    """A gzip stream whose content is itself gzip: compressed twice by the sender."""

    reason = "nested_gzip"


@dataclass(frozen=True)
class BadLine:
    """A line that could not be decoded or parsed; kept verbatim so the quarantine loses nothing."""

    line_no: int
    raw: bytes
    reason: str

    def raw_text(self) -> str:
        """The raw bytes as text with undecodable bytes escaped (``\\xff``), for Parquet and reports."""
        return self.raw.decode("utf-8", errors="backslashreplace")


class RowOrigin(Protocol):
    """Where each parsed row of a chunk came from."""

    def line_numbers(self) -> np.ndarray:
        """Per row, its 1-based line number (text) or 0-based record index (Parquet)."""

    def raw(self, positions: np.ndarray) -> list[str]:
        """The original text of the rows at ``positions`` (bytes escaped as ``\\xff``)."""


@dataclass
class BlockRows:
    """Rows of a text block: ``row_lines`` maps row -> line index in the block (None: row i is line i).

    Line bounds are found only when raw text is asked for (a rejected row), with one vectorised scan.
    """

    block: bytes
    first_line: int
    n_rows: int
    row_lines: np.ndarray | None = None

    def _lines(self) -> np.ndarray:
        return self.row_lines if self.row_lines is not None else np.arange(self.n_rows, dtype=np.int64)

    def line_numbers(self) -> np.ndarray:
        return self.first_line + self._lines()

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        buf = np.frombuffer(self.block, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        starts = np.concatenate(([0], nl + 1))
        ends = np.concatenate((nl, [len(buf)]))
        cr = (ends > starts) & (buf[np.maximum(ends - 1, 0)] == 13) if len(buf) else np.zeros(len(ends), bool)
        return starts, ends - cr

    def raw(self, positions: np.ndarray) -> list[str]:
        starts, ends = self._bounds
        lines = self._lines()[positions]
        pairs = zip(starts[lines], ends[lines], strict=True)
        return [self.block[s:e].decode("utf-8", errors="backslashreplace") for s, e in pairs]


@dataclass
class ListRows:
    """Rows whose text is already at hand (the line-by-line paths, JSON array elements)."""

    texts: list[str]
    numbers: np.ndarray

    def line_numbers(self) -> np.ndarray:
        return self.numbers

    def raw(self, positions: np.ndarray) -> list[str]:
        return [self.texts[i] for i in positions]


@dataclass
class RecordRows:
    """Rows of a Parquet record batch: the record index in the file, the record as JSON text."""

    batch: pa.RecordBatch
    first_index: int

    def line_numbers(self) -> np.ndarray:
        return self.first_index + np.arange(self.batch.num_rows, dtype=np.int64)

    def raw(self, positions: np.ndarray) -> list[str]:
        records = self.batch.take(pa.array(positions, type=pa.int64())).to_pylist()
        return [json.dumps(r, default=str, ensure_ascii=False) for r in records]


@dataclass
class LandingChunk:
    """One bounded slice of a landing file: parsed rows (contract columns, text or typed) and bad lines.

    ``origin`` tells, per parsed row, its line number (record index for Parquet) and original text.
    """

    frame: pd.DataFrame
    bad_lines: list[BadLine] = field(default_factory=list)
    origin: RowOrigin | None = None

    @property
    def rows(self) -> int:
        """Rows this chunk accounts for: parsed rows plus rejected lines."""
        return len(self.frame) + len(self.bad_lines)

    def line_numbers(self) -> np.ndarray:
        """Per parsed row, its line number (record index for Parquet)."""
        if self.origin is None:
            raise ValueError("this chunk does not know where its rows came from")
        return self.origin.line_numbers()

    def raw_lines(self, positions: np.ndarray) -> list[str]:
        """The original text of the parsed rows at ``positions``."""
        if self.origin is None:
            raise ValueError("this chunk does not know where its rows came from")
        return self.origin.raw(positions)


def check_columns(path: str | Path, found: list[str]) -> None:
    """Raise :class:`SchemaMismatchError` unless ``found`` are the contract's columns (rating optional)."""
    if any(c not in found for c in REQUIRED_COLUMNS) or any(c not in INTERACTION_COLUMNS for c in found):
        raise SchemaMismatchError(path, found)
    if len(set(found)) != len(found):
        raise SchemaMismatchError(path, found)


def text_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Contract columns in contract order; an absent optional column becomes all-null."""
    arrow = any(isinstance(t, pd.ArrowDtype) for t in records.dtypes)
    for c in OPTIONAL_COLUMNS:
        if c not in records.columns:
            records[c] = pd.Series(None, index=records.index, dtype=ARROW_TEXT) if arrow else None
    return records.loc[:, list(INTERACTION_COLUMNS)]


def text_types(dtype: pa.DataType) -> pd.ArrowDtype | None:
    """``types_mapper`` for ``Table.to_pandas``: strings stay in Arrow buffers (zero copy)."""
    return ARROW_TEXT if pa.types.is_string(dtype) else None


def read_blocks(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """Blocks of about ``chunk_bytes`` that always end at a line end (or the end of the file)."""
    while True:
        block = stream.read(chunk_bytes)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += stream.readline()
        yield block


def line_count(block: bytes) -> int:
    """Lines in a block that ends at a line end or at the end of the file."""
    return block.count(b"\n") + (0 if block.endswith(b"\n") else 1)


def split_lines(block: bytes) -> list[bytes]:
    """The lines of a block, cut at ``\\n`` only (a lone ``\\r`` or U+2028 inside a field is data)."""
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def decode_block(block: bytes, first_line: int) -> tuple[list[str], list[int], list[BadLine]]:
    """Decode a block into lines, setting aside lines that are not UTF-8 (one line per ``\\n``)."""
    good: list[str] = []
    numbers: list[int] = []
    bad: list[BadLine] = []
    for i, raw in enumerate(split_lines(block)):
        try:
            good.append(raw.decode("utf-8"))
            numbers.append(first_line + i)
        except UnicodeDecodeError:
            bad.append(BadLine(first_line + i, raw, REASON_NON_UTF8))
    return good, numbers, bad


#: An interior blank (or whitespace-only) line. It starts with a literal ``\n`` so ``re`` scans for that
#: byte with memchr; the first and the last line of a block are checked by :func:`_has_blank_line`.
#: (The former ``(^|\n)...(\n|$)`` also matched the end of every block, so the fast path never ran.)
_BLANK_LINE: Final = re.compile(rb"\n[ \t\r]*\n")
_BLANK_EDGE: Final = re.compile(rb"[ \t\r]*")


def has_blank_line(block: bytes) -> bool:
    """Whether some line of ``block`` is empty or whitespace only (pandas and the slow path skip those)."""
    first_end = block.find(b"\n")
    first = block if first_end < 0 else block[:first_end]
    last = block[block.rfind(b"\n") + 1 :]
    return (
        _BLANK_EDGE.fullmatch(first) is not None
        or (bool(last) and _BLANK_EDGE.fullmatch(last) is not None)
        or _BLANK_LINE.search(block) is not None
    )
