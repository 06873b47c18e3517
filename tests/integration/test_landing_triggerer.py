"""A landing event on Kafka starts an ``ingest_interactions`` run through a real triggerer and scheduler.

``test_kafka_provider_dag.py`` runs the watcher's trigger in-process; here the whole path runs as in
production: real ``airflow api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and
``triggerer`` on a PostgreSQL database of their own (``airflow_cluster.airflow_on_postgres``), the
session's real broker and lake. The test lands a file for a day, produces junk and then
``{"day": ...}`` on ``recflow.landing-events``, and checks that the triggerer's ``AwaitMessageTrigger``
(the Kafka provider's, on ``kafka_default``) turned the message into an event on the landing asset, that
the scheduler started one asset-triggered run from it, that the run validated that day (its partition
is in the lake) and that the junk started nothing.
"""

from __future__ import annotations

import random
import time
import urllib.error
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from airflow_cluster import (
    SCHEDULER_PATH,
    AirflowCluster,
    airflow_on_postgres,
    fail_on_bad_task,
    require_postgres_drivers,
)

from recflow.config.kafka import AIRFLOW_CONSUMER
from recflow.config.settings import Settings, load_settings
from recflow.data import synthetic
from recflow.data.lake import open_store
from recflow.orchestration.scorer_confirmation import start_group_at_end
from recflow.streaming.events import encode, kafka_producer
from recflow.validation import lake_partition

require_postgres_drivers()

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "ingest_interactions"
#: A triggerer polls its triggers every second; the scheduler then needs a loop or two to start the run.
RUN_TIMEOUT = 480.0


@pytest.fixture(scope="module")
def cluster(live_services: Settings) -> Iterator[AirflowCluster]:
    """The scheduler path plus a triggerer; the watcher's consumer group starts at the topic's end, so
    earlier tests' landing messages start nothing here."""
    kafka = live_services.kafka
    start_group_at_end(kafka, kafka.landing_events_topic, AIRFLOW_CONSUMER)
    home = load_settings().lake_root.parent / "airflow-triggerer"
    # asset-triggered runs need the job schedule; the cron run it adds on unpause finds no file and skips
    with airflow_on_postgres(
        live_services, home, "landing", (*SCHEDULER_PATH, "triggerer"), AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="True"
    ) as running:
        yield running


def _asset_runs(cluster: AirflowCluster) -> list[dict[str, Any]]:
    runs = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
    return [r for r in runs if r["run_type"] == "asset_triggered"]


def _poll(cluster: AirflowCluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The asset-triggered runs and their task instances; None when the API server did not answer in time
    (on a loaded 2-core machine it sometimes takes longer than the client's 20 s: asked again)."""
    try:
        runs = _asset_runs(cluster)
        tis = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/~/taskInstances?limit=100")["task_instances"]
    except (TimeoutError, urllib.error.URLError) as exc:
        print(f"the API server did not answer ({exc!r}); asking again")
        return None
    mine = {r["dag_run_id"] for r in runs}
    return runs, [ti for ti in tis if ti["dag_run_id"] in mine]


def test_a_landing_message_starts_an_ingest_run_for_its_day(cluster: AirflowCluster, live_services: Settings) -> None:
    settings = load_settings()
    day = date(2041, 1, 1) + timedelta(days=random.randrange(3000))
    synthetic.write_days(day, day, settings.landing_uri, events_per_day=500, n_users=100, n_items=30)
    cluster.wait_dag_parsed(DAG_ID)
    cluster.request("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    assert _asset_runs(cluster) == [], "no landing message was sent yet"

    kafka = live_services.kafka
    producer = kafka_producer(kafka)
    for value in (b"not json", encode({"path": "no day"}), encode({"day": day.isoformat()})):
        producer.produce(kafka.landing_events_topic, value=value)
    assert producer.flush(10) == 0

    deadline = time.monotonic() + RUN_TIMEOUT
    runs: list[dict[str, Any]] = []
    while True:
        polled = _poll(cluster)
        if polled is not None:
            runs, tis = polled
            fail_on_bad_task(cluster, DAG_ID, tis)
            if runs and all(r["state"] == "success" for r in runs):
                break
        if time.monotonic() > deadline:
            pytest.fail(f"no successful asset-triggered run in {RUN_TIMEOUT:.0f}s: {runs}\n{cluster.log_tails()}")
        time.sleep(2.0)
    time.sleep(5)  # a second event (from the junk) would start a second run by now
    runs = _asset_runs(cluster)
    assert len(runs) == 1, f"one landing message with a day, one run (junk is skipped): {runs}"
    events = cluster.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{runs[0]['dag_run_id']}/upstreamAssetEvents")
    payloads = [e["extra"].get("payload") for e in events["asset_events"]]
    assert payloads == [{"day": day.isoformat()}], payloads
    assert events["asset_events"][0]["uri"] == "recflow://landing/interactions"
    lake = open_store(settings.lake_uri, settings.s3)
    assert lake.partition_rows(lake_partition(day)), f"the run did not validate {day} into the lake"
