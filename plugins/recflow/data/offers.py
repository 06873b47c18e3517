"""The offer catalog: which offer, reward and threshold each item (merchant category) carries.

The purchase-card demo made an offer of a (cardholder, merchant category) pair when
``int(1000 * P(positive)) >= threshold``, with the threshold set per offer in ``offerList.csv``: no header,
CRLF line endings, one ``item,offer,reward,threshold`` row per merchant category. This module reads that
file (or a Parquet table with the same four columns), keeps every row with its 1-based row number, and
fingerprints the bytes so every output that used the catalog can name it (:attr:`OfferCatalog.digest`).

Reading is strict about structure only: a CSV row with another number of fields than four is refused here
with its row number (no column could be trusted). The content rules (unique items, a non-empty offer and
reward, an integer threshold in 0..1000) are the GX suite ``expectations/offers.json``, applied by
:func:`recflow.validation.offers.validate_catalog`, which names the rows that break them.

Path: env ``RECFLOW_OFFERS`` wins; default ``<project_root>/../shared/data/pcard/offerList.csv`` (never
copied into the repository).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import pandas as pd

from recflow.config.settings import project_root
from recflow.constants import COL_ITEM

ENV_PATH: Final = "RECFLOW_OFFERS"
COL_OFFER: Final = "offer"
COL_REWARD: Final = "reward"
COL_THRESHOLD: Final = "threshold"
#: The threshold's text as read, so the suite can tell "12.5" or "x" (not an integer) from "1200".
COL_THRESHOLD_TEXT: Final = "threshold_text"
COL_ROW: Final = "row"
CATALOG_COLUMNS: Final = (COL_ITEM, COL_OFFER, COL_REWARD, COL_THRESHOLD)
#: The rule's scale: a pair is eligible when int(PROPENSITY_SCALE * propensity) >= threshold.
PROPENSITY_SCALE: Final = 1000


class Offer(NamedTuple):
    """One item's offer, reward and threshold (0..1000)."""

    offer: str
    reward: str
    threshold: int


class OfferCatalogError(ValueError):
    """The catalog cannot be used; the message names the rows and the reasons."""


@dataclass(frozen=True)
class OfferCatalog:
    """The catalog's rows (``item_id, offer, reward, threshold``, ``threshold_text`` and ``row``, the
    1-based row number in the file) and the sha256 of the file's bytes."""

    frame: pd.DataFrame
    digest: str
    source: str

    @cached_property
    def by_item(self) -> dict[str, Offer]:
        """Item -> its offer, for answer paths that decide a few pairs at a time (a validated catalog:
        items unique, thresholds integers)."""
        f = self.frame
        rows = zip(f[COL_ITEM], f[COL_OFFER], f[COL_REWARD], f[COL_THRESHOLD], strict=True)
        return {str(i): Offer(str(o), str(r), int(t)) for i, o, r, t in rows}


def default_path() -> Path:
    """The catalog file (env ``RECFLOW_OFFERS`` wins)."""
    raw = os.environ.get(ENV_PATH)
    return Path(raw) if raw else project_root().parent / "shared" / "data" / "pcard" / "offerList.csv"


def run_catalog(choice: str | None = None) -> Path | None:
    """The catalog a batch run scores with, or None (no offers): the run's ``choice`` (its ``offers`` Param;
    a relative path is taken from the project root, so ``../shared/data/pcard/offerList.csv`` works), else
    ``RECFLOW_OFFERS`` of the process that plans the run, else none.

    Why the planner resolves it: the Spark job gets the path as ``--offers`` and never reads the
    environment itself, so what a run used does not depend on which variables reach ``spark-submit``.
    Raises :class:`OfferCatalogError` when the chosen file does not exist (before any Spark job starts).
    """
    raw = choice or os.environ.get(ENV_PATH)
    if not raw:
        return None
    path = Path(raw)
    path = path if path.is_absolute() else project_root() / path
    if not path.is_file():
        source = "the run's offers Param" if choice else ENV_PATH
        raise OfferCatalogError(f"offer catalog {path} (from {source}) does not exist")
    return path


def read_catalog(path: str | Path | None = None) -> OfferCatalog:
    """Read a catalog file (``.parquet``: those columns; anything else: headerless CSV) as strings, row
    numbers kept. Raises :class:`OfferCatalogError` for a missing file or a CSV row without four fields."""
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise OfferCatalogError(f"offer catalog {path} does not exist (set {ENV_PATH} to its path)")
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    if path.suffix == ".parquet":
        raw = pd.read_parquet(io.BytesIO(body))
        missing = [c for c in CATALOG_COLUMNS if c not in raw.columns]
        if missing:
            raise OfferCatalogError(f"offer catalog {path} lacks the columns {missing}")
        rows = [[None if pd.isna(v) else str(v) for v in r] for r in raw[list(CATALOG_COLUMNS)].itertuples(False)]
    else:
        rows = _csv_rows(body, path)
    return OfferCatalog(frame=catalog_frame(rows), digest=digest, source=str(path))


def _csv_rows(body: bytes, path: Path) -> list[list[str | None]]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OfferCatalogError(f"offer catalog {path} is not UTF-8: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text, newline="")))
    wrong = [f"row {n}: {len(r)} fields" for n, r in enumerate(rows, start=1) if len(r) != len(CATALOG_COLUMNS)]
    if wrong:
        raise OfferCatalogError(
            f"offer catalog {path}: {len(wrong)} row(s) without the 4 fields item,offer,reward,threshold: "
            + "; ".join(wrong[:20])
            + (f"; ... {len(wrong) - 20} more" if len(wrong) > 20 else "")
        )
    return [list(r) for r in rows]


def catalog_frame(rows: list[list[str | None]]) -> pd.DataFrame:
    """The frame the suite judges: stripped strings (empty -> null), the threshold as a number where its
    text is an integer (else null), and each row's 1-based number."""
    frame = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS), dtype=object)
    for column in (COL_ITEM, COL_OFFER, COL_REWARD):
        text = frame[column].astype("string").str.strip()
        frame[column] = text.where(text.notna() & (text != ""), None).astype(object)
    threshold_text = frame[COL_THRESHOLD].astype("string").str.strip()
    frame[COL_THRESHOLD_TEXT] = threshold_text.fillna("").astype(object)
    is_int = threshold_text.str.fullmatch(r"[+-]?[0-9]+").fillna(False).to_numpy(dtype=bool)
    values = np.full(len(frame), np.nan)
    values[is_int] = pd.to_numeric(threshold_text[is_int]).to_numpy(dtype=np.float64)
    frame[COL_THRESHOLD] = values
    frame[COL_ROW] = np.arange(1, len(frame) + 1, dtype=np.int64)
    return frame


def is_eligible(propensity: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """The demo's rule: ``int(1000 * propensity) >= threshold`` (truncation, as Python's ``int``); an
    unknown propensity (NaN) or a missing threshold is never eligible."""
    p = np.asarray(propensity, dtype=np.float64)
    t = np.asarray(threshold, dtype=np.float64)
    known = ~(np.isnan(p) | np.isnan(t))
    scaled = np.trunc(np.where(known, p, 0.0) * PROPENSITY_SCALE)
    return known & (scaled >= np.where(known, t, 0.0))
