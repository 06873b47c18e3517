"""A read-only view of the model registry, served by the Airflow API server (see plugins/recflow_plugin.py).

Why: after a training run, the first question in the UI is "which model is serving, and why?". The
answer lives in S3 (champion pointer, manifests, audit log); these endpoints show it without S3
credentials in the browser. Nothing here writes, and no secret is returned.

Every route needs an Airflow login with the registry permission (:mod:`recflow.orchestration.registry_auth`:
401 without a valid JWT, 403 without the permission). ``/docs`` and ``/openapi.json`` are closed: the
routes are listed here, and an open schema would be the one unauthenticated page. HTML is served with a
strict Content-Security-Policy (:data:`HTML_HEADERS`): a report is read from S3, so whoever can write
there must not be able to run a script as the logged-in user. A version id that is not one
(:func:`recflow.registry.version_ids.parse_version_id`) is 400, an unknown one 404.
"""

from __future__ import annotations

import asyncio
from html import escape
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse

from recflow.orchestration.connections import s3_settings
from recflow.orchestration.registry_auth import require_registry_reader
from recflow.promotion.report import latest_report, report_keys
from recflow.registry import ModelNotFound, ModelRegistry, ModelVersion, RegistryError
from recflow.registry.version_ids import parse_version_id

app = FastAPI(
    title="recflow model registry",
    description=__doc__,
    dependencies=[Depends(require_registry_reader)],
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)

#: Headers of every HTML answer. ``sandbox`` (without ``allow-scripts``) runs no script and gives the page
#: an opaque origin, so even HTML planted in S3 cannot act as the user; styles may be inline (the reports'
#: own ``<style>``), nothing else loads.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@app.exception_handler(ModelNotFound)
async def _not_found(request: Request, exc: ModelNotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)


@app.exception_handler(RegistryError)
async def _registry_error(request: Request, exc: RegistryError) -> JSONResponse:
    """The registry refused to answer (a tampered pointer, a changed manifest): say so, never a bare 500."""
    return JSONResponse({"detail": f"{type(exc).__name__}: {exc}"}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)


def _checked_version(version: str) -> str:
    if parse_version_id(version) is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="a version id is <family>-<YYYYMMDDTHHMM>-<12 hex>, e.g. als-20261110T0000-3f9a2c1b7e04",
        )
    return version


def _registry() -> ModelRegistry:
    return ModelRegistry.from_settings(s3_settings("scorer"))


def _version_view(mv: ModelVersion) -> dict[str, Any]:
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


@app.get("/versions/{version}")
async def version_detail(version: str) -> dict[str, Any]:
    """One committed version (400 for a malformed id, 404 for an unknown one)."""
    checked = _checked_version(version)
    return _version_view(await asyncio.to_thread(lambda: _registry().get(checked)))


@app.get("/audit")
async def audit() -> list[dict[str, Any]]:
    """Every promotion attempt, oldest first."""
    records: list[dict[str, Any]] = await asyncio.to_thread(lambda: _registry().audit_log())
    return records


@app.get("/history")
async def history() -> list[dict[str, Any]]:
    """Promotions that took effect, oldest first (version, digest, wall-clock promoted_at, reason...)."""
    records = await asyncio.to_thread(lambda: _registry().history())
    return [r.to_dict() for r in records]


def page_view() -> str:
    """The page for people: the champion, its history and the latest promotion report."""
    registry = _registry()
    records = registry.history()
    if not records:
        body = "<p>No champion yet: run the <code>recommender_training</code> DAG.</p>"
    else:
        tip = records[-1]
        champion = registry.get(tip.version)
        metrics = "".join(f"<tr><th>{escape(k)}</th><td>{v:.4f}</td></tr>" for k, v in sorted(champion.metrics.items()))
        reports = report_keys(registry, tip.version)
        link = f"<a href='reports/{escape(tip.version)}'>latest promotion report</a>" if reports else "no report stored"
        rows = "".join(
            f"<tr><td>{escape(r.promoted_at.isoformat(timespec='seconds'))}</td><td>{escape(r.kind)}</td>"
            f"<td><code>{escape(r.version)}</code></td><td><code>{escape(r.digest[:12])}</code></td>"
            f"<td>{escape(str(r.previous))}</td><td>{escape(r.actor)}</td><td>{escape(r.reason)}</td></tr>"
            for r in reversed(records)
        )
        body = (
            f"<h2>Champion</h2><p><code>{escape(tip.version)}</code> ({escape(champion.family)}), digest "
            f"<code>{escape(tip.digest)}</code><br>promoted {escape(tip.promoted_at.isoformat(timespec='seconds'))} "
            f"by {escape(tip.actor)}: {escape(tip.reason)}<br>{link}</p>"
            f"<table>{metrics}</table><h2>History (newest first)</h2><table><tr><th>promoted at</th><th>kind</th>"
            f"<th>version</th><th>digest</th><th>previous</th><th>actor</th><th>reason</th></tr>{rows}</table>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>recflow model registry</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}</style></head><body><h1>recflow model registry</h1>"
        f"{body}<p>JSON: <a href='../champion'>champion</a> · <a href='../history'>history</a> · "
        "<a href='../versions'>versions</a> · <a href='../audit'>audit</a></p></body></html>"
    )


@app.get("/ui/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The registry for people: champion, history, latest report (rendered HTML)."""
    return HTMLResponse(await asyncio.to_thread(page_view), headers=HTML_HEADERS)


@app.get("/ui/reports/{version}", response_class=HTMLResponse)
async def promotion_report(version: str) -> HTMLResponse:
    """The newest promotion report stored next to ``version``."""
    checked = _checked_version(version)
    html = await asyncio.to_thread(lambda: latest_report(_registry(), checked))
    if html is None:
        raise HTTPException(status_code=404, detail=f"no promotion report stored for {checked}")
    return HTMLResponse(html, headers=HTML_HEADERS)
