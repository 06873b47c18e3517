"""Fixtures shared by the unit tests: the local Spark session of the tests that fit, judge or transform on Spark.

Why one helper: each such module wants its own session with its own parallelism (``local[1]`` for a
repeatable fit, ``local[2]`` where the test is about work spread over executors) and few shuffle
partitions (the frames are tiny; Spark's default of 200 makes every shuffle 200 near-empty tasks), and
must stop it afterwards so the next module's session gets its own settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def _local_spark(app_name: str, *, cores: int = 1, shuffle_partitions: int = 1) -> Iterator[Any]:
    """A ``local[cores]`` session from the project's one factory (:func:`recflow.spark.session.get_spark`)."""
    from recflow.spark.session import get_spark

    session = get_spark(
        app_name, master=f"local[{cores}]", conf={"spark.sql.shuffle.partitions": str(shuffle_partitions)}
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def local_spark() -> Any:
    """``with local_spark(app_name, cores=..., shuffle_partitions=...) as spark:`` in a module's own fixture."""
    return _local_spark
