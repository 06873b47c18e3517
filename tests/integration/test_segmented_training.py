"""A segmented spec (``models/als_segmented.yaml``) as one more candidate of a real ``recommender_training``
run, with no DAG edit: chosen in the ``models`` Param, trained by ``spark-submit`` (KMeans segments, one
ALS per segment), judged on the shared hold-out beside the popularity baseline by the compare step, and
promoted only if ``models/promotion.yaml`` says it wins.

The run has a lake, a landing folder and a model bucket of its own (environment of this module), so no
other test's data or champion leaks in either way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings, load_settings
from recflow.promotion.report import latest_report
from recflow.registry import ModelRegistry
from recflow.registry.blessing import blessings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
END = date(2026, 11, 20)  # after the DAG's start_date (2026-11-01): an earlier run creates no tasks
TRAIN_DAYS, HOLDOUT_DAYS, K = 5, 2, 10


@pytest.fixture(scope="module")
def private(live_services: Settings) -> Iterator[dict[str, Any]]:
    """This module's lake, landing folder and model bucket, through the environment the tasks read."""
    root = load_settings().lake_root.parent / f"segmented-{uuid.uuid4().hex[:8]}"
    bucket = f"recflow-test-segmented-{uuid.uuid4().hex[:8]}"
    client = s3_client(live_services.s3)
    client.create_bucket(Bucket=bucket)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_LAKE", str(root / "lake"))
        mp.setenv("RECFLOW_LANDING", str(root / "landing"))
        mp.setenv("RECFLOW_RUNS", str(root / "runs"))
        mp.setenv("RECFLOW_MODELS_BUCKET", bucket)
        yield {"root": root, "bucket": bucket, "settings": load_settings()}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def training_run(airflow_db: None, private: dict[str, Any]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from recflow.data.synthetic import write_days

    settings = private["settings"]
    start = END - timedelta(days=TRAIN_DAYS + HOLDOUT_DAYS)
    write_days(start, END - timedelta(days=1), settings.landing_root, n_users=600, n_items=80, events_per_day=3000)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    conf = {"models": ["als_segmented"], "k": K, "train_days": TRAIN_DAYS, "holdout_days": HOLDOUT_DAYS}
    dag = bag.get_dag("recommender_training")
    return dag.test(logical_date=datetime.combine(END, datetime.min.time(), tzinfo=UTC), run_conf=conf)


def test_a_segmented_spec_trains_is_judged_and_compared_in_a_real_training_run(
    training_run: Any, private: dict[str, Any], tmp_path: Path
) -> None:
    states = {ti.task_id: str(ti.state) for ti in training_run.get_task_instances()}
    assert str(training_run.state) == "success", states
    registry = ModelRegistry.from_settings(private["settings"])
    versions = {mv.family: mv for mv in registry.list_versions()}
    assert set(versions) == {"als_segmented", "popularity"}, states
    segmented = versions["als_segmented"]
    assert 0 < segmented.metrics[f"ndcg@{K}"] <= 1

    folder = registry.fetch(segmented, tmp_path)
    model_json = json.loads((folder / "model.json").read_text())
    assert model_json["recommender"] == "recflow.models.segmented.SegmentedRecommender"
    router = json.loads((folder / "router.json").read_text())
    # k searched over the spec's 2..8 by the training users' silhouette: every k scored, the best kept
    selection = router["selection"]
    scores = {int(k): v for k, v in selection["silhouette"].items()}
    k = selection["k"]
    assert sorted(scores) == list(range(2, 9)) and scores[k] == max(v for v in scores.values() if v is not None)
    assert model_json["segments"] == k and (folder / "segments" / str(k - 1) / "model.json").is_file()
    assert router["features"] == ["activity", "spend", "recency"] and len(router["centroids"]) == k
    report = json.loads((folder / "metrics.json").read_text())
    assert report["segmentation"] == selection
    per_segment = report["segments"]
    assert sorted(per_segment, key=int) == [str(s) for s in range(k)]
    assert sum(s["holdout_users"] for s in per_segment.values()) == report["holdout"]["users"]

    # compared on the shared hold-out with the baseline: a model blessing records the verdict either way,
    # and the champion is the segmented model exactly when that verdict passed
    verdicts = blessings(registry, segmented.version, kind="model")
    assert verdicts, "the compare step wrote no model blessing for the segmented candidate"
    assert {"als_segmented", "popularity"} <= set(verdicts[-1].details["metrics"])  # one shared hold-out
    # its segments are one more slice on that hold-out, shown per segment in the run's report
    judged = verdicts[-1].details["metrics"]["als_segmented"]
    assert {f"ndcg@{K}[segment={s}]" for s in range(k)} <= set(judged), sorted(judged)
    html = latest_report(registry, segmented.version)
    assert html is not None and "<h3>als_segmented</h3>" in html.split("<h2>Per segment", 1)[1]
    champion = registry.champion()
    assert (champion is not None and champion.version == segmented.version) == verdicts[-1].passed, verdicts[-1].reasons
