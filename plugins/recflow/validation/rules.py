"""Row rules: every ``meta.level: "row"`` expectation of a suite as a pandas mask, so each row is judged.

Why a pandas twin of GX: GX reports on a sample, while the masks decide each row of the whole batch and
name the reason it is quarantined. Rules are still written once, in the suite JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from recflow.validation.hashing import _SeenHashes, hash_values
from recflow.validation.suites import SuiteSpec


class UnsupportedRowRule(ValueError):
    """A ``row``-level expectation type that has no pandas translation (make it ``batch`` or add one)."""


def _param(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        name = value["$PARAMETER"]
        if name not in params:
            raise KeyError(f"the suite needs the run parameter {name!r}")
        return params[name]
    return value


def _as_bool(mask: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(mask, pd.Series):
        return mask.fillna(False).to_numpy(dtype=bool)
    return np.asarray(mask, dtype=bool)


def row_masks(
    df: pd.DataFrame,
    spec: SuiteSpec,
    params: Mapping[str, Any] | None = None,
    *,
    seen: Mapping[str, _SeenHashes] | None = None,
    hashes: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per ``row`` rule of ``spec``, a boolean array marking the rows that break it (keyed by reason).

    Mirrors GX semantics: nulls pass value rules (``not_null`` catches them); for uniqueness the first
    copy is kept and later copies are marked, so the accepted rows are unique. ``seen`` maps a column
    to hashes seen before this frame (earlier chunks), making uniqueness span the whole file.
    ``hashes`` maps a column to :func:`hash_values` of it, when the caller already has them: duplicate
    search on 64-bit integers is several times faster than on Python strings.
    """
    params = params or {}
    out: dict[str, np.ndarray] = {}
    for exp in spec.expectations:
        if spec.level(exp) != "row":
            continue
        kind, kw = exp["type"], exp.get("kwargs", {})
        col = kw.get("column")
        if kind == "expect_column_values_to_not_be_null":
            mask = df[col].isna().to_numpy()
        elif kind == "expect_column_values_to_be_between":
            s = df[col]
            lo, hi = _param(kw.get("min_value"), params), _param(kw.get("max_value"), params)
            bad = pd.Series(False, index=df.index)
            if lo is not None:
                lo = pd.Timestamp(lo) if isinstance(lo, datetime) else lo
                bad |= (s <= lo) if kw.get("strict_min") else (s < lo)
            if hi is not None:
                hi = pd.Timestamp(hi) if isinstance(hi, datetime) else hi
                bad |= (s >= hi) if kw.get("strict_max") else (s > hi)
            mask = _as_bool(bad & s.notna())
        elif kind == "expect_column_values_to_be_unique":
            present = df[col].notna().to_numpy()
            given = hashes.get(col) if hashes is not None else None
            if given is not None:
                mask = pd.Series(given).duplicated(keep="first").to_numpy() & present
            else:
                mask = df[col].duplicated(keep="first").to_numpy() & present
            if seen is not None and col in seen:
                h = given if given is not None else hash_values(df[col].to_numpy())
                mask |= seen[col].contains(h) & present
                seen[col].add(h[present])
        elif kind == "expect_compound_columns_to_be_unique":
            mask = df.duplicated(subset=list(kw["column_list"]), keep="first").to_numpy()
        elif kind == "expect_column_values_to_be_in_set":
            values = _param(kw["value_set"], params)
            mask = _as_bool(df[col].notna() & ~df[col].isin(values))
        elif kind == "expect_column_values_to_match_regex":
            mask = _as_bool(df[col].notna() & ~df[col].astype("string").str.match(kw["regex"]))
        else:
            raise UnsupportedRowRule(f"{kind} in {spec.path} has meta.level 'row' but no pandas translation")
        reason = spec.reason(exp)
        out[reason] = out[reason] | mask if reason in out else mask
    return out
