"""The day's offer decisions, derived from the staged scores and published with them.

Each staged scores file is read back and every row whose item has an offer in the catalog becomes an
offer row: user, item, rank, propensity, offer, reward, threshold, ``eligible``
(``int(1000 * propensity) >= threshold``, :func:`recflow.data.offers.is_eligible`; an unknown propensity,
a fallback row, is never eligible), the model version and the catalog's digest. Rows whose item has no
offer get no offer row and are counted (``rows_without_offer``, ``items_without_offer``). The offers
are checked by their own suite (``expectations/batch_offers.json``) before anything is published.

Why derive on the driver from the staged files and not in the scoring workers: the files are already
checked, the catalog is small (hundreds of rows), and one file at a time bounds memory; the output
names follow the scores' (``part-....parquet``) and pyarrow writes a fixed footer, so re-runs are
byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recflow.constants import COL_ITEM, COL_PROPENSITY, COL_RANK, COL_USER, COL_VERSION
from recflow.data.offers import COL_OFFER, COL_REWARD, COL_THRESHOLD, OfferCatalog, is_eligible
from recflow.scoring.core import ScoringError

if TYPE_CHECKING:
    import pyarrow as pa

COL_ELIGIBLE: Final = "eligible"
COL_CATALOG_DIGEST: Final = "catalog_digest"
OFFER_COLUMNS: Final = (
    COL_USER,
    COL_ITEM,
    COL_RANK,
    COL_PROPENSITY,
    COL_OFFER,
    COL_REWARD,
    COL_THRESHOLD,
    COL_ELIGIBLE,
    COL_VERSION,
    COL_CATALOG_DIGEST,
)
SUITE: Final = "batch_offers"


class OffersRejected(ScoringError):
    """The derived offers failed their suite; nothing (neither offers nor scores) was published."""


@dataclass
class OfferCounts:
    """What the summary says about the day's offers."""

    catalog_digest: str
    offer_rows: int = 0
    eligible_rows: int = 0
    rows_without_offer: int = 0
    items_without_offer: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "catalog_digest": self.catalog_digest,
            "offer_rows": self.offer_rows,
            "eligible_rows": self.eligible_rows,
            "eligible_share": self.eligible_rows / self.offer_rows if self.offer_rows else 0.0,
            "rows_without_offer": self.rows_without_offer,
            "items_without_offer": len(self.items_without_offer),
        }


def offer_rows(scores: pa.Table, catalog: OfferCatalog) -> tuple[pa.Table, np.ndarray]:
    """The offer rows of one table of scores (row order kept) and the mask of score rows without offer."""
    import pyarrow as pa
    import pyarrow.compute as pc

    frame = catalog.frame
    items = pa.array(frame[COL_ITEM].astype(str).tolist(), type=pa.string())
    position = pc.index_in(scores.column(COL_ITEM).cast(pa.string()), value_set=items)
    has_offer = np.asarray(position.is_valid(), dtype=bool)
    at = np.asarray(position.fill_null(0), dtype=np.int64)[has_offer]
    kept = scores.filter(pa.array(has_offer))
    propensity = np.asarray(kept.column(COL_PROPENSITY).to_numpy(zero_copy_only=False), dtype=np.float64)
    threshold = frame[COL_THRESHOLD].to_numpy(dtype=np.float64)[at]
    table = pa.table(
        {
            COL_USER: kept.column(COL_USER),
            COL_ITEM: kept.column(COL_ITEM),
            COL_RANK: kept.column(COL_RANK),
            COL_PROPENSITY: kept.column(COL_PROPENSITY),
            COL_OFFER: pa.array(frame[COL_OFFER].to_numpy(dtype=object)[at], type=pa.string()),
            COL_REWARD: pa.array(frame[COL_REWARD].to_numpy(dtype=object)[at], type=pa.string()),
            COL_THRESHOLD: pa.array(threshold.astype(np.int32), type=pa.int32()),
            COL_ELIGIBLE: pa.array(is_eligible(propensity, threshold), type=pa.bool_()),
            COL_VERSION: kept.column(COL_VERSION),
            COL_CATALOG_DIGEST: pa.array([catalog.digest] * kept.num_rows, type=pa.string()),
        }
    )
    return table, ~has_offer


def stage_offers(scores_dir: Path, files: list[str], catalog: OfferCatalog, out: Path) -> OfferCounts:
    """Write one offers file per staged scores file (same name) into ``out``, check each with the
    ``batch_offers`` suite, and count; raises :class:`OffersRejected` on the first failing file."""
    import pyarrow.parquet as pq

    # deferred: great_expectations, through the suite engine (the scores' suite has loaded it by now)
    from recflow.validation.frame import validate_frame

    out.mkdir(parents=True, exist_ok=True)
    counts = OfferCounts(catalog_digest=catalog.digest)
    for name in files:
        scores = pq.read_table(scores_dir / name)
        table, without = offer_rows(scores, catalog)
        pq.write_table(table, out / name, compression="snappy")
        outcome = validate_frame(table.to_pandas(), SUITE, raise_on_failure=False)
        if not outcome.success:
            failed = ", ".join(sorted({str(f["reason"]) for f in outcome.failed}))
            raise OffersRejected(f"offers derived from {name} failed {SUITE}: {failed}; nothing was published")
        counts.offer_rows += table.num_rows
        counts.eligible_rows += int(np.asarray(table.column(COL_ELIGIBLE)).sum())
        counts.rows_without_offer += int(without.sum())
        counts.items_without_offer.update(scores.column(COL_ITEM).filter(without).unique().to_pylist())
    return counts
