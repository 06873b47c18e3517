"""The id/seen index of a model and its two disk layouts: what every family shares, whatever it scores with.

- JSON + NumPy (``users.json``, ``items.json``, position = dense index; ``seen.npz``, a CSR index),
  written on the driver by the families that fit there (popularity, hybrid, sequence);
- Parquet tables (``users.parquet``: ``user_id, u[, features]``; ``items.parquet``: ``item_id, i,
  popularity[, features]``; ``seen.parquet``: ``u, seen``), written by Spark for ALS and NCF, which train
  without collecting to the driver (:mod:`recflow.models.tables`), and read back here with pyarrow.

:meth:`IdIndex.load` and :meth:`SeenItems.load` read either layout. The driver keeps only the item side
(:func:`read_items`); the user side is read only by a process that serves every user from memory (the
streaming scorer, the compare step, the canary): :func:`read_users` and :func:`read_seen`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_USER
from recflow.scoring.core import Ragged

if TYPE_CHECKING:
    import pyarrow as pa

USERS_TABLE: Final = "users.parquet"

ITEMS_TABLE: Final = "items.parquet"

SEEN_TABLE: Final = "seen.parquet"

TABLES: Final = (USERS_TABLE, ITEMS_TABLE, SEEN_TABLE)

COL_U: Final = "u"

COL_I: Final = "i"

COL_FEATURES: Final = "features"

COL_POPULARITY: Final = "popularity"

COL_SEEN: Final = "seen"


class ArtifactError(ValueError):
    """An artifact folder is missing files, has an unknown family or a newer schema."""


#: Up to this many ids are looked up one by one in the index's hash table instead of as a pandas Index.
_FEW: Final = 8


def _code(index: pd.Index, key: str) -> int:
    try:
        return int(index.get_loc(key))
    except KeyError:
        return -1


@dataclass(frozen=True)
class IdIndex:
    """Dense 0..n-1 indices for user and item ids, in a fixed (sorted) order so runs are repeatable."""

    users: tuple[str, ...]
    items: tuple[str, ...]

    @classmethod
    def from_frame(cls, df: pd.DataFrame, *, col_user: str = COL_USER, col_item: str = COL_ITEM) -> IdIndex:
        return cls(
            users=tuple(sorted(df[col_user].astype(str).unique())),
            items=tuple(sorted(df[col_item].astype(str).unique())),
        )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @cached_property
    def _user_index(self) -> pd.Index:
        # Built once per loaded model (a hash table, linear in users); every lookup after that is
        # linear in the ids looked up. Rebuilding it per batch made scoring quadratic in users.
        return pd.Index(self.users)

    @cached_property
    def _item_index(self) -> pd.Index:
        return pd.Index(self.items)

    @cached_property
    def item_array(self) -> np.ndarray:
        """Item ids as an object array, for turning item codes back into ids with one ``take``."""
        return np.asarray(self.items, dtype=object)

    def user_codes(self, users: Sequence[str] | pd.Series) -> np.ndarray:
        """Dense index per user id; -1 for ids the model never saw."""
        if len(users) <= _FEW:  # a request or a small poll: building two pandas Indexes cost 0.15 ms of 0.5
            return np.fromiter((_code(self._user_index, str(u)) for u in users), dtype=np.intp, count=len(users))
        return self._user_index.get_indexer(pd.Index(users).astype(str))

    def item_codes(self, items: Sequence[str] | pd.Series) -> np.ndarray:
        return self._item_index.get_indexer(pd.Index(items).astype(str))

    def save(self, folder: Path) -> None:
        (folder / "users.json").write_text(json.dumps(list(self.users)))
        (folder / "items.json").write_text(json.dumps(list(self.items)))

    @classmethod
    def load(cls, folder: Path) -> IdIndex:
        if not (folder / "users.json").exists():
            return cls(users=read_users(folder, factors=False)[0], items=read_items(folder).items)
        return cls(
            users=tuple(json.loads((folder / "users.json").read_text())),
            items=tuple(json.loads((folder / "items.json").read_text())),
        )


@dataclass(frozen=True)
class SeenItems:
    """Items each user interacted with in training, as CSR arrays (indptr over users, item indices)."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def from_frame(
        cls, df: pd.DataFrame, index: IdIndex, *, col_user: str = COL_USER, col_item: str = COL_ITEM
    ) -> SeenItems:
        pairs = pd.DataFrame(
            {"u": index.user_codes(df[col_user]), "i": index.item_codes(df[col_item])}
        ).drop_duplicates()
        pairs = pairs[(pairs.u >= 0) & (pairs.i >= 0)].sort_values(["u", "i"])
        counts = np.bincount(pairs.u.to_numpy(), minlength=index.n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr=indptr, indices=pairs.i.to_numpy(dtype=np.int32))

    @classmethod
    def empty(cls) -> SeenItems:
        return cls(indptr=np.zeros(1, dtype=np.int64), indices=np.zeros(0, dtype=np.int32))

    def ragged(self, user_codes: np.ndarray) -> Ragged:
        """The training items of each given user (none for code -1), as the scoring core's ragged array."""
        codes = np.asarray(user_codes, dtype=np.int64)
        known = codes >= 0
        starts = np.where(known, self.indptr[np.maximum(codes, 0)], 0)
        lengths = np.where(known, self.indptr[np.maximum(codes, 0) + 1] - starts, 0)
        return Ragged.from_spans(self.indices, starts, lengths)

    def mask(self, user_codes: np.ndarray, n_items: int) -> np.ndarray:
        """Boolean matrix (len(user_codes) x n_items), True where the user has seen the item."""
        out = np.zeros((len(user_codes), n_items), dtype=bool)
        seen = self.ragged(user_codes)
        out[seen.row_ids(), seen.values] = True
        return out

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / "seen.npz", indptr=self.indptr, indices=self.indices)

    @classmethod
    def load(cls, folder: Path, n_users: int | None = None) -> SeenItems:
        if not (folder / "seen.npz").exists():
            if n_users is None:
                raise ArtifactError(f"{folder}: seen.parquet needs the number of users to build its index")
            return read_seen(folder, n_users)
        with np.load(folder / "seen.npz") as data:
            return cls(indptr=data["indptr"], indices=data["indices"])


def _read(path: Path, columns: list[str]) -> dict[str, pa.Array]:
    """The columns of a table (a Spark folder of parts or one file), each as one Arrow array."""
    import pyarrow.dataset as ds

    table = ds.dataset(str(path), format="parquet").to_table(columns=columns).combine_chunks()
    return {name: table.column(name).combine_chunks() for name in columns}


def _dense_order(codes: np.ndarray, where: Path) -> np.ndarray:
    """The row order that sorts by code; refuses codes that are not exactly ``0..n-1``."""
    order = np.argsort(codes, kind="stable")
    if not np.array_equal(codes[order], np.arange(len(codes))):
        raise ValueError(f"{where}: codes are not a dense 0..{len(codes) - 1} range")
    return order


def _factor_matrix(column: pa.Array, order: np.ndarray, where: Path) -> np.ndarray:
    if column.null_count:
        raise ValueError(f"{where}: {column.null_count} rows have no factors")
    values = np.asarray(column.flatten(), dtype=np.float32)
    return np.ascontiguousarray(values.reshape(len(order), -1)[order])


def _strings(column: pa.Array, order: np.ndarray) -> tuple[str, ...]:
    return tuple(np.asarray(column.to_pylist(), dtype=object)[order].tolist())


@dataclass(frozen=True)
class ItemSide:
    """What a worker (and the training driver) holds: item ids by code, popularity, item factors."""

    items: tuple[str, ...]
    popularity: np.ndarray
    factors: np.ndarray | None


def read_items(folder: Path) -> ItemSide:
    """The item table, ordered by code (bounded by the catalog, so it is fine on any driver)."""
    import pyarrow.dataset as ds

    path = folder / ITEMS_TABLE
    with_factors = COL_FEATURES in ds.dataset(str(path), format="parquet").schema.names
    data = _read(path, [COL_ITEM, COL_I, COL_POPULARITY, *([COL_FEATURES] if with_factors else [])])
    order = _dense_order(np.asarray(data[COL_I], dtype=np.int64), path)
    return ItemSide(
        items=_strings(data[COL_ITEM], order),
        popularity=np.asarray(data[COL_POPULARITY], dtype=np.float32)[order],
        factors=_factor_matrix(data[COL_FEATURES], order, path) if with_factors else None,
    )


def read_users(folder: Path, *, factors: bool) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Every user id by code (and the factor rows): for processes that serve all users from memory."""
    path = folder / USERS_TABLE
    data = _read(path, [COL_USER, COL_U, *([COL_FEATURES] if factors else [])])
    order = _dense_order(np.asarray(data[COL_U], dtype=np.int64), path)
    return _strings(data[COL_USER], order), (_factor_matrix(data[COL_FEATURES], order, path) if factors else None)


def read_seen(folder: Path, n_users: int) -> SeenItems:
    """The training items of every user as the CSR index :class:`SeenItems` (a user absent: none)."""
    path = folder / SEEN_TABLE
    data = _read(path, [COL_U, COL_SEEN])
    codes = np.asarray(data[COL_U], dtype=np.int64)
    if len(codes) and (codes.min() < 0 or codes.max() >= n_users or len(np.unique(codes)) != len(codes)):
        raise ValueError(f"{path}: user codes outside 0..{n_users - 1} or repeated")
    lists = data[COL_SEEN]
    offsets = np.asarray(lists.offsets, dtype=np.int64)
    values = np.asarray(lists.flatten(), dtype=np.int32)
    lengths = np.zeros(n_users, dtype=np.int64)
    starts = np.zeros(n_users, dtype=np.int64)
    lengths[codes] = np.diff(offsets)
    starts[codes] = offsets[:-1] - offsets[0]
    ragged = Ragged.from_spans(values, starts, lengths)
    return SeenItems(indptr=ragged.offsets, indices=ragged.values)


def write_user_table(folder: Path, index: IdIndex, factors: np.ndarray | None = None) -> None:
    """``users.parquet``: (user_id, u[, features]) so Spark joins users to codes and factor rows itself."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, pa.Array] = {
        COL_USER: pa.array(index.users, type=pa.string()),
        "u": pa.array(np.arange(index.n_users, dtype=np.int32)),
    }
    if factors is not None:
        rank = factors.shape[1]
        offsets = np.arange(index.n_users + 1, dtype=np.int32) * rank
        values = np.ascontiguousarray(factors, dtype=np.float32).reshape(-1)
        columns["features"] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    pq.write_table(pa.table(columns), folder / "users.parquet")


def write_tables_from_memory(
    folder: Path,
    index: IdIndex,
    seen: SeenItems,
    popularity: np.ndarray,
    user_factors: np.ndarray | None = None,
    item_factors: np.ndarray | None = None,
) -> None:
    """The same three tables, one Parquet file each, from a model held in memory (e.g. one loaded from a
    schema-1 artifact and saved again), so every ALS / NCF artifact has one layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def matrix(values: np.ndarray) -> pa.Array:
        rows, rank = values.shape
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * rank)
        return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1)))

    users = {
        COL_USER: pa.array(index.users, type=pa.string()),
        COL_U: pa.array(np.arange(index.n_users, dtype=np.int32)),
    }
    items = {
        COL_ITEM: pa.array(index.items, type=pa.string()),
        COL_I: pa.array(np.arange(index.n_items, dtype=np.int32)),
        COL_POPULARITY: pa.array(np.asarray(popularity, dtype=np.float32)),
    }
    if user_factors is not None:
        users[COL_FEATURES] = matrix(user_factors)
    if item_factors is not None:
        items[COL_FEATURES] = matrix(item_factors)
    seen_lists = pa.ListArray.from_arrays(
        pa.array(np.asarray(seen.indptr, dtype=np.int32)), pa.array(np.asarray(seen.indices, dtype=np.int32))
    )
    tables = {
        USERS_TABLE: pa.table(users),
        ITEMS_TABLE: pa.table(items),
        SEEN_TABLE: pa.table({COL_U: pa.array(np.arange(index.n_users, dtype=np.int32)), COL_SEEN: seen_lists}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        pq.write_table(table, target)
