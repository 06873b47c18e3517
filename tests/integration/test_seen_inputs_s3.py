"""The seen table's input fingerprint on a real S3 lake: it follows what the commits record, so cleaning
superseded attempts (which changes any listing) keeps it, and a re-ingested day (which on S3 rewrites only
the commit record, the partition's ``_SUCCESS`` pointer staying as it was) changes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from recflow.batch.seen_snapshot import Inputs, Window
from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.constants import COL_DATE
from recflow.data.commits import GRACE_ENV
from recflow.data.lake import S3Lake

DAY = date(2026, 11, 10)


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    run = f"seen-inputs-{uuid.uuid4().hex[:10]}"
    yield S3Lake(f"s3://{live_services.s3.lake_bucket}/{run}/lake", live_services.s3)
    client = s3_client(live_services.s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=live_services.s3.lake_bucket, Prefix=run):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=live_services.s3.lake_bucket, Key=obj["Key"])


def _publish(lake: S3Lake, tmp_path: Path, day: date, users: list[str]) -> None:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    pd.DataFrame({"user_id": users}).to_parquet(folder / "part-0.parquet", index=False)
    lake.publish(folder, f"interactions/{COL_DATE}={day}")


def _keys(lake: S3Lake) -> list[str]:
    pages = lake.client.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket, Prefix=lake.prefix + "/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_the_fingerprint_follows_the_commits_not_the_attempts(
    lake: S3Lake, live_services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = Window(DAY, retention_days=2)
    for d in (DAY - timedelta(days=1), DAY):
        _publish(lake, tmp_path, d, ["a", "b"])
    first = Inputs(lake.root, live_services.s3).digest(window)
    before = _keys(lake)
    monkeypatch.setenv(GRACE_ENV, "0")  # the re-run's publish deletes the superseded attempt at once
    _publish(lake, tmp_path, DAY, ["a", "b"])  # the same rows again: a new attempt, the old one cleaned
    after = _keys(lake)
    assert after != before and len(after) == len(before), "an attempt replaced, the listing changed"
    assert Inputs(lake.root, live_services.s3).digest(window) == first, "same committed contents"
    success = lake._get_json(lake._key(f"interactions/{COL_DATE}={DAY}", "_SUCCESS"))
    _publish(lake, tmp_path, DAY, ["a", "z"])  # re-ingested with other rows
    assert lake._get_json(lake._key(f"interactions/{COL_DATE}={DAY}", "_SUCCESS")) == success, (
        "the pointer a listing would see did not change"
    )
    assert Inputs(lake.root, live_services.s3).digest(window) != first, "the re-ingested day changes it"
