"""Fixtures shared by the unit tests: the local Spark session of the tests that fit, judge or transform on
Spark, and a small calibrated model with an offer catalog for the answer paths (Kafka and HTTP).

Why one helper: each such module wants its own session with its own parallelism (``local[1]`` for a
repeatable fit, ``local[2]`` where the test is about work spread over executors) and few shuffle
partitions (the frames are tiny; Spark's default of 200 makes every shuffle 200 near-empty tasks), and
must stop it afterwards so the next module's session gets its own settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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


@pytest.fixture
def offered_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 20-user x 10-item ALS artifact with an isotonic calibration, and an offer catalog (in
    ``RECFLOW_OFFERS``) giving every item an offer at threshold 0 (always eligible), 1000 (only at
    propensity 1) or 500: what an answer path needs to attach propensities and eligible offers."""
    from recflow.data.offers import ENV_PATH
    from recflow.models.synthetic import random_als
    from recflow.scoring.calibration import Calibration

    model = tmp_path / "m"
    random_als(model, n_users=20, n_items=10, rank=4, seen_per_user=2, seed=9)
    Calibration("isotonic", x=(-2.0, 2.0), y=(0.0, 1.0)).save(model)
    rows = [f"i{n},offer {n},reward {n},{(0, 1000, 500)[n % 3]}" for n in range(10)]
    (tmp_path / "offers.csv").write_bytes("\r\n".join(rows).encode() + b"\r\n")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "offers.csv"))
    return model
