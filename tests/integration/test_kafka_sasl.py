"""Kafka security really run: a local broker with SASL (SCRAM-SHA-512) and the project's clients.

The broker is a second one of this session (its own folder, ports and generated users); the clients are
built the way the pipeline builds them, from ``KafkaSettings.security`` (what the ``kafka_default``
Connection's extras or ``RECFLOW_KAFKA_*`` give): the model-update events' producer, the alerts'
producer and a consumer through ``client_config``. A client without credentials, or with a wrong
password, gets nothing.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from recflow.config.kafka import KafkaSettings, client_config, security_from_extra
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
