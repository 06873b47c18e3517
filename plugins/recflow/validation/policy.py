"""The row and batch policies: the knobs (:class:`Policy`) and the checks that need the whole batch.

Batch-level checks (volume vs the trailing 7-day mean, unknown user/item rates, reject share) are
computed in pandas and reported next to the GX results in the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from recflow.data.lake import LakeStore
from recflow.validation.output import lake_partition

# ------------------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class Policy:
    """The knobs of the row and batch policies (fractions are 0..1; amounts in the data's currency)."""

    threshold: float = 0.01
    """Largest share of rejected rows that still lets the rest of the batch through."""
    amount_cap: float = 1_000_000.0
    """Amounts above this are absurd for a purchase card and rejected."""
    quantity_cap: int = 100_000
    volume_tolerance: float = 0.5
    """Allowed relative deviation of the landed row count from the trailing 7-day mean."""
    volume_window_days: int = 7
    volume_min_history: int = 3
    """Fewer days of history than this: the volume check is skipped (reported as such)."""
    max_unknown_user_rate: float = 0.25
    max_unknown_item_rate: float = 0.05
    dedup_lookback_days: int = 7
    """Event ids already in the lake's previous N partitions are rejected as cross-day duplicates."""
    gx_spark_min_bytes: int | None = 512 * 1024 * 1024
    """Landing files of at least this many bytes (as stored, so gzip counts compressed) are validated by
    GX's Spark engine over every parsed row, read back from the staged Parquet, instead of GX's pandas
    engine on a bounded sample. Default 512 MiB (about 25M gzip'd CSV rows); ``None``: always the pandas
    sample; ``0``: always Spark."""


# ------------------------------------------------------------------------------- batch checks


def _trailing_mean(history: Mapping[Any, int] | Sequence[int] | None, window: int) -> tuple[float | None, int]:
    if history is None:
        return None, 0
    if isinstance(history, Mapping):
        values = [int(history[k]) for k in sorted(history, key=str)][-window:]
    else:
        values = [int(v) for v in history][-window:]
    return (float(np.mean(values)) if values else None), len(values)


def batch_checks(
    *,
    landed: int,
    rejected: int,
    policy: Policy,
    history_counts: Mapping[Any, int] | Sequence[int] | None,
    unknown: Mapping[str, tuple[int, int]],
) -> list[dict[str, Any]]:
    """Checks that need the whole batch; same shape as GX results (``check``, ``success``, ...)."""
    share = rejected / landed if landed else 0.0
    checks: list[dict[str, Any]] = [
        {
            "check": "row_reject_share",
            "success": share <= policy.threshold,
            "observed": round(share, 6),
            "limit": policy.threshold,
        }
    ]
    mean, days = _trailing_mean(history_counts, policy.volume_window_days)
    if mean is None or days < policy.volume_min_history:
        checks.append(
            {"check": "volume_vs_trailing_mean", "success": True, "observed": landed, "limit": None,
             "skipped": f"{days} day(s) of history, need {policy.volume_min_history}"}
        )  # fmt: skip
    else:
        deviation = abs(landed / mean - 1.0) if mean > 0 else float("inf")
        checks.append(
            {"check": "volume_vs_trailing_mean", "success": deviation <= policy.volume_tolerance,
             "observed": landed, "limit": f"{mean:.1f} +/- {policy.volume_tolerance:.0%} ({days} days)",
             "deviation": round(deviation, 4)}
        )  # fmt: skip
    for name, limit in (("user", policy.max_unknown_user_rate), ("item", policy.max_unknown_item_rate)):
        if name not in unknown:
            checks.append(
                {"check": f"unknown_{name}_rate", "success": True, "observed": None, "limit": limit,
                 "skipped": f"no known {name} set given"}
            )  # fmt: skip
            continue
        n_unknown, n = unknown[name]
        rate = n_unknown / n if n else 0.0
        checks.append(
            {"check": f"unknown_{name}_rate", "success": rate <= limit, "observed": round(rate, 6),
             "limit": limit, "unknown": n_unknown}
        )  # fmt: skip
    return checks


def lake_history_counts(lake: LakeStore, day: date, window: int) -> dict[str, int]:
    """Accepted row counts of the ``window`` days before ``day`` (Parquet metadata only: cheap)."""
    out = {}
    for i in range(window, 0, -1):
        d = day - timedelta(days=i)
        rows = lake.partition_rows(lake_partition(d))
        if rows is not None:
            out[str(d)] = rows
    return out
