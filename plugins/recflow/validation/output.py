"""Where validated rows go: the lake and quarantine schemas, their partition names, a lazy Parquet writer.

Accepted rows are written with the lake schema (non-null keys, UTC microseconds); rejects carry the
contract columns as far as they could be cast plus ``reject_reason``, ``raw_line`` and ``line_no``.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Executor, Future
from datetime import date
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.contract import INTERACTION_COLUMNS, partition_dir_name

COL_REASON: Final = "reject_reason"
COL_RAW_LINE: Final = "raw_line"
COL_LINE_NO: Final = "line_no"

ACCEPTED_SCHEMA: Final = pa.schema(
    [
        pa.field(COL_EVENT, pa.string(), nullable=False),
        pa.field(COL_USER, pa.string(), nullable=False),
        pa.field(COL_ITEM, pa.string(), nullable=False),
        pa.field(COL_TS, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(COL_QUANTITY, pa.int64(), nullable=False),
        pa.field(COL_AMOUNT, pa.float64()),
        pa.field(COL_RATING, pa.float64()),
    ]
)
LINES_SCHEMA: Final = pa.schema([pa.field(COL_LINE_NO, pa.int64(), nullable=False)])
REJECT_SCHEMA: Final = pa.schema(
    [
        pa.field(COL_EVENT, pa.string()),
        pa.field(COL_USER, pa.string()),
        pa.field(COL_ITEM, pa.string()),
        pa.field(COL_TS, pa.timestamp("us", tz="UTC")),
        pa.field(COL_QUANTITY, pa.int64()),
        pa.field(COL_AMOUNT, pa.float64()),
        pa.field(COL_RATING, pa.float64()),
        pa.field(COL_REASON, pa.string(), nullable=False),
        pa.field(COL_RAW_LINE, pa.string()),
        pa.field(COL_LINE_NO, pa.int64()),
    ]
)


def lake_partition(day: date) -> str:
    """``interactions/event_date=YYYY-MM-DD``, relative to the lake root."""
    return f"interactions/event_date={day}"


def quarantine_partition(day: date) -> str:
    """``date=YYYY-MM-DD``, relative to the quarantine root (default ``<lake>/quarantine``)."""
    return partition_dir_name(day)


def accepted_table(df: pd.DataFrame) -> pa.Table:
    out = df.loc[:, list(INTERACTION_COLUMNS)].copy()
    out[COL_QUANTITY] = out[COL_QUANTITY].astype(np.int64)
    return pa.Table.from_pandas(out, schema=ACCEPTED_SCHEMA, preserve_index=False, safe=False)


def reject_table(df: pd.DataFrame) -> pa.Table:
    out = df.copy()
    for c in (COL_RAW_LINE, COL_LINE_NO):
        if c not in out.columns:
            out[c] = None
    out[COL_LINE_NO] = out[COL_LINE_NO].astype("Int64")
    out = out.loc[:, REJECT_SCHEMA.names]
    return pa.Table.from_pandas(out, schema=REJECT_SCHEMA, preserve_index=False, safe=False)


class LazyWriter:
    """A Parquet writer that creates its file on first write (or an empty one on close).

    With an ``executor`` (one worker thread, shared by the writers of a run) a table is encoded and
    written there while the caller judges the next chunk: Parquet encoding and compression release the
    GIL, and they were a fifth of ingestion's main thread. At most one table per writer is in flight, so
    memory stays bounded; each file gets the same tables in the same order (same bytes); a failed write
    raises at the next :meth:`write` or at :meth:`close`. ``rows`` counts the rows handed over.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, executor: Executor | None = None) -> None:
        self.path, self.schema, self.rows = path, schema, 0
        self._w: pq.ParquetWriter | None = None
        self._executor = executor
        self._pending: Future[None] | None = None

    def write(self, table: pa.Table) -> None:
        self._wait()
        if self._executor is None:
            self._write(table)
        else:
            self._pending = self._executor.submit(self._write, table)
        self.rows += table.num_rows

    def _write(self, table: pa.Table) -> None:
        if self._w is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        self._w.write_table(table)

    def _wait(self) -> None:
        """Wait for the table in flight; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the table in flight and close the file (an empty one if nothing was written); idempotent."""
        self._wait()
        if self._w is None:
            self._write(self.schema.empty_table())
        assert self._w is not None
        self._w.close()

    def abort(self) -> None:
        """Release the file handle after an unexpected error (the staging folder is deleted anyway)."""
        with contextlib.suppress(Exception):  # the error that brought us here is the one to report
            self._wait()
        if self._w is not None:  # ParquetWriter.close is idempotent
            self._w.close()
