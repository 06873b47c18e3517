"""Ids keyed on the data interval, shared by the DAG, the demo and the tests so they cannot disagree.

Kept free of heavy imports: DAG files reach it at parse time.
"""

from __future__ import annotations

from datetime import datetime


def interval_key(interval_end: datetime) -> str:
    """A compact, sortable id of a data interval (its end), e.g. ``20261110T0000``."""
    return interval_end.strftime("%Y%m%dT%H%M")


def candidate_version(family: str, interval_end: datetime) -> str:
    """The registry version a training run of ``family`` writes, e.g. ``als-20261110T0000``.

    A re-run of the same interval writes the same version, replacing its own candidate.
    """
    return f"{family}-{interval_key(interval_end)}"
