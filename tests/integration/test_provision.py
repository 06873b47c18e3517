"""``recflow provision --connections``: the compose init service writes the Connections, secrets never as
arguments, and a second run replaces them (idempotent)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recflow.config.credentials import PlaceholderCredential
from recflow.config.settings import Settings
from recflow.orchestration.provision import connection_specs, upsert_connections

ENV = {
    "RECFLOW_S3_ENDPOINT": "http://s3:80",
    "AWS_ACCESS_KEY_ID": f"ak-{secrets.token_hex(4)}",  # generated: no credential literal in the tests
    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(16),
    "RECFLOW_KAFKA_BOOTSTRAP": "kafka:9092",
    "RECFLOW_KAFKA_EXTRA": '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}',
    "RECFLOW_SPARK_MASTER": "spark://spark-master:7077",
}


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(ValueError, match="RECFLOW_SPARK_MASTER"):
        connection_specs({k: v for k, v in ENV.items() if k != "RECFLOW_SPARK_MASTER"})


def test_a_placeholder_from_env_example_stops_the_init_service() -> None:
    with pytest.raises(PlaceholderCredential, match="AWS_SECRET_ACCESS_KEY"):
        connection_specs({**ENV, "AWS_SECRET_ACCESS_KEY": "change-me-secret-key"})


def test_kafka_extras_carry_sasl_settings() -> None:
    specs = connection_specs(ENV)
    extra = json.loads(specs["kafka_default"]["extra"])
    security = {"bootstrap.servers": "kafka:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert extra == {**security, "group.id": "recflow-airflow", "auto.offset.reset": "earliest"}
    probe = json.loads(specs["recflow_kafka_probe"]["extra"])
    assert probe == {**security, "group.id": "recflow-airflow-probe", "auto.offset.reset": "latest"}


def _exported() -> dict[str, Any]:
    """The Connections in the metadata DB, as ``airflow connections export`` gives them."""
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run([airflow, "connections", "export", "-", "--file-format", "json"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    exported: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return exported


@pytest.mark.usefixtures("airflow_db")
def test_connections_land_in_the_metadata_db_and_are_replaced() -> None:
    assert upsert_connections(ENV) == ["kafka_default", "recflow_kafka_probe", "recflow_s3", "spark_default"]
    assert upsert_connections({**ENV, "RECFLOW_SPARK_MASTER": "spark://other:7077"})  # replaces, no conflict
    exported = _exported()
    assert exported["spark_default"]["host"] == "spark://other:7077"
    assert exported["recflow_s3"]["login"] == ENV["AWS_ACCESS_KEY_ID"]
    assert json.loads(exported["recflow_s3"]["extra"])["endpoint_url"] == "http://s3:80"


@pytest.mark.usefixtures("airflow_db")
def test_the_init_service_command_provisions_buckets_topics_and_connections(live_services: Settings) -> None:
    """docker-compose's airflow-init runs ``recflow provision --connections``: the CLI creates the buckets and
    topics itself and writes the Connections through orchestration's entry point (a child process)."""
    env = {
        **os.environ,
        "RECFLOW_S3_ENDPOINT": live_services.s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": live_services.s3.access_key,
        "AWS_SECRET_ACCESS_KEY": live_services.s3.secret_key,
        "RECFLOW_KAFKA_BOOTSTRAP": live_services.kafka.bootstrap_servers,
        "RECFLOW_SPARK_MASTER": "spark://init-service:7077",
    }
    done = subprocess.run([sys.executable, "-m", "recflow.cli", "provision", "--connections"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"buckets on {live_services.s3.endpoint_url}: {', '.join(live_services.s3.buckets)}",
        f"topics on {live_services.kafka.bootstrap_servers}: {', '.join(live_services.kafka.topics)}",
        "connections: kafka_default, recflow_kafka_probe, recflow_s3, spark_default",
    ]
    exported = _exported()
    assert exported["spark_default"]["host"] == "spark://init-service:7077"
    assert json.loads(exported["kafka_default"]["extra"])["bootstrap.servers"] == live_services.kafka.bootstrap_servers
