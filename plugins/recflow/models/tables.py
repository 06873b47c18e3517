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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from recflow.constants import COL_ITEM, COL_USER
from recflow.models import index as id_index
from recflow.models.base import Recommender
from recflow.models.index import (
    COL_FEATURES,
    COL_I,
    COL_POPULARITY,
    COL_SEEN,
    COL_U,
    ITEMS_TABLE,
    SEEN_TABLE,
    TABLES,
    USERS_TABLE,
    ArtifactError,
    IdIndex,
    ItemSide,
    SeenItems,
    write_tables_from_memory,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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
        users, factors = id_index.read_users(self.tables, factors=self.user_factors_in_table)
        return type(self)(
            IdIndex(users=users, items=self.index.items),
            id_index.read_seen(self.tables, len(users)),
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
