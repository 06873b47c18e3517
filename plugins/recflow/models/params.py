"""Shared handling of model parameters given as dicts (from specs, search spaces and Params)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def reject_unknown(cls: type, raw: dict[str, Any], family: str) -> None:
    """Fail on keys that are not fields of the parameter dataclass ``cls``, naming the known ones.

    Why: a typo in a spec or in the UI's Params must fail loudly, not be silently ignored.
    """
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {family} parameters {sorted(unknown)}; known: {sorted(known)}")
