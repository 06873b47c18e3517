"""Each item's history in a training window, and its metadata tags: what exploration needs to know.

An item is "new" by when it was first seen and how often it was bought (:mod:`recflow.scoring.explore`);
both are per-item aggregates of the training rows, computed here in Spark (one row per item reaches the
driver). Item metadata is optional: where the lake holds ``items/`` (Parquet, ``item_id`` string and
``tags`` array<string>: MovieLens genres, purchase-card category groups), exploration picks new items by
similarity to a user's history; without it, by recency.

The catalog is more than the items with events: ``items/`` lists items nobody has bought yet, and may
give each its launch day (an optional ``first_seen`` date column). :func:`catalog_history` adds them with
0 interactions, so exploration can show them (an item first seen after the scored day is still hidden).
"""

from __future__ import annotations

from datetime import date, datetime
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


def item_history(frame: DataFrame, counted_before: datetime | None = None) -> pd.DataFrame:
    """(item_id, first_seen: the UTC date of its first event, interactions: its events before
    ``counted_before``, all when None), one row per item of ``frame``, sorted by item.

    The training flow passes the whole window and the hold-out's start: an item that first appears in the
    hold-out is in the catalog with 0 training interactions, not missing."""
    from pyspark.sql import functions as F

    counted = F.lit(1) if counted_before is None else F.when(F.col(COL_TS) < F.lit(counted_before), 1)
    result: pd.DataFrame = (
        frame.groupBy(COL_ITEM)
        .agg(F.min(F.to_date(F.col(COL_TS))).alias(COL_FIRST_SEEN), F.count(counted).alias(COL_INTERACTIONS))
        .toPandas()
    )
    return result.sort_values(COL_ITEM, kind="stable").reset_index(drop=True)


def read_items(spark: SparkSession, lake_root: Path | str) -> pd.DataFrame | None:
    """The lake's ``items/`` as (item_id, tags: sorted list, first_seen: date or None), sorted by item, or
    None when the lake has none."""
    import pandas as pd  # lazily: the specs (and so the DAGs) import this module's names at parse time

    path = f"{str(lake_root).rstrip('/')}/{ITEMS_FOLDER}"
    try:
        frame = spark.read.parquet(path)
    except Exception:  # AnalysisException: no item metadata in this lake, which is allowed
        return None
    missing = {COL_ITEM, COL_TAGS} - set(frame.columns)
    if missing:
        raise ValueError(f"item metadata at {path} lacks columns {sorted(missing)}; it has {frame.columns}")
    has_launch = COL_FIRST_SEEN in frame.columns
    columns = [COL_ITEM, COL_TAGS, *([COL_FIRST_SEEN] if has_launch else [])]
    rows = frame.select(*columns).where(frame[COL_ITEM].isNotNull()).collect()
    out = pd.DataFrame(
        {
            COL_ITEM: [str(r[COL_ITEM]) for r in rows],
            COL_TAGS: [sorted(set(r[COL_TAGS] or ())) for r in rows],
            COL_FIRST_SEEN: [r[COL_FIRST_SEEN] if has_launch else None for r in rows],
        }
    )
    return out.sort_values(COL_ITEM, kind="stable").reset_index(drop=True)


def item_tags(items: pd.DataFrame | None) -> dict[str, list[str]] | None:
    """``item_id -> sorted tags`` of :func:`read_items`' frame (None without one)."""
    return None if items is None else dict(zip(items[COL_ITEM], items[COL_TAGS], strict=True))


def catalog_history(history: pd.DataFrame, items: pd.DataFrame | None, known_on: date) -> pd.DataFrame:
    """:func:`item_history` plus every catalog item (``items``, :func:`read_items`) without an event: 0
    interactions, first seen on its launch day when ``items/`` gives one, else on ``known_on`` (the first
    day after the data the run read: the catalog is read now, so the item is not shown on an earlier day).
    Sorted by item."""
    import pandas as pd  # lazily: the specs (and so the DAGs) import this module's names at parse time

    if items is None:
        return history
    extra = items[~items[COL_ITEM].isin(set(history[COL_ITEM].astype(str)))]
    launch = [known_on if d is None or pd.isna(d) else pd.Timestamp(d).date() for d in extra[COL_FIRST_SEEN]]
    added = pd.DataFrame({COL_ITEM: extra[COL_ITEM].to_numpy(), COL_FIRST_SEEN: launch, COL_INTERACTIONS: 0})
    merged = pd.concat([history, added], ignore_index=True) if len(added) else history
    return merged.sort_values(COL_ITEM, kind="stable").reset_index(drop=True)
