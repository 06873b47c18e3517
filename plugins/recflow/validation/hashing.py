"""Bounded-memory helpers over 64-bit hashes: duplicate lookup across chunks and days, and GX's sample.

Duplicate detection keeps 64-bit hashes of event ids (collision odds ~ n^2 / 2^65, about 3e-6 at 10^7
rows), not the ids; the GX sample keeps the rows whose hash is below a limit, so it is the same whatever
the chunk size and every copy of a duplicated id is in it or none is.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


class _SeenHashes:
    """64-bit hashes of values already seen (earlier chunks, earlier days): 8 bytes per value, fast lookup.

    Kept as one sorted array. Appending a chunk and re-sorting is linear (NumPy's stable sort is a
    timsort, which merges the two sorted runs), and lookups are binary searches: no per-chunk
    ``np.unique`` over everything seen so far, which made a 10^7-row file quadratic.
    """

    def __init__(self, values: Iterable[str] | np.ndarray | None = None) -> None:
        self._parts: list[np.ndarray] = []
        self._merged = np.empty(0, dtype=np.uint64)
        if values is not None:
            self.add(hash_values(values))

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes):
            self._parts.append(np.sort(hashes))

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if self._parts:
            self._merged = np.concatenate([self._merged, *self._parts])
            self._merged.sort(kind="stable")
            self._parts = []
        if not len(self._merged) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool)
        idx = np.searchsorted(self._merged, hashes)
        return self._merged[np.minimum(idx, len(self._merged) - 1)] == hashes


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
        self.seen += len(df)
        keep = hashes <= np.uint64(self.limit)
        if keep.any():
            self._parts.append((df[keep], hashes[keep]))
            self.rows += int(keep.sum())
        while self.rows > self.cap:
            self.limit //= 2
            lim = np.uint64(self.limit)
            self._parts = [(d[h <= lim], h[h <= lim]) for d, h in self._parts]
            self.rows = sum(len(d) for d, _ in self._parts)

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
