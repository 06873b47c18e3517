"""Judge every row of a landing file, chunk by chunk, and write it out: accepted, or rejected with why.

:class:`RowJudge` applies the row rules (as pandas masks) and the cross-day duplicate check to each chunk
and writes accepted rows to the lake's staging and rejects, with their raw text and line number, to the
quarantine's. :func:`held_back_rows` gives back the raw text of the accepted rows when the batch as a
whole fails and they must follow the rejects into the quarantine. :mod:`~recflow.validation.landing_day`
drives both for one day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.constants import COL_EVENT, COL_ITEM, COL_USER
from recflow.data.casting import join_reasons
from recflow.data.landing import LandingChunk, bad_lines_frame, coerce_chunk, iter_landing
from recflow.validation.hashing import HashSample, _SeenHashes, hash_values
from recflow.validation.output import (
    COL_LINE_NO,
    COL_RAW_LINE,
    COL_REASON,
    LINES_SCHEMA,
    LazyWriter,
    accepted_table,
    reject_table,
)
from recflow.validation.rules import row_masks
from recflow.validation.suites import SuiteSpec

if TYPE_CHECKING:
    from recflow.config.s3 import S3Settings

REASON_SEEN: Final = "duplicate_event_id_across_days"


def held_back_rows(
    accepted: Path,
    lines: Path,
    landing_file: str | Path,
    chunk_bytes: int,
    chunk_rows: int,
    s3: S3Settings | None,
) -> Iterator[pd.DataFrame]:
    """The staged accepted rows of a failed batch, each with its line number and original text.

    Why re-read the landing file: keeping the text of every row in case the batch fails would cost
    the success path a copy of the whole file; a failed batch is rare, and the file reads the same way
    twice (same chunks, same line numbers), so the accepted line numbers are matched against a second
    pass, one chunk at a time (memory stays bounded).
    """
    chunks = iter_landing(landing_file, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows, s3=s3)
    current: LandingChunk | None = None
    known = np.empty(0, dtype=np.int64)
    acc = pq.ParquetFile(accepted).iter_batches(batch_size=65_536)
    nums = pq.ParquetFile(lines).iter_batches(batch_size=65_536)
    for batch, num_batch in zip(acc, nums, strict=True):
        wanted = num_batch.column(0).to_numpy()
        raws: list[str] = []
        i = 0
        while i < len(wanted):
            if current is None or not len(known) or wanted[i] > known[-1]:
                current = next(chunks)
                known = current.line_numbers() if len(current.frame) else np.empty(0, dtype=np.int64)
                continue
            j = int(np.searchsorted(wanted, known[-1], side="right"))
            raws += current.raw_lines(np.searchsorted(known, wanted[i:j]))
            i = j
        held = batch.to_pandas()
        held[COL_RAW_LINE] = raws
        held[COL_LINE_NO] = wanted
        yield held
    chunks.close()


@dataclass(frozen=True)
class TypedChunk:
    """A landing chunk cast to the contract dtypes, with per-row cast reasons.

    ``typed`` and ``cast_reasons`` are None when the chunk parsed no row (only bad lines).
    """

    chunk: LandingChunk
    typed: pd.DataFrame | None
    cast_reasons: pd.Series | None


def typed_chunk(chunk: LandingChunk) -> TypedChunk:
    """Cast ``chunk``: the part of judging that needs no state across chunks.

    Why apart from :meth:`RowJudge.take`: ingestion runs it in the read-ahead thread
    (:func:`~recflow.data.prefetch.prefetched`), so the next chunk is read and cast while this one is
    judged: the reader thread then does what a read-only pass does (read, parse, cast), and the judging
    (hashes, rules, duplicates, tables) runs beside it. Hashing stays with the judge: in the reader it
    made that thread, the longer of the two, longer still.
    """
    if chunk.frame.empty:
        return TypedChunk(chunk, None, None)
    typed, cast_reasons = coerce_chunk(chunk.frame.reset_index(drop=True))
    return TypedChunk(chunk, typed, cast_reasons)


def typed_chunks(chunks: Generator[LandingChunk, None, None]) -> Generator[TypedChunk, None, None]:
    """:func:`typed_chunk` of each of ``chunks``; closing this closes ``chunks`` (and the landing file)."""
    try:
        for chunk in chunks:
            yield typed_chunk(chunk)
    finally:
        chunks.close()


@dataclass
class RowJudge:
    """Judges each chunk of a partition on every row and writes it out: accepted, or rejected with why.

    Holds what spans chunks: the ids seen in this file and in earlier days, the reject counts by reason,
    the unknown user/item counts and the rows landed. It owns its writers and id sets: :meth:`release`
    frees them whatever happened.
    """

    spec: SuiteSpec
    params: Mapping[str, Any]
    prior: _SeenHashes
    users: frozenset[str] | None
    items: frozenset[str] | None
    sample: HashSample | None
    accepted_w: LazyWriter
    lines_w: LazyWriter
    rejects_w: LazyWriter
    gx_rejects_w: LazyWriter | None
    seen_in_file: dict[str, _SeenHashes] = field(default_factory=lambda: {COL_EVENT: _SeenHashes()})
    reasons: Counter[str] = field(default_factory=Counter)
    unknown: dict[str, list[int]] = field(default_factory=lambda: {"user": [0, 0], "item": [0, 0]})
    landed: int = 0

    def take(self, item: LandingChunk | TypedChunk) -> None:
        """Judge one chunk (cast here, unless :func:`typed_chunk` already cast it) and write its rows out."""
        cast = item if isinstance(item, TypedChunk) else typed_chunk(item)
        chunk = cast.chunk
        self.landed += chunk.rows
        if chunk.bad_lines:
            bad = bad_lines_frame(chunk.bad_lines)
            self.reasons.update(bad[COL_REASON])
            self.rejects_w.write(reject_table(bad))
        if cast.typed is None or cast.cast_reasons is None:
            return
        typed, cast_reasons = cast.typed, cast.cast_reasons
        id_hashes = hash_values(typed[COL_EVENT].to_numpy())
        if self.sample is not None:
            self.sample.add(typed, id_hashes)
        masks = row_masks(typed, self.spec, self.params, seen=self.seen_in_file, hashes={COL_EVENT: id_hashes})
        masks[REASON_SEEN] = self.prior.contains(id_hashes) & typed[COL_EVENT].notna().to_numpy()
        why = join_reasons(masks, len(typed), cast_reasons)
        for key, known, col in (("user", self.users, COL_USER), ("item", self.items, COL_ITEM)):
            if known is not None:
                present = typed[col].notna()
                self.unknown[key][0] += int((present & ~typed[col].isin(known)).sum())
                self.unknown[key][1] += int(present.sum())
        rejected = pd.notna(why)
        line_nos = chunk.line_numbers()
        if rejected.any():
            rej = typed[rejected].copy()
            rej[COL_REASON] = why[rejected]
            rej[COL_RAW_LINE] = chunk.raw_lines(np.flatnonzero(rejected))
            rej[COL_LINE_NO] = line_nos[rejected]
            self.reasons.update(r for joined in why[rejected] for r in joined.split(";"))
            self.rejects_w.write(reject_table(rej))
            if self.gx_rejects_w is not None:
                self.gx_rejects_w.write(reject_table(rej))
        if (~rejected).any():  # all accepted (the usual case): no filtered copy, same table and bytes
            self.accepted_w.write(accepted_table(typed[~rejected] if rejected.any() else typed))
            self.lines_w.write(pa.table({COL_LINE_NO: line_nos[~rejected]}, schema=LINES_SCHEMA))

    def unknown_counts(self) -> dict[str, tuple[int, int]]:
        """``(unknown, present)`` per ``user`` / ``item``, for the kinds whose known set is given and not empty."""
        return {k: (v[0], v[1]) for k, v in self.unknown.items() if (self.users if k == "user" else self.items)}

    def release(self) -> None:
        """Delete the spilled id hashes and close every writer (after an error too; staging is deleted anyway)."""
        self.prior.close()
        self.seen_in_file[COL_EVENT].close()
        self.accepted_w.abort()
        self.lines_w.abort()
        self.rejects_w.abort()
        if self.gx_rejects_w is not None:
            self.gx_rejects_w.abort()
