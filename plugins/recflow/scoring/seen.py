"""Which items count as "seen" for a user, by one declared policy, computed in Spark from the lake.

A spec's ``exclude_seen`` (``models/<family>.yaml``, recorded in the artifact's ``lineage.json``):

* ``lake`` (default): every item the user interacted with in the validated lake from the look-back
  start up to and including the scored day. The look-back starts ``seen_lookback_days`` before the
  scored day when set, else at the model's training-window start (the training window plus the days
  since). An item bought after the training window is therefore never recommended back.
* ``none``: nothing is removed (repeat-purchase catalogs); evaluation then also keeps repeat pairs.

Why Spark and not the artifact: the artifact's seen index freezes at the end of training. The batch job
groups the lake's (user, item code) pairs to one sorted array per user (:func:`seen_codes`, in the same
``groupBy`` that finds the active users), so each Python worker receives exactly its own users' seen
items with its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from recflow.constants import COL_DATE

if TYPE_CHECKING:
    from pyspark.sql import Column

Policy = Literal["lake", "none"]
POLICIES: Final = ("lake", "none")
COL_SEEN: Final = "seen"
COL_ITEM_CODE: Final = "i"


@dataclass(frozen=True)
class SeenPolicy:
    """``exclude_seen`` and its look-back, as a spec declares them."""

    exclude_seen: Policy = "lake"
    #: Days up to and including the scored day; None = from the training window's first day.
    lookback_days: int | None = None

    def __post_init__(self) -> None:
        if self.exclude_seen not in POLICIES:
            raise ValueError(f"exclude_seen must be one of {POLICIES}, got {self.exclude_seen!r}")
        if self.lookback_days is not None and self.lookback_days < 1:
            raise ValueError(f"seen_lookback_days must be >= 1 or unset, got {self.lookback_days}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> SeenPolicy:
        """From a spec / lineage mapping (keys ``exclude_seen``, ``seen_lookback_days``); missing = default."""
        raw = raw or {}
        lookback = raw.get("seen_lookback_days")
        return cls(
            exclude_seen=raw.get("exclude_seen", "lake"), lookback_days=None if lookback is None else int(lookback)
        )

    def as_dict(self) -> dict[str, Any]:
        return {"exclude_seen": self.exclude_seen, "seen_lookback_days": self.lookback_days}

    def start(self, day: date, train_start: date | None) -> date | None:
        """First lake day whose interactions count as seen when scoring ``day`` (None: all history)."""
        if self.lookback_days is not None:
            return day - timedelta(days=self.lookback_days - 1)
        return train_start


def seen_window(policy: SeenPolicy, *, day: date, start: date | None) -> Column | None:
    """Spark predicate over interaction rows: the event counts as seen when scoring ``day`` (its date is in
    ``[start, day]``; no lower bound when ``start`` is None), or None when the policy is ``none``."""
    from pyspark.sql import functions as F

    if policy.exclude_seen == "none":
        return None
    inside = F.col(COL_DATE) <= F.lit(day)
    return inside if start is None else inside & (F.col(COL_DATE) >= F.lit(start))


def seen_codes(window: Column) -> Column:
    """Aggregate: the sorted, distinct item codes (column ``i``) of a group's rows inside ``window``.

    Rows outside it, and items the model does not know (a null code: it can never recommend them),
    are skipped: ``collect_list`` drops nulls. A group with none gets an empty array, not null.
    """
    from pyspark.sql import functions as F

    codes = F.collect_list(F.when(window, F.col(COL_ITEM_CODE).cast("int")))
    return F.array_sort(F.array_distinct(codes)).alias(COL_SEEN)
