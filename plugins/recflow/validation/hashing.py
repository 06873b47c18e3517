"""Bounded-memory helpers over 64-bit hashes: duplicate lookup across chunks and days, and GX's sample.

Duplicate detection keeps 64-bit hashes of event ids (collision odds ~ n^2 / 2^65, about 3e-6 at 10^7
rows), not the ids; the GX sample keeps the rows whose hash is below a limit, so it is the same whatever
the chunk size and every copy of a duplicated id is in it or none is.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

#: Hashes held in memory before they are spilled to a sorted run on disk (8 bytes each: 4 MiB). Small on
#: purpose: a spill briefly holds about three copies, and it should not matter when that meets a chunk.
DEFAULT_MEMORY_HASHES: Final = 1 << 19


#: Hashes read at once when a run on disk is scanned whole (8 bytes each: 8 MiB).
RUN_SLICE: Final = 1 << 20

#: Hashes per block of a run read for a lookup of a few queries (8 bytes each: 4 KiB, one page).
RUN_BLOCK: Final = 512

#: 64-bit words of the in-memory filter (8 bytes each: 32 MiB, fixed). With up to four bits set per hash,
#: about one query in 600 passes it by chance at 10^7 hashes seen (measured: 0.16 %), one in 10^5 at 10^6.
DEFAULT_FILTER_WORDS: Final = 1 << 22

_ONE: Final = np.uint64(1)
_LOW6: Final = np.uint64(63)


class _Filter:
    """A blocked Bloom filter over 64-bit hashes, of fixed size: may answer "seen" wrongly, never "not seen".

    Each hash sets up to four bits of one 64-bit word (the word from its low bits, the bits from its high
    bits), so a lookup or an insert touches one word: one cache miss per hash, not four. Why: checking
    every query against every sorted run on disk cost each chunk a scan of all hashes seen so far, which
    made duplicate detection grow with the square of the file (80 of 290 profiled seconds at 10^7 rows);
    with the filter, only the queries it lets through (true duplicates and ~0.2 % of the rest) are looked
    up on disk. Memory is fixed (``words`` x 8 bytes), whatever the number of hashes.
    """

    def __init__(self, words: int) -> None:
        if words < 1 or words & (words - 1):
            raise ValueError(f"the filter's word count must be a power of two, not {words}")
        self._bits = np.zeros(words, dtype=np.uint64)  # calloc: pages are only touched when first set
        self._low = np.uint64(words - 1)

    def _address(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        word = (hashes & self._low).astype(np.intp)
        mask = _ONE << ((hashes >> np.uint64(40)) & _LOW6)
        for shift in (46, 52, 58):
            mask |= _ONE << ((hashes >> np.uint64(shift)) & _LOW6)
        return word, mask

    def add(self, hashes: np.ndarray) -> None:
        word, mask = self._address(hashes)
        while len(word):  # a word named twice in one assignment keeps one update: set the rest again
            self._bits[word] |= mask
            missed = (self._bits[word] & mask) != mask
            word, mask = word[missed], mask[missed]

    def may_contain(self, hashes: np.ndarray) -> np.ndarray:
        word, mask = self._address(hashes)
        hit: np.ndarray = (self._bits[word] & mask) == mask
        return hit


class _Run:
    """A sorted array of hashes in a file; memory holds only the first value of each block of the file.

    A lookup of a few queries reads only the 4 KiB blocks (:data:`RUN_BLOCK` hashes) that may hold them;
    a lookup of many walks the file slice by slice (:data:`RUN_SLICE` values, one bounded buffer) and
    binary-searches the sorted queries that fall in each slice's range. Memory stays flat: 8 bytes per
    block in memory (1/512 of the hashes), one slice at a time.
    """

    def __init__(self, path: Path, values: np.ndarray) -> None:
        self.path = path
        np.asarray(values, dtype=np.uint64).tofile(path)
        self.n = len(values)
        self.fences = values[::RUN_BLOCK].copy()  # first value of each block
        self.firsts = values[::RUN_SLICE].copy()  # first value of each slice

    def contains(self, queries: np.ndarray) -> np.ndarray:
        """Membership of sorted ``queries``."""
        out = np.zeros(len(queries), dtype=bool)
        if not self.n or not len(queries):
            return out
        block = np.searchsorted(self.fences, queries, side="right") - 1  # -1: below the first value
        starts = np.flatnonzero(np.diff(block, prepend=-2))  # queries are sorted: each block's run of them
        if len(starts) * 8 > len(self.fences):
            return self._scan(queries)  # most blocks are needed: one sequential pass is cheaper
        with self.path.open("rb") as fh:
            for lo, hi in zip(starts, [*starts[1:], len(queries)], strict=True):
                if block[lo] < 0:
                    continue
                fh.seek(int(block[lo]) * RUN_BLOCK * 8)
                values = np.fromfile(fh, dtype=np.uint64, count=RUN_BLOCK)
                q = queries[lo:hi]
                out[lo:hi] = values[np.minimum(np.searchsorted(values, q), len(values) - 1)] == q
        return out

    def _scan(self, queries: np.ndarray) -> np.ndarray:
        """Membership of sorted ``queries``, reading the whole file slice by slice."""
        out = np.zeros(len(queries), dtype=bool)
        bounds = np.searchsorted(queries, self.firsts, side="left")  # queries of slice i: bounds[i]:bounds[i+1]
        with self.path.open("rb") as fh:
            for i, lo in enumerate(bounds):
                hi = bounds[i + 1] if i + 1 < len(bounds) else len(queries)
                if i == 0:
                    lo = 0  # queries below the first value cannot match; searching them is harmless
                if hi <= lo:
                    continue
                fh.seek(i * RUN_SLICE * 8)
                values = np.fromfile(fh, dtype=np.uint64, count=RUN_SLICE)
                q = queries[lo:hi]
                idx = np.minimum(np.searchsorted(values, q), len(values) - 1)
                out[lo:hi] = values[idx] == q
        return out


class _SeenHashes:
    """64-bit hashes of values already seen (earlier chunks, earlier days), in memory that does not grow.

    A fixed-size filter (:class:`_Filter`) answers most lookups; the queries it lets through are looked up
    exactly. Up to ``memory_hashes`` hashes are held in memory as one sorted array (lookups are binary
    searches). Beyond that they are spilled to sorted runs on disk (:class:`_Run`), read block by block,
    so memory does not grow with the number of hashes and nothing is ever copied whole again. Why: the
    single in-memory array was 8 bytes per row plus a full copy at every merge, which made peak memory
    grow with the file (630 -> 802 MiB from 10^6 to 10^7 rows).
    """

    def __init__(
        self,
        values: Iterable[str] | np.ndarray | None = None,
        *,
        memory_hashes: int = DEFAULT_MEMORY_HASHES,
        filter_words: int = DEFAULT_FILTER_WORDS,
    ) -> None:
        self.memory_hashes = memory_hashes
        self._filter = _Filter(filter_words)
        self._parts: list[np.ndarray] = []
        self._merged = np.empty(0, dtype=np.uint64)
        self._runs: list[_Run] = []
        self._dir: Path | None = None
        if values is not None:
            self.add(hash_values(values))

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes):
            self._filter.add(hashes)
            self._parts.append(np.sort(hashes))
            if len(self._merged) + sum(len(p) for p in self._parts) > self.memory_hashes:
                self._spill()

    def _merge(self) -> None:
        if self._parts:
            self._merged = np.concatenate([self._merged, *self._parts])
            self._merged.sort(kind="stable")
            self._parts = []

    def _spill(self) -> None:
        self._merge()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="recflow-seen-"))
            weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._runs.append(_Run(self._dir / f"run-{len(self._runs)}.u64", self._merged))
        self._merged = np.empty(0, dtype=np.uint64)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        self._merge()
        out = np.zeros(len(hashes), dtype=bool)
        if not len(hashes) or not (len(self._merged) or self._runs):
            return out
        maybe = np.flatnonzero(self._filter.may_contain(hashes))  # the rest were never added
        if not len(maybe):
            return out
        order = maybe[np.argsort(hashes[maybe])]  # sorted queries walk each sorted array in order
        queries = hashes[order]
        found = np.zeros(len(queries), dtype=bool)
        if len(self._merged):
            idx = np.searchsorted(self._merged, queries)
            found |= self._merged[np.minimum(idx, len(self._merged) - 1)] == queries
        for run in self._runs:
            pending = np.flatnonzero(~found)
            if not len(pending):
                break
            found[pending] |= run.contains(queries[pending])
        out[order] = found
        return out

    def close(self) -> None:
        """Delete the spilled runs now (they are also deleted when the object is collected)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._runs = None, []


class HashSample:
    """A bounded, deterministic sample of a stream of rows: those whose key hash is below a limit.

    The limit starts at the top of the hash range (keep everything) and halves whenever more than ``cap``
    rows are held, so memory is bounded by ``cap`` rows plus one chunk. A row's membership depends only on
    its hash and the final limit, so the sample is the same whatever the chunk size, and every copy of a
    duplicated key is in it or none is (GX's uniqueness check on the sample still sees duplicates).
    Inputs of at most ``cap`` rows are kept whole.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.limit = int(np.iinfo(np.uint64).max)
        self._parts: list[tuple[pd.DataFrame, np.ndarray]] = []
        self.rows = 0
        self.seen = 0

    @property
    def fraction(self) -> float:
        """Share of the hash range kept (1.0: every row)."""
        return (self.limit + 1) / 2.0**64

    def add(self, df: pd.DataFrame, hashes: np.ndarray) -> None:
        """Add a chunk's rows; the limit is lowered first (counting hashes only), so the chunk is copied once.

        Why: copying every row under the old limit, then filtering again at each halving, copied the
        first chunk whole (hundreds of thousands of rows) to keep at most ``cap``.
        """
        self.seen += len(df)
        limit = self.limit
        while self._held(limit) + int(np.count_nonzero(hashes <= np.uint64(limit))) > self.cap:
            limit //= 2
        if limit != self.limit:
            lim = np.uint64(limit)
            self._parts = [(d[h <= lim], h[h <= lim]) for d, h in self._parts]
            self.limit = limit
        keep = hashes <= np.uint64(self.limit)
        if keep.any():
            self._parts.append((df if keep.all() else df[keep], hashes[keep]))
        self.rows = sum(len(d) for d, _ in self._parts)

    def _held(self, limit: int) -> int:
        lim = np.uint64(limit)
        return sum(int(np.count_nonzero(h <= lim)) for _, h in self._parts)

    def frame(self) -> pd.DataFrame | None:
        """The sampled rows in input order (None when no row was added)."""
        frames = [d for d, _ in self._parts if len(d)]
        return pd.concat(frames, ignore_index=True) if frames else None


def hash_values(values: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
    """Stable 64-bit hashes of strings (same in every process), used for duplicate detection.

    ``categorize=False``: pandas' default factorizes first to hash each distinct value once, which only
    pays off with many repeats; event ids are (nearly) all distinct, so it was ~70 % of the hashing time.
    The hashes are identical either way.
    """
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object)
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    return pd.util.hash_array(arr, categorize=False) if len(arr) else np.empty(0, dtype=np.uint64)
