"""Kafka security (SASL_SSL) reaches every client from the Connection or the environment, never from code.

The clients are replaced by recorders of the config they are built with: no broker here speaks SASL_SSL,
and what matters is the dict librdkafka receives.
"""

from __future__ import annotations

import ast
import json
import logging
import secrets
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from recflow.config import kafka as kafka_config
from recflow.config.kafka import (
    KafkaSettings,
    client_config,
    redacted,
    security_from_env,
    security_from_extra,
    spark_kafka_options,
)
from recflow.config.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]
SECRET = secrets.token_urlsafe(12)  # generated: no credential literal in the tests
SASL_ENV = {
    "RECFLOW_KAFKA_BOOTSTRAP": "broker-1.example.com:9096",
    "RECFLOW_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "RECFLOW_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "RECFLOW_KAFKA_SASL_USERNAME": "recflow",
    "RECFLOW_KAFKA_SASL_PASSWORD": SECRET,
    "RECFLOW_KAFKA_SSL_CA_LOCATION": "/etc/ssl/certs/ca.pem",
}
EXPECTED = {
    "bootstrap.servers": "broker-1.example.com:9096",
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "recflow",
    "sasl.password": SECRET,
    "ssl.ca.location": "/etc/ssl/certs/ca.pem",
}


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch) -> KafkaSettings:
    for key, value in SASL_ENV.items():
        monkeypatch.setenv(key, value)
    return load_settings().kafka


def test_the_environment_gives_the_full_sasl_ssl_config(sasl_env: KafkaSettings) -> None:
    assert client_config(sasl_env) == EXPECTED
    assert client_config(sasl_env, {"group.id": "g"}) == {**EXPECTED, "group.id": "g"}


def test_no_security_variables_mean_plaintext_with_only_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in kafka_config.SECURITY_KEYS:
        monkeypatch.delenv(kafka_config.env_name(key), raising=False)
    monkeypatch.setenv("RECFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    assert client_config(load_settings().kafka) == {"bootstrap.servers": "127.0.0.1:1"}


def test_connection_extras_use_librdkafka_keys_and_ignore_the_rest() -> None:
    extra = {
        "bootstrap.servers": "b:9096",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",  # the plural spelling librdkafka and the Kafka provider accept
        "sasl.username": "u",
        "sasl.password": SECRET,
        "group.id": "not security",
    }
    assert security_from_extra(extra, "kafka_default") == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": SECRET
    }  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"}, "is not one of"),
        ({"RECFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RECFLOW_KAFKA_SASL_USERNAME": "u"}, "needs sasl.mechanism"),
        ({"RECFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RECFLOW_KAFKA_SASL_MECHANISM": "GSSAPI"}, "needs sasl.mech"),
        (
            {"RECFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RECFLOW_KAFKA_SASL_MECHANISM": "PLAIN",
             "RECFLOW_KAFKA_SASL_USERNAME": "u"},
            "needs sasl.password",
        ),
        ({"RECFLOW_KAFKA_SASL_USERNAME": "u", "RECFLOW_KAFKA_SASL_PASSWORD": SECRET}, "security.protocol is PLAINTEXT"),
        ({"RECFLOW_KAFKA_SECURITY_PROTOCOL": "SSL", "RECFLOW_KAFKA_SASL_PASSWORD": SECRET}, "no SASL"),
    ],
)  # fmt: skip
def test_incomplete_or_unknown_security_is_a_clear_error_without_the_secret(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        security_from_env(env)
    assert "RECFLOW_KAFKA_* environment" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("key", ["bootstrap.servers", "security.protocol", "sasl.password", "sasl.mechanisms"])
def test_code_cannot_override_the_address_or_the_security(sasl_env: KafkaSettings, key: str) -> None:
    with pytest.raises(ValueError, match="come from the Kafka Connection"):
        client_config(sasl_env, {key: "x"})


def test_secrets_are_redacted_in_logs_and_reprs(sasl_env: KafkaSettings, caplog: pytest.LogCaptureFixture) -> None:
    key_password = secrets.token_hex(4)
    config = {**client_config(sasl_env, {"logger": logging.getLogger("x")}), "ssl.key.password": key_password}
    shown = redacted(config)
    assert shown["sasl.password"] == shown["ssl.key.password"] == "***"
    assert shown["sasl.username"] == "recflow" and shown["logger"] == "<Logger>"
    with caplog.at_level(logging.INFO):
        logging.getLogger("recflow.test").info("kafka client: %s", redacted(config))
    assert SECRET not in caplog.text and key_password not in caplog.text and "SASL_SSL" in caplog.text
    assert SECRET not in repr(sasl_env) and SECRET not in repr(load_settings())


class Recorder:
    """Stands in for confluent-kafka's Producer, Consumer and AdminClient; keeps the configs."""

    configs: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        Recorder.configs.append(config)

    def subscribe(self, topics: list[str]) -> None:
        pass

    def poll(self, timeout: float) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import confluent_kafka
    import confluent_kafka.admin

    Recorder.configs = []
    monkeypatch.setattr(confluent_kafka, "Producer", Recorder)
    monkeypatch.setattr(confluent_kafka, "Consumer", Recorder)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", Recorder)
    return Recorder.configs


def test_the_scorer_and_the_pipeline_clients_get_the_security(
    sasl_env: KafkaSettings, recorded: list[dict[str, Any]], tmp_path: Path
) -> None:
    from recflow.streaming.engine import Scorer
    from recflow.streaming.events import kafka_producer
    from recflow.streaming.follower import ChampionFollower, watch_model_updates
    from recflow.streaming.metrics import ScorerMetrics

    kafka_producer(sasl_env)  # the DAG's publish_model_event, the registry CLI, the probe, the benchmarks
    follower = ChampionFollower(registry=None, cache_root=tmp_path)  # type: ignore[arg-type]
    Scorer(sasl_env, follower, ScorerMetrics())._clients()  # the scorer's producer and consumer
    stop = threading.Event()
    stop.set()
    watch_model_updates(sasl_env, follower, stop).join(5)  # the scorer's model-update listener
    assert len(recorded) == 4
    for config in recorded:
        assert {key: config.get(key) for key in EXPECTED} == EXPECTED, redacted(config)


def test_the_airflow_connection_carries_the_security_from_the_environment(sasl_env: KafkaSettings) -> None:
    from recflow.orchestration.provision import connection_specs
    from recflow.services.local_airflow import airflow_env

    conn = json.loads(airflow_env(environ=SASL_ENV)["AIRFLOW_CONN_KAFKA_DEFAULT"])
    assert {k: conn["extra"].get(k) for k in EXPECTED} == EXPECTED
    env = {**SASL_ENV, "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "RECFLOW_S3_ENDPOINT": "http://s3",
           "RECFLOW_SPARK_MASTER": "spark://m:7077"}  # fmt: skip
    extra = json.loads(connection_specs(env)["kafka_default"]["extra"])
    assert {k: extra.get(k) for k in EXPECTED} == EXPECTED


def test_the_task_side_reads_the_connection_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from recflow.orchestration.connections import kafka_settings

    extra = {**EXPECTED, "sasl.password": SECRET}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": extra}))
    assert client_config(kafka_settings()) == EXPECTED


def test_no_kafka_client_is_configured_by_hand() -> None:
    """Every client config in the project's code goes through ``client_config``. Exceptions: the local
    broker's own admin client (``services/kafka.py``, which takes the security as an argument) and the
    two writers of the ``kafka_default`` Connection's extras (``local_airflow.py``, ``provision.py``); the
    config module itself is ``config/kafka.py``."""
    allowed = {"kafka.py", "local_airflow.py", "provision.py"}
    offenders = []
    sources = [*(ROOT / "plugins" / "recflow").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    sources += (ROOT / "bench").glob("*.py")
    for path in sources:
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict) and any(
                isinstance(k, ast.Constant) and k.value == "bootstrap.servers" for k in node.keys
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"Kafka clients configured without recflow.config.kafka.client_config: {offenders}"


def test_spark_streams_get_the_same_security(sasl_env: KafkaSettings) -> None:
    """Spark's Kafka source and sink (the Java client) get the address, SCRAM and the CA, not only the address."""
    options = spark_kafka_options(sasl_env)
    assert options == {
        "kafka.bootstrap.servers": "broker-1.example.com:9096",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="recflow" password="{SECRET}";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/etc/ssl/certs/ca.pem",
    }
    assert spark_kafka_options(KafkaSettings("b:9092")) == {"kafka.bootstrap.servers": "b:9092"}


def test_spark_refuses_a_client_certificate_rather_than_dropping_it() -> None:
    kafka = KafkaSettings("b:9093", security={"security.protocol": "SSL", "ssl.certificate.location": "/c.pem"})
    with pytest.raises(ValueError, match="client certificates are not mapped"):
        spark_kafka_options(kafka)
