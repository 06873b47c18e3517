"""Spark reads an S3 lake only through its commits (``s3a://``, the path the cluster's jobs take)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.constants import COL_DATE
from recflow.data.lake import S3Lake
from recflow.data.spark_lake import read_table
from recflow.services.faults import InjectedFault
from recflow.services.maven import spark_s3a_jars
from recflow.spark.session import get_spark

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark(live_services: Settings) -> Iterator[Any]:
    jars = ",".join(str(j) for j in spark_s3a_jars())
    session = get_spark("test-lake-commits-s3", master="local[1]", conf={"spark.jars": jars})
    yield session
    session.stop()


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    run = f"commits-{uuid.uuid4().hex[:10]}"
    yield S3Lake(f"s3://{live_services.s3.lake_bucket}/{run}/lake", live_services.s3)
    client = s3_client(live_services.s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=live_services.s3.lake_bucket, Prefix=run):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=live_services.s3.lake_bucket, Key=obj["Key"])


def _day(lake: S3Lake, tmp_path: Path, day: date, users: list[str]) -> None:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    pd.DataFrame({"user_id": users}).to_parquet(folder / "part-0.parquet", index=False)
    lake.publish(folder, f"interactions/{COL_DATE}={day}")


def test_spark_sees_only_committed_attempts(
    spark: Any, lake: S3Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d1, d2 = date(2026, 11, 3), date(2026, 11, 4)
    _day(lake, tmp_path, d1, ["a", "b"])
    _day(lake, tmp_path, d2, ["c"])
    _day(lake, tmp_path, d2, ["d"])  # replaces day 2; the superseded attempt stays for the grace period
    monkeypatch.setenv("RECFLOW_FAULTS", "lake.publish.before_commit=raise:crash")
    with pytest.raises(InjectedFault):
        _day(lake, tmp_path, d1, ["never"])  # uploaded, never committed
    monkeypatch.delenv("RECFLOW_FAULTS")
    rows = read_table(spark, "s3a://" + lake.root.removeprefix("s3://"), "interactions", COL_DATE).collect()
    assert sorted((r["user_id"], r[COL_DATE]) for r in rows) == [("a", d1), ("b", d1), ("d", d2)]
