"""Faults injected at named points (``RECFLOW_FAULTS``) into the real local services.

Each test stops or pauses a real server at the point where the code is most exposed, checks that
nothing was lost or half-published, brings the server back and checks that the next run completes.
``docs/faults.md`` lists the points, where they sit and what the system does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.data.lake import S3Lake
from recflow.services import ensure_services_up
from recflow.services.faults import resume

pytestmark = pytest.mark.slow

PART = "interactions/event_date=2026-11-03"


@pytest.fixture
def restore(live_services: Settings) -> Iterator[Settings]:
    """Whatever a test stops or pauses is running and healthy again afterwards, for the other tests
    (ask for it after ``lake``, so it is torn down first and the lake's clean-up finds S3 running)."""
    yield live_services
    resume("s3")
    resume("kafka")
    ensure_services_up(live_services)


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    root = f"s3://{live_services.s3.lake_bucket}/faults-{uuid.uuid4().hex[:10]}/lake"
    yield S3Lake(root, live_services.s3)
    client = s3_client(live_services.s3)
    bucket, prefix = root[5:].split("/", 1)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rsplit("/", 1)[0]):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])


def _staged(tmp_path: Path, rows: list[str]) -> Path:
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    pd.DataFrame({"user_id": rows}).to_parquet(folder / "part-0.parquet", index=False)
    return folder


def _users(lake: S3Lake, part: str = PART) -> list[str]:
    return [str(u) for batch in lake.read_column(part, "user_id") for u in batch]


@pytest.mark.parametrize("point", ["lake.publish.before_commit", "batch.publish.before_commit"])
def test_s3_stopped_before_the_commit_keeps_the_previous_partition(
    lake: S3Lake, restore: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    """The S3 server stops after the attempt is uploaded and checked, before the commit record."""
    other = "offers/event_date=2026-11-03"
    lake.publish_together({PART: _staged(tmp_path, ["a", "b"]), other: _staged(tmp_path, ["o"])}, key=PART)
    before = lake.files(PART), lake.files(other)
    monkeypatch.setenv("RECFLOW_FAULTS", f"{point}=stop:s3")
    with pytest.raises(Exception, match="Could not connect|Connect timeout|EndpointConnectionError|Connection"):
        lake.publish_together(
            {PART: _staged(tmp_path, ["c"]), other: _staged(tmp_path, ["p"])}, key=PART, point=point
        )
    monkeypatch.delenv("RECFLOW_FAULTS")
    ensure_services_up(restore)
    assert (lake.files(PART), lake.files(other)) == before, "both tables still show the previous commit"
    assert _users(lake) == ["a", "b"] and lake.partition_rows(PART) == 2
    lake.publish_together({PART: _staged(tmp_path, ["c"]), other: _staged(tmp_path, ["p"])}, key=PART, point=point)
    assert _users(lake) == ["c"] and _users(lake, other) == ["p"], "the next run completes"


def test_s3_paused_mid_publish_fails_the_publish_and_keeps_the_partition(
    lake: S3Lake, restore: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the port still accepts connections but nothing answers; the client times out."""
    lake.publish(_staged(tmp_path, ["a"]), PART)
    slow = S3Lake(lake.root, client=s3_client(restore.s3, connect_timeout=2, read_timeout=2, max_attempts=1))
    monkeypatch.setenv("RECFLOW_FAULTS", "lake.publish.before_commit=pause:s3")
    with pytest.raises(Exception, match="(?i)timed? ?out"):
        slow.publish(_staged(tmp_path, ["b"]), PART)
    monkeypatch.delenv("RECFLOW_FAULTS")
    assert resume("s3")
    assert _users(lake) == ["a"]
