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


@task
def confirm_streaming_scorer(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wait until the streaming scorer serves the champion, checked by a probe request through Kafka.

    Skipped when no scorer is deployed (its consumer group has no members) and for a pinned ``version``
    (the scorer always serves the champion). Answers from the previous champion while the scorer loads
    the new one are retried for up to 5 minutes.
    """
    import dataclasses

    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowSkipException

    from recflow.config import load_settings
    from recflow.orchestration.connections import KAFKA_CONN_ID, s3_settings
    from recflow.registry import ModelRegistry
    from recflow.scorer.probe import probe_version, scorer_members

    context = get_current_context()
    params = params or dict(context["params"])
    if params.get("version"):
        raise AirflowSkipException(
            f"scored with the pinned version {params['version']}; the scorer serves the champion"
        )
    extra = BaseHook.get_connection(KAFKA_CONN_ID).extra_dejson
    base = load_settings().kafka
    kafka = dataclasses.replace(base, bootstrap_servers=str(extra.get("bootstrap.servers") or base.bootstrap_servers))
    if scorer_members(kafka) == 0:
        raise AirflowSkipException("no streaming scorer is running (consumer group recflow-scorer is empty)")
    champion = ModelRegistry.from_settings(s3_settings()).champion()
    if champion is None:
        raise RuntimeError("the registry has no champion")
    answer = probe_version(kafka, champion.version, timeout_s=300)
    log.info("the streaming scorer serves %s: %s", champion.version, answer)
    return {"version": champion.version, "request_id": answer["request_id"], "timing": answer.get("timing")}
