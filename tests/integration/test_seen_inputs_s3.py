"""The seen table's input fingerprint on a real S3 lake: it follows what the commits record, so cleaning
superseded attempts (which changes any listing) keeps it, and a re-ingested day (which on S3 rewrites only
the commit record, the partition's ``_SUCCESS`` pointer staying as it was) changes it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from lake_support import publish_users_day, scratch_s3_lake

from recflow.batch.seen_snapshot import Inputs, Window
from recflow.config.settings import Settings
from recflow.constants import COL_DATE
from recflow.data.commits import GRACE_ENV
from recflow.data.lake import S3Lake

DAY = date(2026, 11, 10)


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    with scratch_s3_lake(live_services, "seen-inputs") as scratch:
        yield scratch


def _keys(lake: S3Lake) -> list[str]:
    pages = lake.client.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket, Prefix=lake.prefix + "/")
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_the_fingerprint_follows_the_commits_not_the_attempts(
    lake: S3Lake, live_services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = Window(DAY, retention_days=2)
    for d in (DAY - timedelta(days=1), DAY):
        publish_users_day(lake, tmp_path, d, ["a", "b"])
    first = Inputs(lake.root, live_services.s3).digest(window)
    before = _keys(lake)
    monkeypatch.setenv(GRACE_ENV, "0")  # the re-run's publish deletes the superseded attempt at once
    publish_users_day(lake, tmp_path, DAY, ["a", "b"])  # the same rows again: a new attempt, the old one cleaned
    after = _keys(lake)
    assert after != before and len(after) == len(before), "an attempt replaced, the listing changed"
    assert Inputs(lake.root, live_services.s3).digest(window) == first, "same committed contents"
    success = lake._get_json(lake._key(f"interactions/{COL_DATE}={DAY}", "_SUCCESS"))
    publish_users_day(lake, tmp_path, DAY, ["a", "z"])  # re-ingested with other rows
    assert lake._get_json(lake._key(f"interactions/{COL_DATE}={DAY}", "_SUCCESS")) == success, (
        "the pointer a listing would see did not change"
    )
    assert Inputs(lake.root, live_services.s3).digest(window) != first, "the re-ingested day changes it"
