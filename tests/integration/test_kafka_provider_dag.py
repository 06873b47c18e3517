"""The DAG tasks that reach Kafka through Airflow's Kafka provider, run by ``dag.test()`` on the real broker.

A DAG of the real tasks: ``publish_model_event`` (the provider's producer hook on ``kafka_default``)
announces a promoted version; the real scorer process swaps to it on that event; then
``ConfirmStreamingScorer`` sends its probe and defers to the provider's ``AwaitMessageTrigger``, which
``dag.test()`` runs in-process, until the scorer answers from the champion. The scorer, the broker and
the S3 registry are real. ``dag.test()`` needs the DAG in a bundle, so the DAG is a file in a folder of
its own, which stands in for the dags folder for this test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from scorer_support import ScorerWorld, make_world

from recflow.config.settings import Settings

DAG_FILE = '''
import json
import os
import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, task

from recflow.orchestration.scorer_confirmation import ConfirmStreamingScorer
from recflow.orchestration.training_tasks import publish_model_event


@task
def promotion() -> dict:
    return json.loads(os.environ["RECFLOW_TEST_PROMOTION"])


@task
def scorer_swapped(event: dict) -> None:
    """The scorer process swaps on the provider-produced event (its periodic check is 30 s away)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = json.loads(open(os.environ["RECFLOW_TEST_SCORER_STATUS"]).read() or "{}")
        if status.get("model_version") == event["version"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the scorer did not swap to {event['version']}")


@dag(dag_id="recflow_kafka_provider_test", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC))
def recflow_kafka_provider_test() -> None:
    swapped = scorer_swapped(publish_model_event(promotion()))
    swapped >> ConfirmStreamingScorer(task_id="confirm_streaming_scorer", timeout_s=60)


recflow_kafka_provider_test()
'''


@pytest.fixture(scope="module")
def world(live_services: Settings, tmp_path_factory: pytest.TempPathFactory) -> ScorerWorld:
    return make_world(live_services, tmp_path_factory.mktemp("provider-models"))


@pytest.mark.usefixtures("airflow_db")
def test_the_model_update_event_and_the_deferred_scorer_confirmation(
    world: ScorerWorld, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import airflow.settings
    from airflow.dag_processing.dagbag import DagBag

    a, b = world.versions
    world.promote(a)
    scorer = world.start("provider", group="recflow-scorer")  # the group the confirmation looks for
    try:
        current = world.registry.champion_record()
        record = world.registry.chain.swap(
            b, expected_champion=current.version if current else None, reason="provider test", actor="pytest"
        )  # promoted without an event: the DAG's task announces it
        (tmp_path / "provider_test.py").write_text(DAG_FILE)
        monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(tmp_path))
        monkeypatch.setenv("RECFLOW_MODELS_BUCKET", world.bucket)  # the tasks resolve this registry's champion
        monkeypatch.setenv("RECFLOW_TEST_SCORER_STATUS", str(scorer.status_path))
        promotion = {"version": b, "digest": record.digest, "uri": record.uri, "previous": a}
        monkeypatch.setenv("RECFLOW_TEST_PROMOTION", json.dumps(promotion))

        dag = DagBag(dag_folder=str(tmp_path)).get_dag("recflow_kafka_provider_test")
        run = dag.test(logical_date=datetime(2026, 11, 10, tzinfo=UTC))
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        states = {task_id: str(ti.state) for task_id, ti in tis.items()}
        wanted = ("promotion", "publish_model_event", "scorer_swapped", "confirm_streaming_scorer")
        assert states == dict.fromkeys(wanted, "success"), states
        assert tis["confirm_streaming_scorer"].xcom_pull(task_ids="confirm_streaming_scorer")["version"] == b
    finally:
        scorer.stop()


def test_a_landing_event_on_kafka_fires_the_ingest_dags_watcher_with_its_day(live_services: Settings) -> None:
    """The watcher of ``ingest_interactions``' schedule, as the triggerer runs it, on the real broker."""
    import asyncio
    import random
    from datetime import date, timedelta
    from types import SimpleNamespace

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.module_loading import import_string

    from recflow.config.kafka import AIRFLOW_CONSUMER
    from recflow.orchestration.context import event_day
    from recflow.orchestration.scorer_confirmation import start_group_at_end
    from recflow.streaming.events import encode, kafka_producer

    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "ingest_interactions.py")).dags[
        "ingest_interactions"
    ]
    [asset] = [a for a in dag.timetable.asset_condition.objects if getattr(a, "watchers", None)]
    classpath, kwargs = asset.watchers[0].trigger.serialize()
    assert classpath == "airflow.providers.apache.kafka.triggers.await_message.AwaitMessageTrigger"
    assert kwargs["kafka_config_id"] == "kafka_default"

    kafka = live_services.kafka
    start_group_at_end(kafka, kafka.landing_events_topic, AIRFLOW_CONSUMER)  # only this test's messages from here on
    day = date(2040, 1, 1) + timedelta(days=random.randrange(3000))
    producer = kafka_producer(kafka)
    for value in (b"not json", encode({"path": "no day"}), encode({"day": day.isoformat()})):
        producer.produce(kafka.landing_events_topic, value=value)
    assert producer.flush(10) == 0

    trigger = import_string(classpath)(**kwargs)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event
        return None

    event = asyncio.run(asyncio.wait_for(first_event(), 60))
    assert event.payload == {"day": day.isoformat()}, "junk before it is skipped, the day is the payload"
    # what Airflow stores for a watcher's event, and the day the triggered run then validates
    stored = SimpleNamespace(extra={"from_trigger": True, "payload": event.payload})
    assert event_day({"triggering_asset_events": {asset: [stored]}}) == day
