"""The original purchase-card (PCard) CSV schema as interaction events.

The State of Oklahoma "Purchase Card (PCard) Fiscal Year 2014" file (the demo this project replaces used it)
has the columns of :data:`PCARD_COLUMNS`. Following that demo: the user is ``Cardholder Last Name + " " +
Cardholder First Initial``, the item is the ``Merchant Category Code (MCC)`` text, and ``Transaction Date`` is
``MM/dd/yyyy`` (optionally followed by a time, which is ignored, as the demo did).

Why content-hashed event ids: the file has no transaction id. ``pcard-<hash of the row>-<n>`` (``n`` counts
identical rows) is deterministic and does not change when the file is re-delivered in another order, so
re-ingestion stays idempotent. Unparsable dates or amounts become NaT/NaN rather than errors: the validator
then rejects those rows with a reason, so nothing is lost silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.contract import conform

# The columns the mapping reads; the others only take part in the content hash of the event id.
LAST_NAME: Final = "Cardholder Last Name"
FIRST_INITIAL: Final = "Cardholder First Initial"
AMOUNT: Final = "Amount"
TRANSACTION_DATE: Final = "Transaction Date"
MCC: Final = "Merchant Category Code (MCC)"

#: The file's header, in order.
PCARD_COLUMNS: Final[tuple[str, ...]] = (
    "Year-Month",
    "Agency Number",
    "Agency Name",
    LAST_NAME,
    FIRST_INITIAL,
    "Description",
    AMOUNT,
    "Vendor",
    TRANSACTION_DATE,
    "Posted Date",
    MCC,
)


def _clean(s: pd.Series) -> pd.Series:
    """Stripped strings with empty values as None."""
    out = s.astype("string").str.strip()
    return out.where(out.notna() & (out != ""), None).astype(object)


def _amount(s: pd.Series) -> pd.Series:
    """``1,234.56``, ``$12.00`` and ``(12.00)`` (accounting negative) as floats; anything else NaN."""
    text = s.astype("string").str.strip().str.replace(r"[$,\s]", "", regex=True)
    text = text.str.replace(r"^\((.*)\)$", r"-\1", regex=True)
    return pd.to_numeric(text, errors="coerce").astype(np.float64)


def pcard_to_interactions(raw: pd.DataFrame) -> pd.DataFrame:
    """Map a frame with the PCard columns (all strings) onto the interaction contract."""
    missing = [c for c in PCARD_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"purchase-card data lacks columns {missing}; found {list(raw.columns)}")
    last, initial = _clean(raw[LAST_NAME]), _clean(raw[FIRST_INITIAL])
    user = (last.astype("string") + " " + initial.astype("string")).astype(object)
    user = user.where(last.notna() & initial.notna(), None)
    dates = raw[TRANSACTION_DATE].astype("string").str.strip().str.slice(0, 10)
    ts = pd.to_datetime(dates, format="%m/%d/%Y", errors="coerce", utc=True)
    hashed = pd.util.hash_pandas_object(raw[list(PCARD_COLUMNS)].astype("string"), index=False)
    occurrence = hashed.groupby(hashed).cumcount()
    event_id = [f"pcard-{h:016x}-{n}" for h, n in zip(hashed.to_numpy(), occurrence.to_numpy(), strict=True)]
    df = pd.DataFrame(
        {
            COL_EVENT: pd.Series(event_id, index=raw.index, dtype=object),
            COL_USER: user,
            COL_ITEM: _clean(raw[MCC]),
            COL_TS: ts,
            COL_QUANTITY: 1,
            COL_AMOUNT: _amount(raw[AMOUNT]),
            COL_RATING: np.nan,
        }
    )
    return conform(df)


def load_pcard(path: str | Path, *, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a purchase-card CSV (header row with :data:`PCARD_COLUMNS`) into contract columns.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming missing columns.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"purchase-card CSV not found at {p}")
    raw = pd.read_csv(p, dtype=str, keep_default_na=False, encoding=encoding)
    raw.columns = [str(c).strip() for c in raw.columns]
    return pcard_to_interactions(raw)
