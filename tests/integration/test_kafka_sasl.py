"""Kafka security really run: a local broker with SASL (SCRAM-SHA-512) and the project's clients.

The broker is a second one of this session (its own folder, ports and generated users); the clients are
built the way the pipeline builds them, from ``KafkaSettings.security`` (what the ``kafka_default``
Connection's extras or ``RECFLOW_KAFKA_*`` give): the model-update events' producer, the alerts'
producer and a consumer through ``client_config``; and end to end, the real scorer process (configured
only through ``RECFLOW_KAFKA_*`` in its environment), the demo's client (``streaming.client``: its
request producer and answer listener) and a model-update event that switches the scorer's model. A
client without credentials, or with a wrong password, gets nothing.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from scorer_support import USERS, free_port, make_world

from recflow.config.kafka import KafkaSettings, client_config, env_name, security_from_extra
from recflow.config.settings import Settings, state_dir
from recflow.services import manager
from recflow.services.kafka import SCRAM_MECHANISM, KafkaService, list_topics
from recflow.services.process import LOCALHOST

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sasl_broker(live_services: Settings) -> Iterator[KafkaSettings]:
    """A SCRAM-SHA-512 broker under this checkout's state (it shares the resolved Kafka jars)."""
    port = _free_port()
    users = {"broker": secrets.token_urlsafe(16), "recflow": secrets.token_urlsafe(16)}
    extra = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": SCRAM_MECHANISM,
             "sasl.username": "recflow", "sasl.password": users["recflow"]}  # fmt: skip
    kafka = KafkaSettings(f"{LOCALHOST}:{port}", security=security_from_extra(extra, "kafka_default"))
    service = KafkaService(kafka, state_dir(), port, _free_port(), name=f"kafka-sasl-{uuid.uuid4().hex[:6]}",
                           scram_users=users)  # fmt: skip
    settings = replace(live_services, kafka=kafka)
    try:
        assert manager.ensure_services_up(settings, services=[service], timeout=180) == (service.name,)
        yield kafka
    finally:
        manager.services_down(settings, services=[service])
        import shutil

        shutil.rmtree(service.home, ignore_errors=True)


def test_the_pipeline_clients_work_through_the_connection_extras(sasl_broker: KafkaSettings) -> None:
    from recflow.streaming.events import kafka_producer

    assert sasl_broker.alerts_topic in list_topics(sasl_broker.bootstrap_servers, 20, sasl_broker.security)
    producer = kafka_producer(sasl_broker)  # the model-update events' producer
    producer.produce(sasl_broker.model_updates_topic, value=b'{"version": "v"}')
    assert producer.flush(30) == 0
    alerts = Producer({**client_config(sasl_broker), "enable.idempotence": True})  # as recflow.orchestration.alerts
    alerts.produce(sasl_broker.alerts_topic, value=json.dumps({"kind": "test"}).encode())
    assert alerts.flush(30) == 0
    consumer = Consumer({**client_config(sasl_broker), "group.id": "it-sasl", "auto.offset.reset": "earliest"})
    consumer.subscribe([sasl_broker.model_updates_topic])
    try:
        got = [m.value() for m in consumer.consume(num_messages=1, timeout=30) if m.error() is None]
    finally:
        consumer.close()
    assert got == [b'{"version": "v"}']


@pytest.mark.parametrize("security", [{}, "wrong password"], ids=["no credentials", "wrong password"])
def test_a_client_without_valid_credentials_is_refused(sasl_broker: KafkaSettings, security: object) -> None:
    if security == "wrong password":
        config = {**client_config(sasl_broker), "sasl.password": secrets.token_urlsafe(16)}
    else:
        config = {"bootstrap.servers": sasl_broker.bootstrap_servers}
    producer = Producer({**config, "message.timeout.ms": 5000, "socket.timeout.ms": 5000})
    errors: list[str] = []
    producer.produce(sasl_broker.model_updates_topic, value=b"x", on_delivery=lambda err, _m: errors.append(str(err)))
    producer.flush(15)
    assert errors and errors != ["None"], "an unauthenticated producer delivered"
    consumer = Consumer({**config, "group.id": "it-sasl-refused", "session.timeout.ms": 6000})
    try:
        with pytest.raises(KafkaException):
            consumer.list_topics(timeout=5)
    finally:
        consumer.close()


def test_the_scorer_the_demo_client_and_the_model_event_work_end_to_end_over_sasl(
    sasl_broker: KafkaSettings, live_services: Settings, tmp_path: Path
) -> None:
    """The scorer process reads the SASL settings from its environment, answers the demo client's requests
    and follows a model-update event sent over SASL (the registry check is hourly, so only the event can
    switch it within the test)."""
    from recflow.streaming.client import AnswerListener, send_requests
    from recflow.streaming.events import encode, kafka_producer, model_update_event
    from recflow.streaming.launcher import start_scorer

    world = make_world(live_services, tmp_path)
    first, second = world.versions
    env = {**world.env(), "RECFLOW_KAFKA_BOOTSTRAP": sasl_broker.bootstrap_servers,
           **{env_name(key): value for key, value in sasl_broker.security.items()}}  # fmt: skip
    scorer = start_scorer(env, name=f"scorer-sasl-{uuid.uuid4().hex[:6]}",
                          extra_args=["--group", f"recflow-sasl-{uuid.uuid4().hex[:6]}",
                                      "--metrics-port", str(free_port()), "--check-interval", "3600"])  # fmt: skip
    listener = AnswerListener(sasl_broker)  # the demo's client
    try:
        assert scorer.wait_ready(120) == first
        sent = send_requests(sasl_broker, USERS[:100], n=20, seed=3)
        assert listener.wait_for(set(sent), 60), f"{listener.count(set(sent))} of 20 answered over SASL"
        assert {listener.answers(key)[0].doc["model_version"] for key in sent} == {first}
        record = world.registry.chain.swap(second, expected_champion=first, reason="sasl test", actor="pytest")
        producer = kafka_producer(sasl_broker)
        event = model_update_event(version=second, digest=record.digest, uri=record.uri,
                                   promoted_at=record.promoted_at)  # fmt: skip
        producer.produce(sasl_broker.model_updates_topic, value=encode(event))
        assert producer.flush(30) == 0
        scorer.wait_version(second, 60)
        again = send_requests(sasl_broker, USERS[:100], n=5, seed=4)
        assert listener.wait_for(set(again), 60)
        assert {listener.answers(key)[0].doc["model_version"] for key in again} == {second}
    finally:
        listener.close()
        scorer.stop()
