"""A model's id maps, factor rows and seen items as Parquet tables that Spark writes and serving reads.

Why: training must not bring every (user, item) pair or a factor matrix with one row per user to the
driver. ALS and NCF therefore build their dense codes in Spark (:func:`dense_codes`), and Spark writes
what a scorer needs straight into the model's folder:

- ``users.parquet``: ``user_id, u[, features]`` (the batch job joins users to codes and factor rows);
- ``items.parquet``: ``item_id, i, popularity[, features]`` (``popularity`` = distinct training users,
  the fallback's input);
- ``seen.parquet``: ``u, seen`` (the user's training items as a sorted ``array<int>``).

The driver keeps only the item side (:func:`read_items`). The user side is read with pyarrow only by a
process that serves every user from memory (the streaming scorer, the compare step, the canary): see
:func:`read_users` and :func:`read_seen`. :class:`TableBackedRecommender` is what the families fitted
this way share: their item-side-only model, reading the user side back, saving the tables.
"""

from __future__ import annotations

import shutil
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self

import numpy as np

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.artifact import ArtifactError, IdIndex, Recommender, SeenItems

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

USERS_TABLE: Final = "users.parquet"
ITEMS_TABLE: Final = "items.parquet"
SEEN_TABLE: Final = "seen.parquet"
TABLES: Final = (USERS_TABLE, ITEMS_TABLE, SEEN_TABLE)
COL_U: Final = "u"
COL_I: Final = "i"
COL_FEATURES: Final = "features"
COL_POPULARITY: Final = "popularity"
COL_SEEN: Final = "seen"


def dense_codes(frame: DataFrame, col: str, code_col: str, *, partitions: int | None = None) -> DataFrame:
    """Distinct non-null ids of ``col`` (as strings) with dense codes ``0..n-1`` in sorted id order.

    Computed in Spark, never on the driver: the ids are range-partitioned (partition ``p`` holds only ids
    below those of ``p + 1``), numbered inside each partition, and shifted by the sizes of the partitions
    before it (one small row per partition is all the driver sees). Sorted order keeps the codes the
    same as the former driver-side index (Spark compares strings by UTF-8 bytes, i.e. by code point,
    as Python does), so a seeded fit gives the same model as before. The result is checkpointed, so
    the numbering cannot change between the jobs that read it.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ids = frame.select(F.col(col).cast("string").alias(col)).where(F.col(col).isNotNull()).distinct()
    parts = partitions or frame.sparkSession.sparkContext.defaultParallelism
    ranked = (
        ids.repartitionByRange(parts, col)
        .withColumn("_part", F.spark_partition_id())
        .withColumn("_row", F.row_number().over(Window.partitionBy("_part").orderBy(col)))
        .localCheckpoint(eager=True)
    )
    sizes = {int(r["_part"]): int(r["n"]) for r in ranked.groupBy("_part").agg(F.count("*").alias("n")).collect()}
    offsets, total = {}, 0
    for part in sorted(sizes):
        offsets[part], total = total, total + sizes[part]
    shift = F.create_map(*[x for part, off in offsets.items() for x in (F.lit(part), F.lit(off))])
    code = (shift[F.col("_part")] + F.col("_row") - 1).cast("int") if offsets else F.lit(0).cast("int")
    return ranked.select(col, code.alias(code_col))


def factor_frame(factors: DataFrame, code_col: str) -> DataFrame:
    """MLlib's ``(id, features)`` factor rows, renamed to our code column."""
    from pyspark.sql import functions as F

    return factors.select(F.col("id").cast("int").alias(code_col), F.col(COL_FEATURES))


def popularity_frame(pairs: DataFrame) -> DataFrame:
    """``i, popularity``: distinct users per item, from distinct ``(u, i)`` code pairs."""
    from pyspark.sql import functions as F

    return pairs.groupBy(COL_I).agg(F.countDistinct(COL_U).cast("float").alias(COL_POPULARITY))


def seen_frame(pairs: DataFrame) -> DataFrame:
    """``u, seen``: each user's distinct training item codes, sorted."""
    from pyspark.sql import functions as F

    return pairs.groupBy(COL_U).agg(F.array_sort(F.collect_set(F.col(COL_I).cast("int"))).alias(COL_SEEN))


def coded_pairs(train: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """``(users, items, pairs)``: the dense user and item codes of ``train``'s interactions and its
    distinct ``(u, i)`` code pairs (cached: the caller unpersists them), for families whose tables hold
    no factors (NCF, popularity)."""
    from pyspark.sql import functions as F

    ids = train.select(F.col(COL_USER).cast("string"), F.col(COL_ITEM).cast("string")).distinct()
    users = dense_codes(ids, COL_USER, COL_U)
    items = dense_codes(ids, COL_ITEM, COL_I)
    return users, items, ids.join(users, COL_USER).join(F.broadcast(items), COL_ITEM).select(COL_U, COL_I).cache()


def write_pair_tables(folder: Path, users: DataFrame, items: DataFrame, pairs: DataFrame) -> None:
    """The three tables of :func:`coded_pairs`' output: ids and codes, per-item popularity, seen items."""
    write_tables(folder, users=users, items=items.join(popularity_frame(pairs), COL_I, "left"), seen=seen_frame(pairs))


def write_tables(folder: Path, *, users: DataFrame, items: DataFrame, seen: DataFrame) -> None:
    """Spark writes the three tables under ``folder``; Hadoop's ``.crc`` side files are removed (the
    registry checksums every file itself, and a stale ``.crc`` would only make a good file unreadable)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame, key in ((USERS_TABLE, users, COL_U), (ITEMS_TABLE, items, COL_I), (SEEN_TABLE, seen, COL_U)):
        frame.sortWithinPartitions(key).write.mode("overwrite").parquet(str(folder / name))
        for crc in (folder / name).glob(".*.crc"):
            crc.unlink()


def copy_tables(source: Path, folder: Path) -> None:
    """Put the tables Spark wrote in ``source`` into an artifact folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        target = folder / name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.copytree(source / name, target)


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
    from recflow.scoring.core import Ragged

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


class TableBackedRecommender(Recommender):
    """A family that Spark fits into these tables (ALS, NCF): the model holds its item side and reads its
    user side from :attr:`tables` only in a process that serves every user from memory.

    Why one base: both families keep the same extra state (the stored popularity and the tables), build
    the same item-side-only model after a fit and before a load, read the user side back and save the
    tables the same way. A family adds its own constructor arguments (passed by name as ``fields``) and
    says, in :meth:`_fields`, what they are once the user side is read.
    """

    #: Whether ``users.parquet`` holds each user's factor row (ALS) or only ids (NCF: the network holds
    #: the user embeddings).
    user_factors_in_table: ClassVar[bool]

    def __init__(self, index: IdIndex, seen: SeenItems, *, popularity: np.ndarray | None, tables: Path | None) -> None:
        super().__init__(index, seen)
        self.popularity = popularity
        #: The Parquet tables (users, items, seen) this model was fitted into or loaded from.
        self.tables = tables

    @classmethod
    def _item_side(cls, item: ItemSide, tables: Path, **fields: Any) -> Self:
        """The model with only its item side in memory; the user side stays in ``tables`` (Parquet)."""
        model = cls(
            IdIndex(users=(), items=item.items), SeenItems.empty(), popularity=item.popularity, tables=tables, **fields
        )
        model.has_user_side = False
        return model

    @abstractmethod
    def _fields(self, user_factors: np.ndarray | None) -> dict[str, Any]:
        """The family's own constructor arguments by name, with ``user_factors`` (the user table's factor
        rows, or None without them) as its user side."""

    def with_user_side(self) -> Self:
        """The full model: every user's id and seen items (and factor row) read from the tables (pyarrow)."""
        if self.has_user_side:
            return self
        if self.tables is None:
            raise ArtifactError(f"this {self.family.upper()} model has neither a user side nor tables to read it from")
        users, factors = read_users(self.tables, factors=self.user_factors_in_table)
        return type(self)(
            IdIndex(users=users, items=self.index.items),
            read_seen(self.tables, len(users)),
            popularity=self.popularity,
            tables=self.tables,
            **self._fields(factors),
        )

    def item_popularity(self) -> np.ndarray:
        return super().item_popularity() if self.popularity is None else self.popularity

    def _save_tables(self, folder: Path, *factors: np.ndarray) -> None:
        """The tables into ``folder``: copied as Spark wrote them, or written from memory (a model loaded
        from a schema-1 artifact, or one whose tables are gone) with the family's ``factors``."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.tables is not None:
            copy_tables(self.tables, folder)
        else:
            write_tables_from_memory(folder, self.index, self.seen, self.item_popularity(), *factors)
