"""The real local services: S3 round trips against S3Proxy, produce/consume against the Kafka broker,
the CLI's status exit code, and an idempotent ``up``. Nothing here is mocked."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.services import ensure_services_up, service_status, spark_kafka_jars
from recflow.services.kafka import create_topics, list_topics

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(live_services: Settings) -> Iterator[str]:
    """A unique key prefix in the lake bucket, emptied afterwards."""
    prefix = f"test-services/{uuid.uuid4().hex}"
    yield prefix
    client = s3_client(live_services.s3)
    listed = client.list_objects_v2(Bucket=live_services.s3.lake_bucket, Prefix=prefix)
    for obj in listed.get("Contents", []):
        client.delete_object(Bucket=live_services.s3.lake_bucket, Key=obj["Key"])


def test_pipeline_buckets_exist(live_services: Settings) -> None:
    names = {b["Name"] for b in s3_client(live_services.s3).list_buckets()["Buckets"]}
    assert set(live_services.s3.buckets) <= names


def test_s3_put_get_list_delete(live_services: Settings, prefix: str) -> None:
    client, bucket = s3_client(live_services.s3), live_services.s3.lake_bucket
    body = b"user_id,item_id\n1,2\n"
    client.put_object(Bucket=bucket, Key=f"{prefix}/a.csv", Body=body)
    client.put_object(Bucket=bucket, Key=f"{prefix}/sub/b.csv", Body=b"x")
    assert client.get_object(Bucket=bucket, Key=f"{prefix}/a.csv")["Body"].read() == body
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [f"{prefix}/a.csv", f"{prefix}/sub/b.csv"]
    client.delete_object(Bucket=bucket, Key=f"{prefix}/a.csv")
    with pytest.raises(ClientError) as err:
        client.head_object(Bucket=bucket, Key=f"{prefix}/a.csv")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_s3_conditional_put_rejects_the_second_write(live_services: Settings, prefix: str) -> None:
    """S3Proxy honours ``If-None-Match: *``: the registry relies on it to never overwrite a version."""
    client, bucket, key = s3_client(live_services.s3), live_services.s3.lake_bucket, f"{prefix}/once"
    client.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")
    assert err.value.response["Error"]["Code"] == "PreconditionFailed"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first"


def test_s3_rejects_a_wrong_secret(live_services: Settings) -> None:
    from dataclasses import replace

    bad = s3_client(replace(live_services.s3, secret_key=secrets.token_hex(16)), max_attempts=1)
    with pytest.raises(ClientError) as err:
        bad.list_buckets()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_pipeline_topics_exist(live_services: Settings) -> None:
    assert set(live_services.kafka.topics) <= list_topics(live_services.kafka.bootstrap_servers)


@pytest.fixture
def topic(live_services: Settings) -> Iterator[str]:
    """A fresh topic (auto-creation is off on the broker), deleted afterwards."""
    name = f"test.services.{uuid.uuid4().hex[:12]}"
    create_topics(live_services.kafka.bootstrap_servers, (name,))
    yield name
    admin = AdminClient({"bootstrap.servers": live_services.kafka.bootstrap_servers})
    for future in admin.delete_topics([name], operation_timeout=30).values():
        future.result()


def test_kafka_produce_consume(live_services: Settings, topic: str) -> None:
    bootstrap = live_services.kafka.bootstrap_servers
    sent = [f"request-{i}".encode() for i in range(20)]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for i, value in enumerate(sent):
        producer.produce(topic, key=str(i).encode(), value=value)
    assert producer.flush(30) == 0, "messages left undelivered"

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            assert error is None or error.code() == KafkaError._PARTITION_EOF, error
            if error is None:
                received.append(msg.value())
    finally:
        consumer.close()
    assert received == sent  # one partition: order preserved


def test_producing_to_an_unknown_topic_fails(live_services: Settings) -> None:
    """Auto-creation is off, so a typo in a topic name is an error rather than a new topic."""
    name = f"test.services.missing.{uuid.uuid4().hex[:8]}"
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": live_services.kafka.bootstrap_servers, "message.timeout.ms": 3000})
    producer.produce(name, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert name not in list_topics(live_services.kafka.bootstrap_servers)


def _recflow_cli() -> list[str]:
    script = Path(sys.executable).with_name("recflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "recflow.cli"]


def test_status_cli_exit_code_zero_when_healthy(live_services: Settings) -> None:
    done = subprocess.run([*_recflow_cli(), "services", "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("kafka") and " running " in line for line in lines), done.stdout
    assert any(line.startswith("s3") and " running " in line for line in lines), done.stdout


def test_up_is_idempotent(live_services: Settings) -> None:
    before = {s.name: s.pid for s in service_status(live_services)}
    assert ensure_services_up(live_services) == ()
    after = service_status(live_services)
    assert {s.name: s.pid for s in after} == before
    assert all(s.healthy for s in after)


def test_spark_kafka_jars_match_pyspark() -> None:
    import pyspark

    jars = spark_kafka_jars()
    names = sorted(j.name for j in jars)
    assert all(j.is_file() for j in jars)
    connector = f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar"
    assert connector in names, names
    assert f"spark-token-provider-kafka-0-10_2.13-{pyspark.__version__}.jar" in names
    assert any(n.startswith("kafka-clients-") for n in names)
    assert any(n.startswith("commons-pool2-") for n in names)
    # Jars pyspark ships already (Scala, Hadoop client) must not be passed twice.
    assert not any(n.startswith(("scala-library-", "hadoop-client-")) for n in names), names


def test_storage_format_reads_a_cluster_id_that_starts_with_a_dash(live_services: Settings, tmp_path: Path) -> None:
    """One random cluster id in 64 starts with "-"; the real StorageTool must still take it as the id
    (passed as a separate argument, it was read as an option and the format failed)."""
    from recflow.config.settings import state_dir
    from recflow.services import maven
    from recflow.services.kafka import LOG4J2_XML, render_server_properties, storage_format_argv

    jars = maven.resolve(maven.KAFKA, state_dir())
    props, log4j = tmp_path / "server.properties", tmp_path / "log4j2.xml"
    props.write_text(render_server_properties(port=1, controller_port=2, data_dir=tmp_path / "data"))
    log4j.write_text(LOG4J2_XML)
    argv = storage_format_argv(maven.require_tool("java"), jars, log4j, props, "-AbCdEfGhIjKlMnOpQrStU")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cluster.id=-AbCdEfGhIjKlMnOpQrStU" in (tmp_path / "data" / "meta.properties").read_text()
