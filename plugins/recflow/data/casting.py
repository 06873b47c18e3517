"""Cast landing text to the contract dtypes and say, per row, why a value could not be cast.

Why a module of its own: the readers (:mod:`recflow.data.landing`) only split bytes into rows; deciding
what a value *means* (a naive time is UTC, ``NaN`` is not an amount, an id longer than the contract's
limit is not an id) is one question with one answer for every format. Nothing is changed silently: a
value that cannot be cast becomes null *and* a reason code, and the row is quarantined with its raw text.

Arrow-backed text (CSV and JSON-lines chunks) is cast with Arrow compute, column by column; a column
Arrow cannot cast whole, and any object column (the slow text paths, Parquet), goes through pandas,
which decides row by row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.contract import ID_COLUMNS, INTERACTION_COLUMNS, MAX_ID_BYTES

#: Reason code of an id longer than :data:`~recflow.data.contract.MAX_ID_BYTES` UTF-8 bytes.
REASON_ID_TOO_LONG: Final = "id_too_long"

#: Arrow-backed text: pyarrow's readers fill these buffers directly, and slicing, filtering and writing
#: them to Parquet never creates a Python ``str`` per value (which was ~60 % of ingestion).
ARROW_TEXT: Final = pd.ArrowDtype(pa.string())

#: A time-zone designator at the end of an ISO-8601 date-time (``Z``, ``+01``, ``-0500``, ``+05:30``).
#: It must follow a time (``T`` or a space, then digits) so that a date's ``-20`` is never an offset.
_TZ_SUFFIX: Final = r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


def join_reasons(masks: Mapping[str, np.ndarray], n: int, initial: pd.Series | np.ndarray | None = None) -> np.ndarray:
    """Per row the ``;``-joined names of the masks that are true there (``None`` where none is).

    ``initial`` holds reasons found earlier (e.g. the cast reasons of :func:`coerce_chunk`); the new ones
    are appended after them, in the order of ``masks``.
    """
    if initial is None:
        out = np.full(n, None, dtype=object)
    else:
        out = (initial.to_numpy(dtype=object) if isinstance(initial, pd.Series) else np.asarray(initial, object)).copy()
    for reason, mask in masks.items():
        idx = np.flatnonzero(mask)
        if len(idx):
            out[idx] = [reason if prev is None else f"{prev};{reason}" for prev in out[idx]]
    return out


def _as_text(s: pd.Series) -> pd.Series:
    """Strings (``str`` objects) with blanks as None; non-string values (ints in Parquet or JSON) are
    stringified, not lost. Surrounding spaces are data and are kept."""
    out = s.astype(object)
    isnull = out.isna()
    if pd.api.types.infer_dtype(out, skipna=True) not in ("string", "empty"):
        out = out.where(isnull, out.astype(str))
    return out.where(~isnull & (out != ""), None).astype(object)


def _arrow_text(s: pd.Series) -> pa.ChunkedArray | None:
    """The Arrow string buffers behind ``s`` when it is Arrow-backed text (the CSV and JSON readers)."""
    if isinstance(s.dtype, pd.ArrowDtype) and pa.types.is_string(s.dtype.pyarrow_dtype):
        arr: pa.ChunkedArray = s.array.__arrow_array__()
        return arr
    return None


def _try_cast(arr: pa.ChunkedArray | None, to: pa.DataType) -> pa.ChunkedArray | None:
    """Arrow's cast of a whole text column, or None when any value does not parse.

    Arrow's parsers are stricter than pandas' (no ``+5``, no surrounding spaces, no naive timestamps),
    so a successful cast only ever accepts values pandas would also accept with the same meaning; on
    failure the caller takes the pandas path for that column of that chunk, which names the bad rows.
    Clean data (the common case) never builds a Python object per value.
    """
    if arr is None:
        return None
    try:
        out: pa.ChunkedArray = pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return out


def _arrow_series(arr: pa.ChunkedArray, index: pd.Index, dtype: str) -> pd.Series:
    """A numpy-backed Series from an Arrow column (nulls become NaN / NaT / <NA> as ``dtype`` says)."""
    return pd.Series(arr.to_pandas(), index=index).astype(dtype)


def parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO-8601 text to UTC timestamps (NaT where unparsable); a time without an offset is UTC.

    Why two groups: ``pd.to_datetime(utc=True, format="ISO8601")`` (pandas 2.3) applies an earlier
    row's offset to a later row that has none, so ``10:00-05:00`` then a naive ``22:00`` stored the
    second as 03:00Z the next day. Rows with an offset and rows without are parsed separately, so no
    row's meaning depends on another row.
    """
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    present = text.notna()
    aware = present & text.astype("string").str.contains(_TZ_SUFFIX, regex=True, na=False).astype(bool)
    naive = present & ~aware
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], utc=True, errors="coerce", format="ISO8601")
    if naive.any():
        parsed = pd.to_datetime(text[naive], errors="coerce", format="ISO8601")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # cannot happen without a designator; be safe
            parsed = parsed.dt.tz_convert("UTC")
        else:
            parsed = parsed.dt.tz_localize("UTC")
        out[naive] = parsed
    return out


def _id_bytes(s: pd.Series) -> np.ndarray:
    """UTF-8 byte length of each id (0 for null), computed by Arrow without a Python ``str`` per value."""
    arr = _arrow_text(s)
    if arr is None:
        arr = pa.chunked_array([pa.array(s.to_numpy(dtype=object), type=pa.string(), from_pandas=True)])
    lengths: np.ndarray = pc.fill_null(pc.binary_length(arr), 0).to_numpy()
    return lengths


def _cast_timestamps(raw: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """``event_ts`` as UTC timestamps, and which present values did not parse (None when none can fail).

    Arrow casts clean text whole; a column that already holds times (Parquet) is only put in UTC; any
    other text goes through :func:`parse_timestamps`, row by row.
    """
    fast = _try_cast(_arrow_text(raw), pa.timestamp("ns", tz="UTC"))
    if fast is not None:
        return _arrow_series(fast, raw.index, "datetime64[ns, UTC]"), None
    unparsable = None
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw.dt.tz_localize("UTC")
    else:
        text = _as_text(raw)
        ts = parse_timestamps(text)
        unparsable = (text.notna() & ts.isna()).to_numpy()
    return ts.astype("datetime64[ns, UTC]"), unparsable


def _cast_quantity(raw: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    """``quantity`` as nullable ``Int64``, and which present values are not whole numbers (None: all are)."""
    fast = _try_cast(_arrow_text(raw), pa.int64())
    if fast is not None:
        return _arrow_series(fast, raw.index, "Int64"), None
    qty = pd.to_numeric(raw, errors="coerce")
    whole = qty.notna() & np.isfinite(qty.astype(float)) & (qty.astype(float) % 1 == 0)
    return qty.where(whole).astype("Float64").astype("Int64"), (raw.notna() & ~whole).to_numpy()


def _cast_float(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A float column, and which present values are not finite numbers (stored as NaN, never as a value)."""
    fast = _try_cast(_arrow_text(raw), pa.float64())
    # nulls -> NaN on both paths
    num = fast.to_numpy() if fast is not None else pd.to_numeric(raw, errors="coerce").astype(np.float64).to_numpy()
    # a literal "nan", JSON's NaN and the infinities are not amounts: reject, never store as missing
    bad = raw.notna().to_numpy() & ~np.isfinite(num)
    return pd.Series(np.where(bad, np.nan, num), index=raw.index, dtype=np.float64), bad


def coerce_chunk(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Cast a chunk to the contract dtypes; also return, per row, why a present value failed to cast.

    Returns ``(typed, reasons)``: ``typed`` has the contract columns (``quantity`` as nullable ``Int64``
    so an unparsable or fractional quantity can stay null), ``reasons`` holds ``None`` or codes like
    ``amount_not_numeric`` joined by ``;``. Naive timestamps are read as UTC (the contract's zone);
    ``NaN`` and infinities are not numbers (``*_not_numeric``), whatever the format; an id longer than
    :data:`~recflow.data.contract.MAX_ID_BYTES` UTF-8 bytes is ``id_too_long`` (kept, never truncated).
    """
    index = frame.index
    typed = pd.DataFrame(index=index)
    problems: dict[str, np.ndarray] = {}  # in this order in the joined reasons
    for c in (COL_EVENT, COL_USER, COL_ITEM):  # Arrow text: the readers already made empty fields null
        typed[c] = frame[c] if _arrow_text(frame[c]) is not None else _as_text(frame[c])
    typed[COL_TS], unparsable = _cast_timestamps(frame[COL_TS])
    if unparsable is not None:
        problems["event_ts_unparsable"] = unparsable
    typed[COL_QUANTITY], fractional = _cast_quantity(frame[COL_QUANTITY])
    if fractional is not None:
        problems["quantity_not_integer"] = fractional
    for c, code in ((COL_AMOUNT, "amount_not_numeric"), (COL_RATING, "rating_not_numeric")):
        typed[c], problems[code] = _cast_float(frame[c])
    too_long = np.zeros(len(frame), dtype=bool)
    for c in ID_COLUMNS:
        too_long |= _id_bytes(typed[c]) > MAX_ID_BYTES
    problems[REASON_ID_TOO_LONG] = too_long
    reasons = join_reasons(problems, len(frame))
    return typed.loc[:, list(INTERACTION_COLUMNS)], pd.Series(reasons, index=index, dtype=object)
