"""Fixtures for tests against the real local services (Kafka broker, S3 server).

``live_services`` reuses services that are already running (``recflow services up``, another test run,
the demo). Services a test session had to start are stopped when the last concurrent session using
them finishes (a lease per session, see ``recflow.services.shared_services``); never those started by
``recflow services up``. ``RECFLOW_KEEP_SERVICES=1`` keeps them running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings, load_settings
from recflow.registry import ModelRegistry
from recflow.services import shared_services

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the services: mark it, so ``-m "not integration"`` works."""
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def live_services() -> Iterator[Settings]:
    """Settings for healthy, provisioned services (topics and buckets exist)."""
    with shared_services(load_settings(), keep=os.environ.get("RECFLOW_KEEP_SERVICES") == "1") as settings:
        yield settings


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A migrated SQLite metadata DB in this session's Airflow home (see tests/conftest.py)."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True)


@pytest.fixture
def registry(live_services: Settings, request: pytest.FixtureRequest) -> Iterator[ModelRegistry]:
    """A registry under a fresh prefix of the session's model bucket, deleted afterwards.

    Modules that need another registry (a fixed prefix, a monkeypatched environment) define their own.
    """
    prefix = f"it-{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}-{uuid.uuid4().hex[:10]}"
    reg = ModelRegistry.from_settings(live_services, prefix=prefix)
    yield reg
    client = s3_client(live_services.s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=reg.bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=reg.bucket, Key=obj["Key"])
