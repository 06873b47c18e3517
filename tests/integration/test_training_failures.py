"""A crashed trainer, as Airflow runs it: ``spark-submit spark_jobs/train.py --family als`` on a bad window.

The training DAG's ``SparkSubmitOperator`` streams exactly this process's output into the task log and
fails the task on a non-zero exit, so the assertions here are what an operator sees: a non-zero exit
code, the ``TrainingDataError`` sentence on a line of its own, and no candidate folder left behind.
No services are needed (no ``--register``), only the pyspark wheel's ``spark-submit``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_TS, COL_USER
from recflow.spark.session import pyspark_home

ROOT = Path(__file__).resolve().parents[2]


def _lake(root: Path, day: date) -> Path:
    """One validated partition on ``day`` (outside the window the test asks for)."""
    folder = root / "interactions" / f"event_date={day}"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            COL_EVENT: ["e0", "e1"],
            COL_USER: ["u0", "u1"],
            COL_ITEM: ["i0", "i1"],
            COL_TS: pd.Series([datetime(day.year, day.month, day.day, 12, tzinfo=UTC)] * 2).astype(
                "datetime64[ms, UTC]"
            ),
            COL_QUANTITY: [1, 1],
            COL_AMOUNT: [1.0, 2.0],
        }
    ).to_parquet(folder / "part-0.parquet", index=False)
    return root


def _submit(job: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SPARK_HOME": str(pyspark_home()),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    command = [str(pyspark_home() / "bin" / "spark-submit"), "--master", "local[1]", str(ROOT / job), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_trainer_on_an_empty_window_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake", date(2026, 10, 1))
    out = tmp_path / "runs" / "als"
    done = _submit(
        "spark_jobs/train.py",
        [
            "--family", "als",
            "--lake", str(lake),
            "--train-start", "2026-11-01",
            "--holdout-start", "2026-11-04",
            "--end", "2026-11-05",
            "--output-dir", str(out),
            "--run-id", "run-1",
        ],
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    reason = (
        "train_als failed: TrainingDataError: training window 2026-11-01..2026-11-04 is empty: "
        "ingest data for those days first"
    )
    # a line of its own (the JVM's shutdown logging may follow it), and no Python traceback before it
    assert reason in log.splitlines(), log[-3000:]  # spark-submit relays the driver's stderr on stdout
    assert "Traceback" not in log, log[-3000:]
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.glob(".als-*"))


@pytest.mark.slow
def test_trainer_with_an_unknown_parameter_fails_with_the_known_ones(tmp_path: Path) -> None:
    """A bad override from the Params form is not a data problem: the traceback stays, reason last."""
    lake = _lake(tmp_path / "lake", date(2026, 11, 2))
    done = _submit(
        "spark_jobs/train.py",
        [
            "--family", "als",
            "--lake", str(lake),
            "--train-start", "2026-11-01",
            "--holdout-start", "2026-11-04",
            "--end", "2026-11-05",
            "--output-dir", str(tmp_path / "runs" / "als"),
            "--run-id", "run-1",
            "--params-json", '{"rnak": 8}',
        ],
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    assert "unknown ALS parameters ['rnak']" in log, log[-3000:]
    assert not (tmp_path / "runs" / "als").exists()
