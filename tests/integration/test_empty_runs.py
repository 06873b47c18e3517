"""Runs with nothing to do end as skips with the reason, in seconds, and launch no Spark job.

The cron run created when a DAG is unpaused on an empty lake used to fail three Spark jobs ("training
window is empty", each retried twice), and an ingest run without its landing file failed the same way.
``dag.test()`` runs the real DAGs in-process; a window far from any data this session lands stands for
the empty lake.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: No test lands data near this day.
EMPTY_DAY = datetime(2031, 3, 10, tzinfo=UTC)


def _run(dag_id: str, conf: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], float]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag = bag.get_dag(dag_id)
    began = time.monotonic()
    run = dag.test(logical_date=EMPTY_DAY, run_conf=conf)
    elapsed = time.monotonic() - began
    return run, {ti.task_id: ti for ti in run.get_task_instances()}, elapsed


def _log(capfd: pytest.CaptureFixture[str]) -> str:
    """What the run logged (dag.test() logs through structlog to the process's stdout/stderr)."""
    out, err = capfd.readouterr()
    return out + err


@pytest.mark.usefixtures("airflow_db")
def test_training_on_an_empty_window_skips_at_check_window_without_spark(capfd: pytest.CaptureFixture[str]) -> None:
    run, tis, elapsed = _run("recommender_training", {"models": ["als"], "train_days": 3, "holdout_days": 1})
    states = {task_id: str(ti.state) for task_id, ti in tis.items()}
    assert states["check_window"] == "skipped", states
    assert all(state == "skipped" for state in states.values()), f"every task must skip with the check: {states}"
    assert "no data for the training days 2031-03-06..2031-03-08 and the hold-out days 2031-03-09..2031-03-09" in _log(
        capfd
    )
    assert str(run.state) == "success", "a skipped run is not a failed one"
    print(f"empty training run: {elapsed:.1f}s")


@pytest.mark.usefixtures("airflow_db")
def test_ingest_without_a_landing_file_skips_with_the_missing_path(capfd: pytest.CaptureFixture[str]) -> None:
    run, tis, elapsed = _run("ingest_interactions")
    states = {task_id: str(ti.state) for task_id, ti in tis.items()}
    assert states == {"validate": "skipped", "announce": "skipped"}, states
    assert "no landing file for 2031-03-09" in _log(capfd)
    assert str(run.state) == "success"
    print(f"empty ingest run: {elapsed:.1f}s")


@pytest.mark.usefixtures("airflow_db")
def test_batch_scoring_without_a_champion_skips(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, live_services: Settings
) -> None:
    bucket = f"recflow-test-empty-{uuid.uuid4().hex[:8]}"
    s3_client(live_services.s3).create_bucket(Bucket=bucket)
    monkeypatch.setenv("RECFLOW_MODELS_BUCKET", bucket)  # a registry with no champion
    run, tis, _ = _run("batch_scoring", {"version": ""})
    states = {task_id: str(ti.state) for task_id, ti in tis.items()}
    assert all(state == "skipped" for state in states.values()), states
    assert str(run.state) == "success"
    assert "no champion yet" in _log(capfd)
