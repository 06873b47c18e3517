"""Per-user features of a training window, computed in Spark: what user segmentation clusters on.

* ``activity``: ``log1p`` of the user's events (log: a few cardholders buy a lot, and KMeans on raw
  counts would give them a cluster of their own);
* ``spend``: ``log1p`` of the summed ``amount`` (missing amounts, e.g. MovieLens ratings, count 0);
* ``recency``: days from the user's last event to the end of the training part;
* ``category_mix``: the share of the user's events in each item tag (the lake's ``items/``, see
  :mod:`recflow.data.item_history`), one feature per tag, ``category_mix_<tag>``.

One row per user reaches the driver (the router is fitted there and each user's segment stored).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Final

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER
from recflow.data.item_history import COL_TAGS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FEATURES: Final = ("activity", "spend", "recency", "category_mix")
MIX_PREFIX: Final = "category_mix_"


def user_features(
    train: DataFrame, features: tuple[str, ...], end: date, item_tags: DataFrame | None = None
) -> DataFrame:
    """(user_id, <one column per feature>) over ``train``; ``end`` is the training part's exclusive end.

    ``category_mix`` needs ``item_tags`` (item_id, tags) and expands to one column per tag."""
    from pyspark.sql import functions as F

    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ValueError(f"segmentation features must be a non-empty subset of {FEATURES}, got {list(features)}")
    columns = {
        "activity": F.log1p(F.count(F.lit(1))),
        "spend": F.log1p(F.coalesce(F.sum(F.when(~F.isnan(COL_AMOUNT), F.col(COL_AMOUNT))), F.lit(0.0))),
        "recency": F.datediff(F.lit(end), F.max(F.to_date(COL_TS))).cast("double"),
    }
    if "category_mix" in features and item_tags is None:
        raise ValueError("category_mix needs item metadata (the lake's items/ with item_id and tags)")
    scalar = [columns[f].alias(f) for f in features if f != "category_mix"]
    out = train.groupBy(COL_USER).agg(*scalar) if scalar else train.select(COL_USER).distinct()
    if item_tags is not None and "category_mix" in features:
        tagged = train.select(COL_USER, COL_ITEM).join(
            item_tags.select(COL_ITEM, F.explode(COL_TAGS).alias("tag")), COL_ITEM
        )
        mix = tagged.groupBy(COL_USER).pivot("tag").count().na.fill(0)
        tags = [c for c in mix.columns if c != COL_USER]
        total = sum((F.col(f"`{t}`") for t in tags), F.lit(0))
        mix = mix.select(COL_USER, *((F.col(f"`{t}`") / total).alias(f"{MIX_PREFIX}{t}") for t in tags))
        out = out.join(mix, COL_USER, "left").na.fill(0.0)
    return out.orderBy(COL_USER)
