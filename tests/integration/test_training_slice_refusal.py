"""A real ``recommender_training`` run refuses a candidate that beats the champion on average but whose
tail slice drops beyond its tolerance (``models/promotion.yaml`` ``slice_thresholds``, ``models/slices.yaml``).

The whole DAG runs (``dag.test()``): GX validation of the landing days into the lake, ALS and the popularity
baseline trained by ``spark-submit`` and registered, the compare step re-scoring the seeded champion on
the run's hold-out, the blessing, and ``promote`` skipping. The project's own policy and slices decide.

The data is built so the outcome is known by hand (one training day, one hold-out day):

* 80 users in 4 groups of 20; each group has 5 head items of its own. A user trains on 3 of its group's
  heads and one tail item (40 tail items, two users each), and in the hold-out takes the other 2 heads.
  ALS learns the groups, so it ranks those 2 heads first: a high nDCG@10 for every user (and far above
  popularity, whose ties between the 20 heads are broken by id, not by group).
* Half of each group (40 users) also takes, in the hold-out, one of the 10 tail items t30..t39 (the
  ``item_popularity=tail`` bucket: rank share > 0.5 by training users). The seeded champion is a
  hand-made ALS whose factors rank exactly that item first and then 9 fixed filler items, so its tail
  recall@10 is 1 and its nDCG@10 low (no head item in its top 10): the candidate wins on average by far
  and drops its tail recall by much more than ``max_drop``.
* The champion's coverage is kept small (10 tail items and 9 fillers of 60), so the coverage guardrail
  cannot be what refuses the candidate: the slice rule alone does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings, load_settings
from recflow.data.synthetic import landing_file
from recflow.evaluation.python_holdout import record_canary
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.index import IdIndex, SeenItems
from recflow.promotion.gate import promote_blessed
from recflow.registry import ModelRegistry
from recflow.registry.blessing import bless, blessings
from recflow.scoring.calibration import Calibration

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
END = date(2026, 11, 20)  # after the DAG's start_date (2026-11-01): an earlier run creates no tasks
TRAIN_DAY, HOLDOUT_DAY = END - timedelta(days=2), END - timedelta(days=1)
GROUPS, PER_GROUP, HEADS, N_TAIL = 4, 20, 5, 40
USERS = [f"u{n:03d}" for n in range(GROUPS * PER_GROUP)]
TAIL = [f"t{n:02d}" for n in range(N_TAIL)]
HELD_TAIL = TAIL[30:40]  # all in the tail bucket: ranks 31..60 of 60 items by training users
FILLERS = TAIL[0:9]  # what the champion ranks after its tail item (torso items nobody takes in the hold-out)


def _head(group: int, j: int) -> str:
    return f"g{group}h{j % HEADS}"


def _pairs() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training pairs, hold-out pairs) as described in the module docstring."""
    train, held = [], []
    for n, user in enumerate(USERS):
        group, p = divmod(n, PER_GROUP)
        train += [(user, _head(group, p + i)) for i in range(3)] + [(user, TAIL[n % N_TAIL])]
        held += [(user, _head(group, p + 3)), (user, _head(group, p + 4))]
        if p < len(HELD_TAIL):
            held.append((user, HELD_TAIL[p]))
    return train, held


def _write_landing(landing: Path, day: date, pairs: list[tuple[str, str]]) -> None:
    """One landing CSV in the contract's wire form (ISO-8601 ``Z`` timestamps, no rating)."""
    path = landing_file(landing, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(pairs, columns=["user_id", "item_id"])
    frame.insert(0, "event_id", [f"ev-{day:%Y%m%d}-{i:05d}" for i in range(len(frame))])
    frame["event_ts"] = [f"{day}T{10 + i % 10:02d}:00:00.000Z" for i in range(len(frame))]
    frame["quantity"], frame["amount"] = 1, 10.0
    frame.to_csv(path, index=False)


def _champion(folder: Path, train: list[tuple[str, str]]) -> Path:
    """ALS factors scoring each hold-out-tail user's tail item 1, the fillers 0.5 and every other item
    -1 (the last factor), so its top 10 is that tail item and the fillers, never a head item."""
    frame = pd.DataFrame(train, columns=["user_id", "item_id"])
    index = IdIndex.from_frame(frame)
    dims = len(HELD_TAIL) + 1
    users = np.zeros((index.n_users, dims), dtype=np.float32)
    items = np.zeros((index.n_items, dims), dtype=np.float32)
    users[:, -1] = 1.0
    items[:, -1] = -1.0
    items[index.item_codes(FILLERS), -1] = 0.5
    for t, name in enumerate(HELD_TAIL):
        items[index.item_codes([name])[0], t] = 1.0
        items[index.item_codes([name])[0], -1] = 0.0
    for n, user in enumerate(USERS):
        if n % PER_GROUP < len(HELD_TAIL):
            users[index.user_codes([user])[0], n % PER_GROUP] = 1.0
    model = AlsRecommender(index, SeenItems.from_frame(frame, index), users, items, AlsParams(rank=dims))
    model.save(folder)
    Calibration("platt", a=4.0, b=-2.0).save(folder)
    (folder / "canary.json").write_text(json.dumps(record_canary(model)))
    return folder


@pytest.fixture(scope="module")
def private(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """This module's lake, landing folder and model bucket (environment the tasks read), with the
    hand-made champion promoted in it and the two landing days written."""
    root = load_settings().lake_root.parent / f"slice-refusal-{uuid.uuid4().hex[:8]}"
    bucket = f"recflow-test-slices-{uuid.uuid4().hex[:8]}"
    client = s3_client(live_services.s3)
    client.create_bucket(Bucket=bucket)
    train, held = _pairs()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_LAKE", str(root / "lake"))
        mp.setenv("RECFLOW_LANDING", str(root / "landing"))
        mp.setenv("RECFLOW_RUNS", str(root / "runs"))
        mp.setenv("RECFLOW_MODELS_BUCKET", bucket)
        settings = load_settings()
        _write_landing(settings.landing_root, TRAIN_DAY, train)
        _write_landing(settings.landing_root, HOLDOUT_DAY, held)
        registry = ModelRegistry.from_settings(settings)
        folder = _champion(tmp_path_factory.mktemp("champion"), train)
        champion = registry.register(
            folder, family="als", metrics={"ndcg@10": 0.1}, lineage={"run_id": "hand-made"},
            created_at=datetime.combine(HOLDOUT_DAY, datetime.min.time(), tzinfo=UTC),
        )  # fmt: skip
        bless(registry, champion, kind="model", passed=True, reasons=["seeded by the test"], details={})
        promote_blessed(registry, champion.version, expected_champion=None, reason="seed", actor="test")
        yield {"settings": settings, "registry": registry, "champion": champion}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def training_run(airflow_db: None, private: dict[str, Any]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    conf = {"models": ["als"], "k": 10, "train_days": 1, "holdout_days": 1}
    dag = bag.get_dag("recommender_training")
    return dag.test(logical_date=datetime.combine(END, datetime.min.time(), tzinfo=UTC), run_conf=conf)


def test_a_real_training_run_refuses_a_candidate_better_on_average_for_its_tail_slice(
    training_run: Any, private: dict[str, Any]
) -> None:
    states = {ti.task_id: str(ti.state) for ti in training_run.get_task_instances()}
    assert str(training_run.state) == "success", states
    assert states["compare"] == "success" and states["promote"] == "skipped", states
    registry: ModelRegistry = private["registry"]
    champion = private["champion"]
    candidate = next(mv for mv in registry.list_versions("als") if mv.version != champion.version)

    verdict = blessings(registry, candidate.version, kind="model")[-1]  # the compare step's decision record
    assert not verdict.passed, verdict.reasons
    metrics = verdict.details["metrics"]
    mine, theirs = metrics["als"], metrics["champion"]
    assert verdict.details["compared_with"]["version"] == champion.version
    # better on average, by more than every average rule asks (champion +1 %, popularity +5 %)
    assert mine["ndcg@10"] > 1.5 * theirs["ndcg@10"], (mine["ndcg@10"], theirs["ndcg@10"])
    assert mine["ndcg@10"] > 1.05 * metrics["popularity"]["ndcg@10"]
    # the tail slice: the champion catches every tail pair, the candidate drops far beyond max_drop 0.05
    assert theirs["recall@10[item_popularity=tail]"] == 1.0
    assert mine["recall@10[item_popularity=tail]"] < 0.95 - 0.05
    assert mine["size[item_popularity=tail]"] == 40  # above min_size (20): the slice may block
    failed = [r for r in verdict.reasons if r.startswith("FAIL ")]
    assert any("slice item_popularity=tail" in r and "max_drop" in r for r in failed), verdict.reasons
    assert all(r.startswith("FAIL slice ") for r in failed), failed  # the slice rule alone refused it
    # nothing was promoted: the seeded champion still serves
    current = registry.champion()
    assert current is not None and current.version == champion.version
