"""A read-only view of the model registry, served by the Airflow API server (see plugins/recflow_plugin.py).

Why: after a training run, the first question in the UI is "which model is serving, and why?". The
answer lives in S3 (champion pointer, manifests, audit log); these endpoints show it without S3
credentials in the browser. Nothing here writes, and no secret is returned. Airflow does not put its
own auth in front of plugin apps: deploy behind the same access control as the UI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, HTTPException

app = FastAPI(title="recflow model registry", description=__doc__)


def _registry() -> Any:
    from recflow.orchestration.connections import s3_settings
    from recflow.registry import ModelRegistry

    return ModelRegistry.from_settings(s3_settings())


def _version_view(mv: Any) -> dict[str, Any]:
    return {
        "version": mv.version,
        "family": mv.family,
        "created_at": mv.created_at.isoformat(),
        "metrics": dict(mv.metrics),
        "uri": mv.uri,
    }


def champion_view() -> dict[str, Any]:
    registry = _registry()
    record = registry.champion_record()
    if record is None:
        raise HTTPException(status_code=404, detail="no champion yet: run the recommender_training DAG")
    champion = registry.get(record.version)
    return {
        **_version_view(champion),
        "digest": record.digest,
        "promoted_at": record.promoted_at.isoformat(),
        "reason": record.reason,
        "actor": record.actor,
        "previous": record.previous,
    }


@app.get("/champion")
async def champion() -> dict[str, Any]:
    """The serving model, its hold-out metrics and why it was promoted."""
    return await asyncio.to_thread(champion_view)


@app.get("/versions")
async def versions(family: str | None = None) -> list[dict[str, Any]]:
    """Every committed model version (oldest first), optionally of one family."""
    found = await asyncio.to_thread(lambda: _registry().list_versions(family))
    return [_version_view(mv) for mv in found]


@app.get("/audit")
async def audit() -> list[dict[str, Any]]:
    """Every promotion attempt, oldest first."""
    records: list[dict[str, Any]] = await asyncio.to_thread(lambda: _registry().audit_log())
    return records
