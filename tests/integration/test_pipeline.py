"""The workflow end to end on the real services: Airflow ``dag.test()`` runs the training DAG (GX
validation, spark-submit of ALS, NCF and the baseline, compare, promote to S3, Kafka event), then
batch scoring, then the streaming scorer answers requests and hot-swaps on a model-update event.

Nothing here is mocked: Spark jobs are real ``spark-submit`` processes, the registry is the S3 server,
events go through the Kafka broker. The data is small so the module runs in a few minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.registry import ModelRegistry
from recflow.registry.version_ids import interval_key

ROOT = Path(__file__).resolve().parents[2]
END = date(2026, 11, 10)
TRAIN_DAYS, HOLDOUT_DAYS, K = 5, 2, 10  # K matches the promotion policy (ndcg@10)


@pytest.fixture(scope="module")
def registry(live_services: Settings) -> ModelRegistry:
    """The registry in this session's own bucket, so no earlier champion leaks in."""
    client = s3_client(live_services.s3)
    bucket = live_services.s3.models_bucket
    assert bucket.startswith("recflow-test-"), f"tests must not use the demo's bucket, got {bucket}"
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    return ModelRegistry.from_settings(live_services)


@pytest.fixture(scope="module")
def landed(live_services: Settings) -> list[Path]:
    from recflow.data.synthetic import write_days

    start = END - timedelta(days=TRAIN_DAYS + HOLDOUT_DAYS)
    return write_days(
        start, END - timedelta(days=1), live_services.landing_root, n_users=1000, n_items=120, events_per_day=5000
    )


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def _states(run: Any) -> dict[str, str]:
    return {
        f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
        for ti in run.get_task_instances()
    }


@pytest.fixture(scope="module")
def training_run(airflow_db: None, registry: ModelRegistry, landed: list[Path]) -> Any:
    dag = _dag("recommender_training")
    conf = {"models": ["als", "ncf"], "k": K, "epochs": 4, "train_days": TRAIN_DAYS, "holdout_days": HOLDOUT_DAYS}
    return dag.test(logical_date=datetime.combine(END, datetime.min.time(), tzinfo=UTC), run_conf=conf)


def test_training_dag_validates_trains_and_promotes(
    training_run: Any, registry: ModelRegistry, live_services: Settings
) -> None:
    states = _states(training_run)
    assert str(training_run.state) == "success", states
    assert all(s == "success" for s in states.values()), states
    # every landed day was validated into the lake before training
    days = [END - timedelta(days=i) for i in range(1, TRAIN_DAYS + HOLDOUT_DAYS + 1)]
    for day in days:
        assert (live_services.lake_root / "interactions" / f"event_date={day}" / "part-0.parquet").is_file(), day
    key = interval_key(datetime.combine(END, datetime.min.time(), tzinfo=UTC))
    versions = {mv.family: mv for mv in registry.list_versions()}
    assert set(versions) == {"als", "ncf", "popularity"}
    for mv in versions.values():
        assert mv.version.startswith(f"{mv.family}-{key}-")
        assert mv.lineage["run_id"] == training_run.run_id
        assert 0 < mv.metrics[f"ndcg@{K}"] <= 1
        assert mv.lineage["window"] == {
            "start": str(END - timedelta(days=TRAIN_DAYS + HOLDOUT_DAYS)),
            "holdout_start": str(END - timedelta(days=HOLDOUT_DAYS)),
            "end": str(END),
        }
        assert mv.lineage["spark_application_id"].startswith("local-")
    champion = registry.champion()
    assert champion is not None and champion.family in {"als", "ncf"}
    # the winner is the eligible candidate with the best primary metric
    assert champion.metrics[f"ndcg@{K}"] == max(versions[f].metrics[f"ndcg@{K}"] for f in ("als", "ncf"))
    audit = registry.audit_log()
    assert [a["version"] for a in audit] == [champion.version]
    assert [r.version for r in registry.history()] == [champion.version]


def test_compare_task_links_to_its_promotion_report(training_run: Any, registry: ModelRegistry) -> None:
    """The "Promotion report" button: the worker stored the URL in XCom; the API server reads it back."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from recflow.orchestration.registry_api import app
    from recflow.orchestration.registry_auth import require_registry_reader

    champion = registry.champion()
    assert champion is not None
    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == training_run.dag_id,
                TaskInstance.run_id == training_run.run_id,
                TaskInstance.task_id == "compare",
            )
        )
        serialized = SerializedDagModel.get_dag(training_run.dag_id, session=session)
        assert ti is not None and serialized is not None
        task = serialized.get_task("compare")
        assert task.extra_links == ["Promotion report"]
        url = task.get_extra_links(ti, "Promotion report")  # what GET .../taskInstances/compare/links answers
    assert url == f"/recflow/ui/reports/{champion.version}"
    # who may read it is tested on a real API server (test_registry_api_auth.py); here, a permitted user
    app.dependency_overrides[require_registry_reader] = lambda: None
    try:
        page = TestClient(app).get(url.removeprefix("/recflow"))  # the plugin app is mounted at /recflow
    finally:
        app.dependency_overrides.clear()
    assert page.status_code == 200, page.text
    assert champion.version in page.text and "<svg" in page.text


def test_promotion_event_reaches_kafka(training_run: Any, registry: ModelRegistry, live_services: Settings) -> None:
    from confluent_kafka import Consumer

    champion = registry.champion()
    assert champion is not None
    consumer = Consumer(
        {
            "bootstrap.servers": live_services.kafka.bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([live_services.kafka.model_updates_topic])
    found = None
    try:
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            event = json.loads(msg.value())
            if event.get("version") == champion.version and event.get("uri") == registry.uri(champion.version):
                found = event
                break
    finally:
        consumer.close()
    assert found is not None, f"no model-update event for {champion.version} on the topic"
    assert found["type"] == "model_update"


def test_batch_scoring_dag_writes_top_k_for_every_active_user(
    training_run: Any, registry: ModelRegistry, live_services: Settings
) -> None:
    run = _dag("batch_scoring").test(
        logical_date=datetime.combine(END, datetime.min.time(), tzinfo=UTC), run_conf={"k": K, "active_days": 7}
    )
    assert str(run.state) == "success", _states(run)
    scores = pd.read_parquet(live_services.lake_root / "scores" / f"event_date={END - timedelta(days=1)}")
    champion = registry.champion()
    assert champion is not None
    assert set(scores["model_version"]) == {champion.version}
    interactions = pd.read_parquet(live_services.lake_root / "interactions")
    recent = interactions[interactions["event_ts"] >= pd.Timestamp(END - timedelta(days=7), tz="UTC")]
    assert set(scores["user_id"]) == set(recent["user_id"])
    per_user = scores.groupby("user_id")["rank"].agg(["count", "min", "max", "nunique"])
    assert (per_user["count"] == K).all() and (per_user["min"] == 1).all() and (per_user["max"] == K).all()
    assert (per_user["nunique"] == K).all()
    # seen items are not recommended: no (user, item) of the training window comes back
    train = interactions[interactions["event_ts"] < pd.Timestamp(END - timedelta(days=HOLDOUT_DAYS), tz="UTC")]
    overlap = scores.merge(train[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    assert overlap.empty, overlap.head()


def test_demo_summary_names_the_champion_its_digest_and_why_it_won(training_run: Any, registry: ModelRegistry) -> None:
    """The summary ``recflow demo`` prints, read back from this run's registry and lake."""
    from recflow.cli.demo import DemoConfig, collect_summary, format_summary
    from recflow.streaming.client import LoadReport

    record = registry.champion_record()
    assert record is not None
    config = DemoConfig(end=END, train_days=TRAIN_DAYS, holdout_days=HOLDOUT_DAYS, k=K, models=("als", "ncf"))
    summary = collect_summary(config)
    stream = LoadReport(1, 1, 0, 0, 0, 1.0, 1.0, 1.0, 1.0, None, (record.version,))  # the demo's last step
    http = {
        "url": "http://127.0.0.1:8000",
        "answered": 1,
        "model_version": record.version,
        "model_digest": record.digest,
    }
    lines = format_summary({**summary, "stream": stream, "http": http}).splitlines()
    assert f"champion   : {record.version}  ({record.uri})" in lines, lines
    assert f"digest     : sha256:{record.digest}" in lines, lines
    assert any(line.startswith("http") and "digest matches the champion's" in line for line in lines), lines
    why = next(line for line in lines if line.startswith("why"))
    assert re.fullmatch(rf"why        : winner: best ndcg@{K} = 0\.\d+ among [12] eligible.*", why), why


def _registry_cli(*args: str) -> Any:
    """``recflow registry ...`` as a user runs it (this session's bucket comes from the environment)."""
    import subprocess
    import sys

    recflow = Path(sys.executable).parent / "recflow"
    return subprocess.run([str(recflow), "registry", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_second_run_of_the_interval_and_a_rollback_are_in_history_and_champion_at(
    training_run: Any, registry: ModelRegistry
) -> None:
    """Acceptance of issue 8: two training runs of one interval and a rollback, read back with the CLI.

    The second run trains ALS only (the baseline always runs) and is forced: on the same data a re-run
    rarely beats the champion by the policy's margin. ``dag.test`` gives both runs the same run id; the
    registry still names the re-run's upload by its content, so it is a new version.
    """
    first = registry.champion_record()
    assert first is not None and [r.version for r in registry.history()] == [first.version]
    first_versions = {mv.version for mv in registry.list_versions()}
    conf = {
        "models": ["als"],
        "k": K,
        "train_days": TRAIN_DAYS,
        "holdout_days": HOLDOUT_DAYS,
        "force_promote": {"enabled": True, "reason": "acceptance: second run of the interval"},
    }
    run = _dag("recommender_training").test(
        logical_date=datetime.combine(END, datetime.min.time(), tzinfo=UTC), run_conf=conf
    )
    assert str(run.state) == "success", _states(run)
    second = registry.champion_record()
    assert second is not None and second.version not in first_versions, second
    assert second.version.startswith(f"als-{interval_key(datetime.combine(END, datetime.min.time(), tzinfo=UTC))}-")
    assert (second.kind, second.previous) == ("force", first.version)
    assert registry.get(first.version).digest == first.digest  # the re-run changed nothing of the first champion

    done = _registry_cli("rollback", "--reason", "acceptance: the re-run regressed", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == first.version

    done = _registry_cli("history", "--json")
    assert done.returncode == 0, done.stderr
    history = json.loads(done.stdout)
    assert [(h["version"], h["kind"], h["previous"]) for h in history] == [
        (first.version, "promote", None),
        (second.version, "force", first.version),
        (first.version, "rollback", second.version),
    ]
    assert history[1]["reason"].endswith("acceptance: second run of the interval")
    assert history[2]["reason"] == "acceptance: the re-run regressed"
    times = [datetime.fromisoformat(h["promoted_at"]) for h in history]
    assert times == sorted(times) and len(set(times)) == 3
    for (before, after), expected in zip(itertools.pairwise(times), (first, second), strict=True):
        done = _registry_cli("champion", "--at", (before + (after - before) / 2).isoformat(), "--json")
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert (answer["version"], answer["digest"]) == (expected.version, expected.digest)


def test_streaming_scorer_answers_and_hot_swaps(
    training_run: Any, registry: ModelRegistry, live_services: Settings
) -> None:
    from scorer_support import free_port

    from recflow.streaming.client import send_burst
    from recflow.streaming.events import encode, kafka_producer, model_update_event
    from recflow.streaming.launcher import start_scorer

    champion = registry.champion()
    assert champion is not None
    users = sorted(pd.read_parquet(live_services.lake_root / "interactions", columns=["user_id"])["user_id"].unique())
    scorer = start_scorer(
        dict(os.environ),
        name=f"scorer-test-{os.getpid()}",
        extra_args=["--group", f"recflow-test-{os.getpid()}", "--metrics-port", str(free_port())],
    )
    try:
        assert scorer.wait_ready() == champion.version
        first = send_burst(live_services.kafka, users, n=200, k=K, timeout_s=60)
        assert first.answered == 200 and first.errors == 0, first
        assert first.model_versions == (champion.version,)
        # a malformed request is answered with an error (and dead-lettered), not dropped
        bad = send_burst(live_services.kafka, users, n=1, k=0, timeout_s=30)
        assert bad.errors == 1 and bad.answered == 0, bad
        # hot swap: promote the baseline and announce it; later answers come from it without a restart
        baseline = next(mv for mv in registry.list_versions() if mv.family == "popularity")
        record = registry.chain.swap(
            baseline.version, expected_champion=champion.version, reason="hot-swap test", actor="pytest"
        )
        producer = kafka_producer(live_services.kafka)
        event = model_update_event(
            version=baseline.version, digest=record.digest, uri=record.uri, promoted_at=record.promoted_at
        )
        producer.produce(live_services.kafka.model_updates_topic, value=encode(event))
        producer.flush(10)
        scorer.wait_version(baseline.version, timeout_s=60)
        second = send_burst(live_services.kafka, users, n=100, k=K, timeout_s=60)
        assert second.answered == 100, second
        assert second.model_versions == (baseline.version,), second
        assert scorer.alive(), "the scorer died during the swap"
    finally:
        scorer.stop()


def _files_holding(root: Path, needles: dict[str, bytes]) -> list[str]:
    """``<what> in <file>`` for every file under ``root`` holding one of ``needles`` (binary files too)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                body = path.read_bytes()
            except OSError:
                continue  # a socket, or gone meanwhile
            found += [f"{what} in {path}" for what, needle in needles.items() if needle in body]
    return found


def test_no_secret_in_logs_reports_artifacts_events_or_xcoms(
    training_run: Any, registry: ModelRegistry, live_services: Settings
) -> None:
    """After the training and scoring DAGs and the scorer ran (the tests above), neither the S3 secret nor
    the PostgreSQL password is in any task log, XCom or rendered field (the session's Airflow home and its
    SQLite DB), lake file or report, model artifact (local runs and every object of the registry bucket),
    or Kafka event of any recflow topic. Replays issue 21's check: a secret rendered into a Spark job's
    environment, logged or stored would be readable by whoever reads these."""
    from confluent_kafka import Consumer

    from recflow.config.credentials import local_credentials
    from recflow.config.kafka import client_config
    from recflow.config.settings import runs_root

    pg_password = os.environ.get("RECFLOW_PG_PASSWORD") or local_credentials(live_services.state).postgres_password
    needles = {"the S3 secret": live_services.s3.secret_key.encode(), "the PostgreSQL password": pg_password.encode()}
    session = Path(os.environ["AIRFLOW_HOME"]).parent  # tests/conftest.py: lake, landing, Airflow home
    leaks = _files_holding(session, needles) + _files_holding(runs_root(), needles)
    client = s3_client(live_services.s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=registry.bucket):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=registry.bucket, Key=obj["Key"])["Body"].read()
            leaks += [f"{what} in s3://{registry.bucket}/{obj['Key']}" for what, n in needles.items() if n in body]
    kafka = live_services.kafka
    consumer = Consumer({**client_config(kafka), "group.id": f"it-leaks-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe(list(kafka.topics))
    try:
        for _ in range(10):  # until the topics are drained (a poll returns nothing)
            batch = consumer.consume(num_messages=10_000, timeout=5)
            for msg in batch:
                if msg.error() is None:
                    raw = (msg.value() or b"") + (msg.key() or b"") + b"".join(v or b"" for _, v in msg.headers() or [])
                    leaks += [
                        f"{what} in Kafka {msg.topic()}@{msg.offset()}" for what, n in needles.items() if n in raw
                    ]
            if not batch:
                break
    finally:
        consumer.close()
    assert not leaks, "\n".join(leaks[:50])
