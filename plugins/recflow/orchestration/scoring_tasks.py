"""Task callables of the ``batch_scoring`` DAG."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.orchestration.context import interval_day

log = logging.getLogger(__name__)


@task
def plan_scoring(params: dict[str, Any] | None = None) -> list[str]:
    """The batch job's arguments; pins the champion version now so a promotion mid-run cannot mix models."""
    from recflow.config import load_settings
    from recflow.orchestration.connections import s3_settings
    from recflow.registry import ModelRegistry

    context = get_current_context()
    params = params or dict(context["params"])
    version = params.get("version") or None
    if version is None:
        champion = ModelRegistry.from_settings(s3_settings()).champion()
        if champion is None:
            raise RuntimeError("the registry has no champion yet: run the recommender_training DAG first")
        version = champion.version
    day = interval_day(context)
    log.info("scoring %s with %s", day, version)
    return [
        "--lake", str(load_settings().lake_root),
        "--date", str(day),
        "--k", str(params["k"]),
        "--active-days", str(params["active_days"]),
        "--version", version,
    ]  # fmt: skip


@task
def check_scores(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the job's summary and fail unless every active user got exactly ``k`` rows or fewer."""
    from recflow.config import load_settings
    from recflow.scoring import read_summary

    context = get_current_context()
    params = params or dict(context["params"])
    summary = read_summary(load_settings().lake_root, interval_day(context))
    if summary["users_scored"] != summary["active_users"]:
        raise RuntimeError(f"{summary['active_users']} active users but {summary['users_scored']} scored: {summary}")
    if summary["rows"] > summary["active_users"] * int(params["k"]):
        raise RuntimeError(f"more than k={params['k']} rows per user: {summary}")
    log.info("batch scores: %s", summary)
    return summary
