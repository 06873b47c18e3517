"""Shared set-up of the tests that run the batch job on a local lake: a local Spark session and a day of
interactions written the way ingestion publishes it (one Parquet file under ``event_date=D``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.spark.session import get_spark


@contextmanager
def local_spark(app_name: str, *, shuffle_partitions: int) -> Iterator[Any]:
    """A ``local[2]`` session, stopped on exit; few shuffle partitions keep tiny test jobs fast."""
    session = get_spark(app_name, master="local[2]", conf={"spark.sql.shuffle.partitions": str(shuffle_partitions)})
    try:
        yield session
    finally:
        session.stop()


def write_day(lake: Path, day: date, pairs: list[tuple[str | None, str | None]]) -> None:
    """One day's (user, item) pairs as the lake's ``interactions`` partition, all stamped at midnight UTC."""
    folder = lake / "interactions" / f"event_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(pairs, columns=[COL_USER, COL_ITEM]).assign(**{COL_TS: pd.Timestamp(day, tz="UTC")})
    frame.to_parquet(folder / "part-0.parquet", index=False)
