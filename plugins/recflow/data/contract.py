"""The interaction-event contract: which columns a landing file carries and how they are typed.

Why one module: the generator, the loaders, the landing reader and the validator must agree on the
exact columns and dtypes, so they all import them from here instead of repeating string literals.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER

#: Every column of an interaction event, in file order.
INTERACTION_COLUMNS: Final[tuple[str, ...]] = (
    COL_EVENT,
    COL_USER,
    COL_ITEM,
    COL_TS,
    COL_QUANTITY,
    COL_AMOUNT,
    COL_RATING,
)
#: ``rating`` may be absent from a landing file (purchases have none); every other column is required.
OPTIONAL_COLUMNS: Final[frozenset[str]] = frozenset({COL_RATING})
REQUIRED_COLUMNS: Final[tuple[str, ...]] = tuple(c for c in INTERACTION_COLUMNS if c not in OPTIONAL_COLUMNS)
#: Identifier columns, bounded by :data:`MAX_ID_BYTES`.
ID_COLUMNS: Final[tuple[str, ...]] = (COL_EVENT, COL_USER, COL_ITEM)
#: Longest id the contract accepts, in UTF-8 bytes (longer: reject ``id_too_long``). Why a limit: an id
#: goes into the lake, the model's id index and every score; a 100 000-character "id" is a broken export,
#: not a customer, and unbounded values make memory depend on the data rather than the row count.
MAX_ID_BYTES: Final = 256

#: pandas dtypes of a typed interaction frame. Strings stay ``object`` (Python ``str`` or ``None``)
#: because pyarrow writes them as plain UTF-8 and GX's pandas engine handles them everywhere.
INTERACTION_DTYPES: Final[dict[str, str]] = {
    COL_EVENT: "object",
    COL_USER: "object",
    COL_ITEM: "object",
    COL_TS: "datetime64[ns, UTC]",
    COL_QUANTITY: "int64",
    COL_AMOUNT: "float64",
    COL_RATING: "float64",
}


def empty_interactions() -> pd.DataFrame:
    """A zero-row frame with the contract's columns and dtypes (useful for concat and tests)."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in INTERACTION_DTYPES.items()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Order columns as the contract does and cast already-clean data to the contract dtypes.

    For loader output that is known to be clean; dirty landing data goes through
    :func:`recflow.data.landing.coerce_chunk`, which records why a value could not be cast.
    """
    out = df.loc[:, list(INTERACTION_COLUMNS)].copy()
    out[COL_TS] = pd.to_datetime(out[COL_TS], utc=True).astype("datetime64[ns, UTC]")
    out[COL_QUANTITY] = out[COL_QUANTITY].astype(np.int64)
    out[COL_AMOUNT] = out[COL_AMOUNT].astype(np.float64)
    out[COL_RATING] = out[COL_RATING].astype(np.float64)
    return out.reset_index(drop=True)


#: Landing formats and the file-name extension each one gets (gzip adds ``.gz`` to text formats;
#: Parquet compresses inside the file instead, so its name never changes).
LANDING_FORMATS: Final[tuple[str, ...]] = ("csv", "jsonl", "parquet")
LANDING_STEM: Final = "interactions"


def landing_extension(fmt: str, gzip: bool = False) -> str:
    """The file extension of a landing file, e.g. ``csv.gz`` (raises ``ValueError`` on an unknown format)."""
    if fmt not in LANDING_FORMATS:
        raise ValueError(f"unknown landing format {fmt!r}; expected one of {LANDING_FORMATS}")
    return f"{fmt}.gz" if gzip and fmt != "parquet" else fmt


def partition_dir_name(day: object) -> str:
    """``date=YYYY-MM-DD``: the Hive-style folder name for one day of landing or quarantine data."""
    return f"date={day}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The data interval ``[start, end)`` of ``day`` in UTC (Airflow's daily data interval)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)
