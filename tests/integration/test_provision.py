"""``recflow provision --connections``: the compose init service writes the Connections, secrets never as
arguments, and a second run replaces them (idempotent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recflow.orchestration.provision import connection_specs, upsert_connections

ENV = {
    "RECFLOW_S3_ENDPOINT": "http://s3:80",
    "AWS_ACCESS_KEY_ID": "ak-placeholder",
    "AWS_SECRET_ACCESS_KEY": "sk-placeholder",
    "RECFLOW_KAFKA_BOOTSTRAP": "kafka:9092",
    "RECFLOW_KAFKA_EXTRA": '{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}',
    "RECFLOW_SPARK_MASTER": "spark://spark-master:7077",
}


def test_a_missing_variable_is_named() -> None:
    with pytest.raises(ValueError, match="RECFLOW_SPARK_MASTER"):
        connection_specs({k: v for k, v in ENV.items() if k != "RECFLOW_SPARK_MASTER"})


def test_kafka_extras_carry_sasl_settings() -> None:
    extra = json.loads(connection_specs(ENV)["kafka_default"]["extra"])
    assert extra == {"bootstrap.servers": "kafka:9092", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}


@pytest.mark.usefixtures("airflow_db")
def test_connections_land_in_the_metadata_db_and_are_replaced() -> None:
    airflow = str(Path(sys.executable).parent / "airflow")
    assert upsert_connections(ENV) == ["kafka_default", "recflow_s3", "spark_default"]
    assert upsert_connections({**ENV, "RECFLOW_SPARK_MASTER": "spark://other:7077"})  # replaces, no conflict
    done = subprocess.run([airflow, "connections", "export", "-", "--file-format", "json"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    exported = json.loads(done.stdout[done.stdout.index("{") :])
    assert exported["spark_default"]["host"] == "spark://other:7077"
    assert exported["recflow_s3"]["login"] == "ak-placeholder"
    assert json.loads(exported["recflow_s3"]["extra"])["endpoint_url"] == "http://s3:80"
