"""The ``recflow_s3`` Connection must hold its keys and endpoint: no silent fall-back to local defaults.

Replays issue 21: a Connection without keys fell back to fixed keys and to 127.0.0.1:9000.
"""

from __future__ import annotations

import json
import secrets

import pytest

from recflow.orchestration.connections import ConnectionIncomplete, s3_settings


def _connection(monkeypatch: pytest.MonkeyPatch, **fields: object) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RECFLOW_S3", json.dumps({"conn_type": "aws", **fields}))


def test_a_connection_without_keys_or_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, extra={"region_name": "eu-west-1"})
    with pytest.raises(ConnectionIncomplete, match="'recflow_s3' has no login, password, extra endpoint_url"):
        s3_settings()
    _connection(monkeypatch, login="key", extra={"endpoint_url": "http://s3.example:9000"})
    with pytest.raises(ConnectionIncomplete, match="has no password:"):
        s3_settings()


def test_a_complete_connection_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(16)
    _connection(monkeypatch, login="key", password=secret,
                extra={"endpoint_url": "http://s3.example:9000", "region_name": "eu-west-1"})  # fmt: skip
    s3 = s3_settings()
    assert (s3.endpoint_url, s3.access_key, s3.secret_key, s3.region) == (
        "http://s3.example:9000", "key", secret, "eu-west-1"
    )  # fmt: skip


def test_each_role_signs_with_its_own_connection_or_else_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Least privilege (issue 21): ``recflow_s3_<role>`` when defined; a one-key set-up keeps ``recflow_s3``."""
    from recflow.orchestration.connections import s3_conn_id, s3_connection, spark_job_env

    shared, batch = secrets.token_hex(4), secrets.token_hex(4)
    _connection(monkeypatch, login=shared, password=secrets.token_urlsafe(8), extra={"endpoint_url": "http://s3:1"})
    assert s3_settings("batch").access_key == shared and s3_conn_id("batch") == "recflow_s3"
    monkeypatch.setenv("AIRFLOW_CONN_RECFLOW_S3_BATCH", json.dumps(
        {"conn_type": "aws", "login": batch, "password": secrets.token_urlsafe(8), "extra": {"endpoint_url": "http://s3:1"}}
    ))  # fmt: skip
    assert s3_settings("batch").access_key == batch and s3_conn_id("batch") == "recflow_s3_batch"
    assert s3_connection("batch").login == batch  # the Spark jobs' Jinja macro
    assert s3_settings("scorer").access_key == shared and s3_settings().access_key == shared
    import jinja2

    rendered = {  # as Airflow renders the SparkSubmitOperator's env_vars, with the DAG's SPARK_MACROS
        name: jinja2.Template(template).render(recflow_s3_conn=s3_connection)
        for name, template in spark_job_env("batch").items()
    }
    assert (rendered["AWS_ACCESS_KEY_ID"], rendered["RECFLOW_S3_ENDPOINT"]) == (batch, "http://s3:1")
    with pytest.raises(ValueError, match="not one of trainer, promoter, batch, scorer"):
        s3_conn_id("admin")
