"""The plugin's read-only registry API, served by FastAPI, against the real S3 server.

Who may call it is tested on a real API server (test_registry_api_auth.py); here the routes' content,
with the auth dependency answered for a permitted user.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.models.popularity import PopularityRecommender
from recflow.registry import ModelRegistry


@pytest.fixture
def registry(live_services: Settings, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """A fresh bucket per test, so "no champion" is really empty."""
    bucket = f"recflow-test-api-{datetime.now(UTC):%H%M%S%f}"
    s3_client(live_services.s3).create_bucket(Bucket=bucket)
    monkeypatch.setenv("RECFLOW_MODELS_BUCKET", bucket)
    return ModelRegistry(s3_client(live_services.s3), bucket)


@pytest.fixture
def app() -> Iterator[FastAPI]:
    from recflow.orchestration.registry_api import app
    from recflow.orchestration.registry_auth import require_registry_reader

    app.dependency_overrides[require_registry_reader] = lambda: None
    yield app
    app.dependency_overrides.clear()


def test_plugin_is_registered() -> None:
    from airflow import plugins_manager

    names = {p.name for p in plugins_manager._get_plugins()[0]}
    assert "recflow" in names


def test_champion_endpoint_shows_the_promoted_model(registry: ModelRegistry, tmp_path: Path, app: FastAPI) -> None:
    client = TestClient(app)
    missing = client.get("/champion")
    assert missing.status_code == 404 and "no champion" in missing.json()["detail"]

    model = PopularityRecommender.fit(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))
    model.save(tmp_path / "artifact")
    created = datetime(2026, 11, 10, tzinfo=UTC)
    mv = registry.register(
        tmp_path / "artifact",
        family="popularity",
        metrics={"ndcg@10": 0.25},
        lineage={"test": True},
        created_at=created,
    )
    registry.chain.swap(mv.version, expected_champion=None, reason="api test", actor="pytest")

    body = client.get("/champion").json()
    assert body["version"] == mv.version and body["digest"] == mv.digest
    assert body["metrics"] == {"ndcg@10": 0.25}
    assert body["reason"] == "api test" and body["previous"] is None
    assert [v["version"] for v in client.get("/versions").json()] == [mv.version]
    assert [a["version"] for a in client.get("/audit").json()] == [mv.version]
    assert "secret" not in client.get("/champion").text.lower()


def test_people_page_shows_champion_history_and_latest_report(
    registry: ModelRegistry, tmp_path: Path, app: FastAPI
) -> None:
    client = TestClient(app)
    empty = client.get("/ui/")
    assert empty.status_code == 200 and "No champion yet" in empty.text
    model = PopularityRecommender.fit(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))
    model.save(tmp_path / "artifact")
    mv = registry.register(
        tmp_path / "artifact", family="popularity", metrics={"ndcg@10": 0.25}, lineage={}, created_at=datetime.now(UTC)
    )
    registry.chain.swap(mv.version, expected_champion=None, reason="page <test>", actor="pytest")
    assert client.get(f"/ui/reports/{mv.version}").status_code == 404
    key = registry.version_key(mv.version, "reports", "promotion-20261201T000000.000000Z.html")
    registry.store.create(key, b"<html>the report</html>")
    page = client.get("/ui/")
    assert page.headers["content-type"].startswith("text/html")
    assert mv.version in page.text and mv.digest in page.text and "page &lt;test&gt;" in page.text
    assert f"reports/{mv.version}" in page.text
    report = client.get(f"/ui/reports/{mv.version}")
    assert report.text == "<html>the report</html>"
    # a script planted in S3 cannot run: no script source is allowed and the page is sandboxed
    csp = report.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert report.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in page.headers["content-security-policy"]
    assert client.get("/ui/reports/not-a-version").status_code == 400
    assert client.get(f"/versions/{mv.version}").json()["version"] == mv.version
    assert [h["version"] for h in client.get("/history").json()] == [mv.version]
