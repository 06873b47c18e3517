"""A Spark executor killed mid-scoring: the task retries on a new executor and the day is byte-identical.

The nightly scoring job (:func:`recflow.batch.job.run_batch_scoring`, what ``spark_jobs/batch_score.py``
runs) on the standalone master and worker (``recflow services up --with-spark``), with the package
shipped to the executors as a ``--py-files`` zip, twice on fresh copies of one lake at one path (the
summary the job publishes names it): undisturbed, then with
``RECFLOW_FAULTS=batch.score.partition=kill:spark-executor*1``. The fault fires inside a scoring task
once its first Arrow batch is staged and SIGKILLs the executor JVM with its Python workers; the worker
survives, the master starts a new executor, Spark re-runs the lost work. The ledger
(``RECFLOW_FAULTS_LEDGER``) makes ``*1`` hold across the executors, so the retry is not killed again.

The driver runs in a process of its own: a Spark session already started in this interpreter (local
mode, by another test module) would be reused instead of one on the ``spark://`` master. Spark's event
log says what happened to the tasks; the test reads it rather than trusting a clean exit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.batch.layout import scores_partition
from recflow.config.settings import Settings
from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.data.lake import LocalLake
from recflow.models.synthetic import random_als
from recflow.services import manager, shared_services
from recflow.services.spark import master_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DAY = date(2026, 11, 6)
N_USERS, N_ITEMS, K = 400, 40, 5
PLAN = "batch.score.partition=kill:spark-executor*1"
#: One run's driver; arguments: master, lake, artifact, day, event-log folder.
DRIVER = textwrap.dedent(
    """
    import json, sys
    from datetime import date
    from pathlib import Path
    from recflow.batch.job import run_batch_scoring
    from recflow.batch.layout import ScoringRequest
    from recflow.spark.packaging import job_archive
    from recflow.spark.session import get_spark

    master, lake, artifact, day, events = sys.argv[1:6]
    log = {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events, "spark.eventLog.compress": "false",
           "spark.eventLog.rolling.enabled": "false"}  # one plain JSON-lines file
    spark = get_spark("recflow-batch-score", master=master, conf=log)
    try:
        spark.sparkContext.addPyFile(str(job_archive()))  # what --py-files does: executors see only the zip
        request = ScoringRequest(day=date.fromisoformat(day), version="als-executor-lost", k=5, active_days=3)
        print(json.dumps(run_batch_scoring(spark, artifact_dir=Path(artifact), request=request, lake_root=lake)))
    finally:
        spark.stop()
    """
)


@pytest.fixture(scope="module")
def spark_master(live_services: Settings) -> Iterator[str]:
    """The standalone master and worker, shared with other test sessions like the other services."""
    with shared_services(live_services, services=manager.spark_cluster(live_services)):
        yield master_url()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lake with three days of interactions of the model's users, and a random-factor ALS artifact."""
    root = tmp_path_factory.mktemp("executor-lost")
    random_als(root / "artifact", n_users=N_USERS, n_items=N_ITEMS, rank=8, seed=5)
    rng = np.random.default_rng(5)
    for back in range(3):
        day = DAY - timedelta(days=back)
        users = rng.choice(N_USERS, N_USERS // 2, replace=False)
        frame = pd.DataFrame(
            {
                COL_USER: [f"u{u}" for u in users],
                COL_ITEM: [f"i{i}" for i in rng.integers(0, N_ITEMS, len(users))],
                COL_TS: pd.Timestamp(day, tz="UTC"),
            }
        )
        folder = root / "lake" / "interactions" / f"event_date={day}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)
    return {"root": root, "lake": root / "lake", "artifact": root / "artifact"}


def _score(master: str, world: dict[str, Path], name: str, **env: str) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Run the job on a fresh copy of the lake, always at the same path (the summary names it); the
    published partition's files with their bytes, and the events of Spark's event log."""
    lake = world["root"] / "lake-run"
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(world["lake"], lake)
    events = world["root"] / f"{name}-events"
    events.mkdir()
    argv = [sys.executable, "-c", DRIVER, master, str(lake), str(world["artifact"]), str(DAY), str(events)]
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, f"the {name} run failed:\n{done.stderr[-4000:]}"
    logs = list(events.iterdir())
    assert len(logs) == 1, f"one application, one event log: {logs}"
    part = lake / scores_partition(DAY)
    published = {name: (part / name).read_bytes() for name in LocalLake(lake).files(scores_partition(DAY))}
    return published, [json.loads(line) for line in logs[0].read_text().splitlines() if line.strip()]


def _failed_tasks(events: list[dict[str, Any]]) -> list[str]:
    return [e["Task End Reason"]["Reason"] for e in events
            if e["Event"] == "SparkListenerTaskEnd" and e["Task End Reason"]["Reason"] != "Success"]  # fmt: skip


def _executors_added(events: list[dict[str, Any]]) -> list[str]:
    return [e["Executor ID"] for e in events if e["Event"] == "SparkListenerExecutorAdded"]


def test_an_executor_killed_mid_scoring_is_replaced_and_the_day_is_byte_identical(
    spark_master: str, world: dict[str, Path], tmp_path: Path
) -> None:
    calm_files, calm = _score(spark_master, world, "undisturbed")
    assert _failed_tasks(calm) == [], "the undisturbed run must not lose a task"

    ledger = tmp_path / "ledger"
    hit_files, hit = _score(spark_master, world, "disturbed", RECFLOW_FAULTS=PLAN, RECFLOW_FAULTS_LEDGER=str(ledger))
    assert len(list(ledger.rglob("*"))) == 2, "the fault fired once (one ledger folder, one firing)"
    failed = _failed_tasks(hit)
    assert "ExecutorLostFailure" in failed, f"no task was lost with its executor: {failed}"
    removed = [e for e in hit if e["Event"] == "SparkListenerExecutorRemoved"]
    assert removed and len(_executors_added(hit)) > len(_executors_added(calm)), "no new executor replaced it"

    assert any(name.endswith(".parquet") for name in calm_files), f"nothing published: {sorted(calm_files)}"
    assert sorted(hit_files) == sorted(calm_files), "the same files must be published"
    for name, body in calm_files.items():
        assert hit_files[name] == body, f"{name} differs from the undisturbed run's"
    active = set(pd.read_parquet(world["lake"] / "interactions")[COL_USER])
    scores = pd.concat(
        pd.read_parquet(io.BytesIO(body)) for name, body in hit_files.items() if name.endswith(".parquet")
    )
    per_user = scores.groupby(COL_USER).size()
    assert set(per_user.index) == active and (per_user == K).all(), "every active user, K rows each"
