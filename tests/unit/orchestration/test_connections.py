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
