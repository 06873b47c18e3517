"""The offer catalog judged by its GX suite (``expectations/offers.json``), failing with row numbers.

Why both GX and the row masks: GX decides whether the catalog passes (and samples what failed); the
suite's pandas twin (:func:`recflow.validation.rules.row_masks`) names every failing row, so the error
says "row 12: duplicate_item" instead of "3 unexpected". A bad catalog fails the run: an offer decision on
a catalog with a missing threshold or two rows for one item would silently pick one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from recflow.constants import COL_ITEM
from recflow.data.offers import COL_ROW, OfferCatalog, OfferCatalogError, read_catalog
from recflow.validation.frame import validate_frame
from recflow.validation.rules import row_masks
from recflow.validation.suites import load_suite_spec

SUITE: Final = "offers"
#: Rows named in the error message; the count of the others follows.
MAX_ROWS_NAMED: Final = 50


def validate_catalog(catalog: OfferCatalog) -> OfferCatalog:
    """Return ``catalog`` when it passes ``expectations/offers.json``; else raise :class:`OfferCatalogError`
    naming each failing row (1-based, as in the file) with its reasons, and the GX expectations that failed."""
    frame = catalog.frame
    outcome = validate_frame(frame, SUITE, raise_on_failure=False)
    masks = row_masks(frame, load_suite_spec(SUITE))
    if outcome.success and not any(m.any() for m in masks.values()):
        return catalog
    reasons: dict[int, list[str]] = {}
    first_row = frame.drop_duplicates(COL_ITEM).set_index(COL_ITEM)[COL_ROW]
    for reason, mask in masks.items():
        for position in np.flatnonzero(mask):
            row = int(frame[COL_ROW].iloc[position])
            note = reason
            if reason == "duplicate_item":
                note = f"{reason} (first at row {int(first_row[frame[COL_ITEM].iloc[position]])})"
            reasons.setdefault(row, []).append(note)
    named = [f"row {row}: {', '.join(notes)}" for row, notes in sorted(reasons.items())]
    batch = [f"{f['expectation']} [{f['reason']}]" for f in outcome.failed if f["level"] != "row"]
    parts = named[:MAX_ROWS_NAMED] + (
        [f"... {len(named) - MAX_ROWS_NAMED} more rows"] if len(named) > MAX_ROWS_NAMED else []
    )
    raise OfferCatalogError(
        f"offer catalog {catalog.source} fails suite {SUITE}: {len(reasons)} bad row(s)"
        + (f", {'; '.join(batch)}" if batch else "")
        + (": " + "; ".join(parts) if parts else "")
    )


def load_catalog(path: str | Path | None = None) -> OfferCatalog:
    """Read and validate the catalog (default path: :func:`recflow.data.offers.default_path`)."""
    return validate_catalog(read_catalog(path))
