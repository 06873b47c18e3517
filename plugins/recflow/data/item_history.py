"""Each item's history in a training window, and its metadata tags: what exploration needs to know.

An item is "new" by when it was first seen and how often it was bought (:mod:`recflow.scoring.explore`);
both are per-item aggregates of the training rows, computed here in Spark (one row per item reaches the
driver). Item metadata is optional: where the lake holds ``items/`` (Parquet, ``item_id`` string and
``tags`` array<string>: MovieLens genres, purchase-card category groups), exploration picks new items by
similarity to a user's history; without it, by recency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from recflow.constants import COL_ITEM, COL_TS

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

COL_FIRST_SEEN: Final = "first_seen"
COL_INTERACTIONS: Final = "interactions"
COL_TAGS: Final = "tags"
#: The lake folder of item metadata, relative to the lake root.
ITEMS_FOLDER: Final = "items"


def item_history(train: DataFrame) -> pd.DataFrame:
    """(item_id, first_seen: the UTC date of its first event, interactions: its event count), one row
    per item of ``train``, sorted by item."""
    from pyspark.sql import functions as F

    frame: pd.DataFrame = (
        train.groupBy(COL_ITEM)
        .agg(F.min(F.to_date(F.col(COL_TS))).alias(COL_FIRST_SEEN), F.count(F.lit(1)).alias(COL_INTERACTIONS))
        .toPandas()
    )
    return frame.sort_values(COL_ITEM, kind="stable").reset_index(drop=True)


def read_item_tags(spark: SparkSession, lake_root: Path | str) -> dict[str, list[str]] | None:
    """``item_id -> sorted tags`` from the lake's ``items/`` folder, or None when the lake has none."""
    path = f"{str(lake_root).rstrip('/')}/{ITEMS_FOLDER}"
    try:
        frame = spark.read.parquet(path)
    except Exception:  # AnalysisException: no item metadata in this lake, which is allowed
        return None
    missing = {COL_ITEM, COL_TAGS} - set(frame.columns)
    if missing:
        raise ValueError(f"item metadata at {path} lacks columns {sorted(missing)}; it has {frame.columns}")
    rows = frame.select(COL_ITEM, COL_TAGS).where(frame[COL_ITEM].isNotNull()).collect()
    return {str(r[COL_ITEM]): sorted(set(r[COL_TAGS] or ())) for r in rows}
