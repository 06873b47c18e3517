"""The batch output's layout and request: what the job writes, the publisher checks and readers find.

Kept below both the job and the publisher (:mod:`recflow.batch.job`, :mod:`recflow.batch.publish`), so
neither imports the other to learn where a day's scores go."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from recflow.constants import COL_DATE, COL_ITEM, COL_RANK, COL_SCORE, COL_SOURCE, COL_USER, COL_VERSION
from recflow.data.lake import open_input, open_store
from recflow.scoring.core import ScoringError

if TYPE_CHECKING:
    from recflow.config.s3 import S3Settings

SCORE_COLUMNS: Final = (COL_USER, COL_RANK, COL_ITEM, COL_SCORE, COL_VERSION, COL_SOURCE)


SUMMARY_FILE: Final = "_recflow_summary.json"


def scores_partition(day: date) -> str:
    """The day's partition, relative to the lake root."""
    return f"scores/{COL_DATE}={day}"


def scores_path(lake_root: Path | str, day: date) -> str:
    return f"{str(lake_root).rstrip('/')}/{scores_partition(day)}"


@dataclass(frozen=True)
class ScoringRequest:
    """What one night's run scores: the day, with which model, for whom, how many items."""

    day: date
    version: str
    k: int
    active_days: int
    users: tuple[str, ...] | None = None  # None: every active user

    def __post_init__(self) -> None:
        if self.k < 1 or self.active_days < 1:
            raise ScoringError(f"k and active_days must be >= 1, got {self.k} and {self.active_days}")


def read_summary(lake_root: Path | str, day: date, s3: S3Settings | None = None) -> dict[str, Any]:
    """The summary the scoring job published with ``day``'s partition (what the DAG's check task reads).

    ``lake_root`` is a path or an ``s3://`` URI; ``s3`` the object store's endpoint and keys (default: the
    environment's).
    """
    store = open_store(str(lake_root), s3)
    uri = f"{store.uri(scores_partition(day))}/{SUMMARY_FILE}"
    try:  # through the partition's commit: on S3 the files sit under the committed attempt's prefix
        with open_input(store.file_uri(scores_partition(day), SUMMARY_FILE), s3) as stream:
            summary: dict[str, Any] = json.loads(stream.read())
    except FileNotFoundError as exc:
        raise ScoringError(f"no scoring summary at {uri}: did the batch_score job publish {day}?") from exc
    return summary
