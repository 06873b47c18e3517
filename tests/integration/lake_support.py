"""Shared set-up of the tests that run on a lake: a local Spark session, a day of interactions written the
way ingestion publishes it (one Parquet file under ``event_date=D``), and a scratch S3 lake with a day
published through its one-step commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.constants import COL_DATE, COL_ITEM, COL_TS, COL_USER
from recflow.data.lake import S3Lake
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


@contextmanager
def scratch_s3_lake(settings: Settings, name: str) -> Iterator[S3Lake]:
    """An S3 lake under a fresh prefix of the lake bucket (``<name>-<random>``), emptied on exit."""
    run = f"{name}-{uuid.uuid4().hex[:10]}"
    try:
        yield S3Lake(f"s3://{settings.s3.lake_bucket}/{run}/lake", settings.s3)
    finally:
        client = s3_client(settings.s3)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.s3.lake_bucket, Prefix=run):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=settings.s3.lake_bucket, Key=obj["Key"])


def publish_users_day(lake: S3Lake, tmp_path: Path, day: date, users: list[str]) -> None:
    """Publish ``users`` (one ``user_id`` column) as the lake's ``interactions`` partition of ``day``."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    pd.DataFrame({"user_id": users}).to_parquet(folder / "part-0.parquet", index=False)
    lake.publish(folder, f"interactions/{COL_DATE}={day}")
