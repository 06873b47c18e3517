"""Task callables of the ``recommender_training`` DAG.

Each returns a small JSON-able value for XCom; models, metrics files and data stay in the lake and the
S3 registry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import get_current_context, task

from recflow.orchestration.assets import CHAMPION
from recflow.orchestration.connections import KAFKA_CONN_ID
from recflow.orchestration.context import interval_end
from recflow.versions import candidate_version, interval_key

log = logging.getLogger(__name__)

BASELINE = "popularity"


@task(trigger_rule="none_failed_min_one_success")
def plan_training(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One ``SparkSubmitOperator`` kwargs dict per model (the chosen ones plus the baseline).

    Runs when validation succeeded or had nothing to do (every day already in the lake); skips with
    ``check_window`` (at least one upstream must succeed).

    Unknown model names fail here, before any Spark job starts. Versions and output folders are keyed
    on the data interval, so a re-run replaces its own candidates instead of adding new ones.
    """
    from recflow.config import load_settings, state_dir
    from recflow.promotion import load_policy, metric_names
    from recflow.spark import spark_uri
    from recflow.specs import plan_models
    from recflow.training import TrainingWindow

    context = get_current_context()
    params = params or dict(context["params"])
    specs = plan_models(params["models"], baseline=BASELINE)  # SpecError names the known models
    # The cut-offs the promotion policy compares on are always reported, whatever k the user chose.
    policy_ks = sorted({int(name.rsplit("@", 1)[1]) for name in metric_names(load_policy())})
    names = [spec.name for spec in specs]
    end_ts = interval_end(context)
    window = TrainingWindow.ending(end_ts.date(), train_days=params["train_days"], holdout_days=params["holdout_days"])
    key = interval_key(end_ts)
    lake = spark_uri(load_settings().lake_uri)  # s3a:// when the lake is on the object store
    plans = []
    for spec in specs:
        overrides: dict[str, Any] = {}
        if spec.name == "ncf" and params.get("epochs"):
            overrides["epochs"] = int(params["epochs"])
        args = [
            "--lake", lake,
            "--train-start", str(window.start),
            "--holdout-start", str(window.holdout_start),
            "--end", str(window.end),
            "--output-dir", str(state_dir() / "runs" / key / spec.name),
            "--version", candidate_version(spec.name, end_ts),
            "--k", str(params["k"]),
            "--budget", str(1 if spec.baseline else params["search_budget"]),
            "--register",
            *(arg for cutoff in policy_ks if cutoff != params["k"] for arg in ("--also-k", str(cutoff))),
        ]  # fmt: skip
        if overrides:
            args += ["--params-json", json.dumps(overrides)]
        plans.append(
            {
                "application": str(_root() / spec.entry_point),
                "application_args": args,
                "name": f"recflow-train-{spec.name}-{key}",
                "driver_memory": spec.resources.get("driver_memory", "2g"),
            }
        )
    log.info("training window %s..%s (hold-out from %s): %s", window.start, window.end, window.holdout_start, names)
    return plans


def _root() -> Any:
    from recflow.config import project_root

    return project_root()


@task
def compare(plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Read each candidate's hold-out metrics from the registry and apply the promotion policy."""
    from recflow.orchestration.connections import s3_settings
    from recflow.promotion import decide, load_policy
    from recflow.registry import ModelRegistry

    context = get_current_context()
    registry = ModelRegistry.from_settings(s3_settings())
    versions = [_arg(plan["application_args"], "--version") for plan in plans]
    candidates = {mv.family: mv for mv in (registry.get(v) for v in versions)}
    champion = registry.champion()
    decision = decide(
        {family: mv.metrics for family, mv in candidates.items()},
        champion.metrics if champion else None,
        load_policy(),
        champion_age=interval_end(context) - champion.created_at if champion else None,
    )
    log.info("%s", decision.summary())
    return {
        "candidates": {mv.family: {"version": mv.version, "metrics": mv.metrics} for mv in candidates.values()},
        "previous_champion": champion.version if champion else None,
        "winner": candidates[decision.winner].version if decision.winner else None,
        "decision": decision.to_dict(),
    }


@task(outlets=[CHAMPION])
def promote(decision: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Point the registry's champion at the winner; skipped (no asset event) when there is none."""
    from airflow.exceptions import AirflowSkipException

    from recflow.orchestration.connections import s3_settings
    from recflow.registry import ModelRegistry

    context = get_current_context()
    params = params or dict(context["params"])
    if not decision["winner"]:
        raise AirflowSkipException("no candidate passed the promotion policy; the champion stays")
    if not params.get("promote", True):
        raise AirflowSkipException(f"promotion disabled by Params; {decision['winner']} would have won")
    registry = ModelRegistry.from_settings(s3_settings())
    record = registry.promote(
        decision["winner"],
        reason=params.get("reason") or "scheduled training",
        actor=f"airflow:{context['dag'].dag_id}:{context['run_id']}",
        promoted_at=interval_end(context),
    )
    uri = registry.uri(record.version)
    log.info("promoted %s (%s); previous champion %s", record.version, uri, decision["previous_champion"])
    return {"version": record.version, "uri": uri, "previous": decision["previous_champion"]}


@task
def publish_model_event(promotion: dict[str, Any]) -> dict[str, Any]:
    """Tell the streaming scorer about a new champion (it hot-swaps on this event)."""
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    from recflow.config import load_settings
    from recflow.events import model_update_event

    context = get_current_context()
    event = model_update_event(version=promotion["version"], uri=promotion["uri"], promoted_at=interval_end(context))
    producer = KafkaProducerHook(kafka_config_id=KAFKA_CONN_ID).get_producer()
    topic = load_settings().kafka.model_updates_topic
    producer.produce(topic, key=event["version"].encode(), value=json.dumps(event).encode())
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} model-update event(s) not acknowledged by Kafka topic {topic} in 30 s")
    log.info("published %s to %s", event, topic)
    return event


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]
