"""``airflow backfill create --dag-id batch_scoring`` over 3 days, twice, under a real scheduler.

The champion changes between day 1 and day 2: version A is promoted for the interval ending day 1 and
version B for the one ending day 2, through the registry API (wall-clock promotion times are both
"now", long after the data days, as in any backfill). Each day must be scored by its own champion
(A, B, B), and the second backfill (``--reprocess-behavior completed``) must re-run every day and leave
byte-identical partitions (sha256 of every file). Both versions explore (``exploration.json``: new items in
slot 3 for half the users, :mod:`recflow.scoring.explore`), so the byte-identity covers the seeded choice.
The catalog also lists ``launch-x``, an item with no interaction at all (not in either model), launched on
day 2: it reaches top-Ks through the slot from day 2 on, never before, with a null score and propensity.

The components (api-server, scheduler with the LocalExecutor, dag-processor on PostgreSQL) run with a
lake and a model bucket of this module's own, so no other test's champion or data leaks in. Each
``score`` task is a real ``spark-submit`` (local master) reading the registry on the S3 server.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from airflow_cluster import AirflowCluster, airflow_on_postgres, backfill, require_postgres_drivers, wait_backfill

from recflow.batch.layout import scores_partition
from recflow.config.s3 import s3_client
from recflow.config.settings import Settings, load_settings
from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.exploration import write_exploration
from recflow.models.index import IdIndex, SeenItems
from recflow.registry import ModelRegistry
from recflow.scoring.explore import SOURCE_EXPLORE
from recflow.scoring.explore_policy import ExplorePolicy

require_postgres_drivers()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

DAG_ID = "batch_scoring"
START = date(2026, 11, 1)  # interactions from here; the models are "trained" on the first 3 days
DAYS = [date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 7)]
#: The cron tick (04:00) of each day: the run at D 04:00 scores day D (see the DAG's doc).
FROM_DATE, TO_DATE = "2026-11-05", "2026-11-07T04:00"
CONF = {"k": 5, "active_days": 7}
N_USERS, N_ITEMS = 40, 25
#: Items i020..i024 are "new" (first seen 3 days before the first scored day, once each).
#: An item of the catalog nobody has bought: no model knows it; it launches on the second scored day.
LAUNCH = "launch-x"
EXPLORATION = ExplorePolicy(new_within_days=7, min_interactions=2, slots=(3,), user_share=0.5, seed=5)
RUNS_TIMEOUT = 900.0


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.fixture(scope="module")
def zone(live_services: Settings) -> Iterator[dict[str, Any]]:
    """This module's lake (interactions written directly as validated partitions) and model bucket."""
    root = load_settings().lake_root.parent / f"batch-backfill-{uuid.uuid4().hex[:8]}"
    lake = root / "lake"
    rng = np.random.default_rng(11)
    users = [f"u{n:03d}" for n in range(N_USERS)]
    items = [f"i{n:03d}" for n in range(N_ITEMS)]
    day = START
    while day <= DAYS[-1]:
        pairs = [(u, items[j]) for u in users for j in rng.choice(N_ITEMS, 2, replace=False)]
        folder = lake / "interactions" / f"event_date={day}"
        folder.mkdir(parents=True)
        frame = pd.DataFrame(pairs, columns=[COL_USER, COL_ITEM]).assign(**{COL_TS: pd.Timestamp(day, tz="UTC")})
        frame.to_parquet(folder / "part-0.parquet", index=False)
        day += timedelta(days=1)
    bucket = f"recflow-test-backfill-{uuid.uuid4().hex[:8]}"
    client = s3_client(live_services.s3)
    client.create_bucket(Bucket=bucket)
    yield {"root": root, "lake": lake, "bucket": bucket, "users": users, "items": items}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def champions(live_services: Settings, zone: dict[str, Any]) -> dict[date, str]:
    """Two small ALS versions: A promoted for the interval ending day 1, B for the one ending day 2."""
    registry = ModelRegistry(s3_client(live_services.s3), zone["bucket"])
    catalog = pd.DataFrame([(u, i) for u in zone["users"] for i in zone["items"]], columns=[COL_USER, COL_ITEM])
    index = IdIndex.from_frame(catalog)  # every user and item known to both models
    # their training items: the lake's first 3 days (exploration draws against these in every path)
    days = [zone["lake"] / "interactions" / f"event_date={START + timedelta(days=d)}" for d in range(3)]
    train = pd.concat([pd.read_parquet(folder) for folder in days], ignore_index=True)
    versions = []
    for seed, trained_to in ((1, DAYS[0]), (2, DAYS[1])):
        rng = np.random.default_rng(seed)
        factors = [rng.standard_normal((n, 8)).astype(np.float32) for n in (index.n_users, index.n_items)]
        model = AlsRecommender(index, SeenItems.from_frame(train, index), *factors, AlsParams(rank=8))
        folder = zone["root"] / f"model-{seed}"
        model.save(folder)
        (folder / "lineage.json").write_text(json.dumps({"window": {"start": str(START)}}))
        new = [i >= "i020" for i in index.items]
        first_seen = [DAYS[0] - timedelta(days=3) if n else START - timedelta(days=30) for n in new]
        history = pd.DataFrame({COL_ITEM: [*index.items, LAUNCH], "interactions": [*(1 if n else 50 for n in new), 0],
                                "first_seen": [*first_seen, DAYS[1]]})  # fmt: skip
        write_exploration(folder, EXPLORATION, history, None)
        mv = registry.register(folder, family="als", metrics={}, lineage={"run_id": f"backfill-{seed}"},
                               created_at=midnight(trained_to))  # fmt: skip
        previous = versions[-1] if versions else None
        registry.chain.swap(mv.version, expected_champion=previous, reason=f"trained to {trained_to}",
                               actor="pytest", interval_end=midnight(trained_to))  # fmt: skip
        versions.append(mv.version)
    a, b = versions
    return {DAYS[0]: a, DAYS[1]: b, DAYS[2]: b}


@pytest.fixture(scope="module")
def airflow_cluster(live_services: Settings, zone: dict[str, Any]) -> Iterator[AirflowCluster]:
    """The scheduler path on PostgreSQL; its tasks see only this module's lake and model bucket."""
    home = zone["root"] / "airflow"
    private = {"RECFLOW_LAKE": str(zone["lake"]), "RECFLOW_MODELS_BUCKET": zone["bucket"]}
    with airflow_on_postgres(live_services, home, "batchbackfill", **private) as cluster:
        yield cluster


def partition_hashes(lake: Path) -> dict[str, dict[str, str]]:
    """sha256 of every file of each day's published scores partition."""
    out = {}
    for day in DAYS:
        folder = lake / scores_partition(day)
        out[str(day)] = {
            f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*"))
            if f.is_file()
        }
    return out


def test_backfill_scores_each_day_with_its_champion_and_twice_gives_identical_partitions(
    airflow_cluster: AirflowCluster, zone: dict[str, Any], champions: dict[date, str]
) -> None:
    cluster = airflow_cluster
    cluster.wait_dag_parsed(DAG_ID)
    cluster.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    # one day at a time: two Spark jobs side by side on 2 cores took 260 s each, one alone 83 s
    conf = ["--dag-run-conf", json.dumps(CONF), "--max-active-runs", "1"]

    began = time.monotonic()
    first_runs = wait_backfill(cluster, DAG_ID, backfill(cluster, DAG_ID, FROM_DATE, TO_DATE, *conf), RUNS_TIMEOUT)
    first_time = time.monotonic() - began
    assert len(first_runs) == len(DAYS) and all(r["state"] == "success" for r in first_runs), first_runs
    first = partition_hashes(zone["lake"])
    assert all(first[str(day)] for day in DAYS), f"a day has no published partition: {first}"

    for day in DAYS:
        scores = pd.read_parquet(zone["lake"] / scores_partition(day))
        assert set(scores["model_version"]) == {champions[day]}, f"{day} was not scored by its champion"
        assert set(scores[COL_USER]) == set(zone["users"]) and len(scores) == len(zone["users"]) * CONF["k"]
        explored = scores[scores["source"] == SOURCE_EXPLORE]
        assert 0 < explored[COL_USER].nunique() < len(zone["users"]) and set(explored["rank"]) == {3}, day
        assert explored["logging_propensity"].between(0, 1, inclusive="right").all(), day
        launched = scores[scores[COL_ITEM] == LAUNCH]
        assert (len(launched) > 0) == (day >= DAYS[1]), f"{day}: {LAUNCH} shown {len(launched)} times"
        assert set(launched["source"]) <= {SOURCE_EXPLORE} and launched["score"].isna().all(), day
        assert launched["propensity"].isna().all() and launched["logging_propensity"].notna().all(), day
    assert champions[DAYS[0]] != champions[DAYS[1]]

    began = time.monotonic()
    second_id = backfill(cluster, DAG_ID, FROM_DATE, TO_DATE, *conf, "--reprocess-behavior", "completed")
    second_runs = wait_backfill(cluster, DAG_ID, second_id, RUNS_TIMEOUT)
    second_time = time.monotonic() - began
    print(f"batch_scoring backfill of {len(DAYS)} days: {first_time:.1f}s; again (completed): {second_time:.1f}s")

    assert len(second_runs) == len(DAYS) and all(r["state"] == "success" for r in second_runs), second_runs
    first_ends = {r["dag_run_id"]: r["end_date"] for r in first_runs}
    assert all(r["end_date"] != first_ends.get(r["dag_run_id"]) for r in second_runs), "a day was not re-run"
    # logical_date is the interval's start (the previous tick); the day scored is the interval's end
    days_run = sorted(datetime.fromisoformat(r["data_interval_end"]).date() for r in second_runs)
    assert days_run == DAYS, f"the runs scored {days_run}, not the backfilled days"
    assert partition_hashes(zone["lake"]) == first, "a re-run must leave byte-identical partitions"
