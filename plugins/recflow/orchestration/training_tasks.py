"""Task callables of the ``recommender_training`` DAG.

Each returns a small JSON-able value for XCom; models, metrics files and data stay in the lake and the
S3 registry.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from airflow.sdk import BaseOperator, get_current_context, task

from recflow.config.settings import load_settings, project_root, runs_root
from recflow.data.window import TrainingWindow
from recflow.orchestration.assets import CHAMPION
from recflow.orchestration.connections import KAFKA_CONN_ID, s3_settings
from recflow.orchestration.connections import settings as resolve_settings
from recflow.orchestration.context import interval_end
from recflow.orchestration.report_link import PromotionReportLink, report_url
from recflow.promotion.policy import load_policy, metric_names
from recflow.spark.session import spark_uri
from recflow.streaming.events import model_update_event
from recflow.training.specs import plan_models

log = logging.getLogger(__name__)

BASELINE = "popularity"


@task(trigger_rule="none_failed_min_one_success")
def plan_training(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One ``SparkSubmitOperator`` kwargs dict per model (the chosen ones plus the baseline).

    Runs when validation succeeded or had nothing to do (every day already in the lake); skips with
    ``check_window`` (at least one upstream must succeed).

    Unknown model names fail here, before any Spark job starts. Output folders are keyed on the data
    interval (a re-run replaces its local files); the registry names each upload by its content, so a
    re-run adds new versions and never changes one that was evaluated or promoted.
    """
    from recflow.registry.version_ids import interval_key  # deferred: the registry package pulls in botocore

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
            "--family", spec.name,
            "--lake", lake,
            "--train-start", str(window.start),
            "--holdout-start", str(window.holdout_start),
            "--end", str(window.end),
            "--output-dir", str(runs_root() / key / spec.name),
            "--run-id", context["run_id"],
            "--k", str(params["k"]),
            "--budget", str(1 if spec.baseline else params["search_budget"]),
            "--register",
            *(arg for cutoff in policy_ks if cutoff != params["k"] for arg in ("--also-k", str(cutoff))),
        ]  # fmt: skip
        if overrides:
            args += ["--params-json", json.dumps(overrides)]
        plans.append(
            {
                "application": str(project_root() / spec.entry_point),
                "application_args": args,
                "name": f"recflow-train-{spec.name}-{key}",
                "driver_memory": spec.resources.get("driver_memory", "2g"),
            }
        )
    log.info("training window %s..%s (hold-out from %s): %s", window.start, window.end, window.holdout_start, names)
    return plans


class CompareOperator(BaseOperator):
    """Score every candidate and the champion on this run's hold-out, decide, bless, write the report.

    An operator rather than a ``@task`` because only an operator class can declare an extra link: the
    task's "Promotion report" button (:class:`PromotionReportLink`) opens the report this run wrote.
    """

    template_fields = ("plans",)
    operator_extra_links = (PromotionReportLink(),)

    def __init__(self, *, plans: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plans = plans  # the XCom of plan_training, resolved when the task renders its templates

    def execute(self, context: Any) -> dict[str, Any]:
        return compare(self.plans, context)


def compare(plans: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """The ``compare`` task's work: a small JSON summary of the decision (candidates, winner, reports)."""
    from recflow.data.lake import open_store  # deferred: pulls in pyarrow at DAG parse time
    from recflow.promotion.compare import compare_and_bless  # deferred: pulls in pandas, pyarrow and botocore
    from recflow.registry import ModelRegistry  # deferred: pulls in botocore at DAG parse time

    params = dict(context["params"])
    lake_settings = resolve_settings("promoter")
    registry = ModelRegistry.from_settings(s3_settings("promoter"))
    candidates = {family: _run_candidate(registry, family, context) for family in map(_family, plans)}
    end_ts = interval_end(context)
    policy = load_policy()
    force = params.get("force_promote") or {}
    result = compare_and_bless(
        registry,
        candidates,
        lake_root=open_store(lake_settings.lake_uri, lake_settings.s3),  # local path or s3:// lake
        window=TrainingWindow.ending(
            end_ts.date(), train_days=params["train_days"], holdout_days=params["holdout_days"]
        ),
        policy=policy,
        cutoffs=sorted({int(params["k"]), *(int(n.rsplit("@", 1)[1]) for n in metric_names(policy))}),
        run_id=context["run_id"],
        interval_end=end_ts,
        actor=_actor(context),
        force_reason=force.get("reason") if force.get("enabled") else None,
    )
    for name, uri in result["reports"].items():
        log.info("promotion report for %s: %s", name, uri)
    log.info("report page (the task's 'Promotion report' link): %s", report_url(result))
    return result


@task(outlets=[CHAMPION])
def promote(decision: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Promote the blessed winner after its canary, bound to the champion the decision saw.

    Skipped (no asset event) when there is no winner. A refused blessing or canary, or a champion that
    moved since ``compare``, fails the task without retries: the decision must be taken again.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from recflow.promotion.gate import promote_blessed  # deferred: pulls in botocore at DAG parse time
    from recflow.registry import ChampionMoved, ModelRegistry  # deferred: pulls in botocore at DAG parse time
    from recflow.registry.blessing import NotBlessed  # deferred: pulls in botocore at DAG parse time

    context = get_current_context()
    params = params or dict(context["params"])
    if not decision["winner"]:
        raise AirflowSkipException("no candidate passed the promotion policy; the champion stays")
    if not params.get("promote", True):
        raise AirflowSkipException(f"promotion disabled by Params; {decision['winner']} would have won")
    registry = ModelRegistry.from_settings(s3_settings("promoter"))
    reason = decision["why"] + (f" ({params['reason']})" if params.get("reason") else "")
    try:
        record = promote_blessed(
            registry,
            decision["winner"],
            expected_champion=decision["previous_champion"],
            reason=reason,
            actor=_actor(context),
            kind="force" if decision["forced"] else "promote",
            interval_end=interval_end(context),
            decision_id=f"{context['dag'].dag_id}/{context['run_id']}/{decision['winner']}",
        )
    except (ChampionMoved, NotBlessed) as exc:
        raise AirflowFailException(str(exc)) from exc
    log.info("promoted %s (%s, digest %s); previous champion %s", record.version, record.uri, record.digest,
             record.previous)  # fmt: skip
    return {"version": record.version, "digest": record.digest, "uri": record.uri, "previous": record.previous}


def _actor(context: Any) -> str:
    return f"airflow:{context['dag'].dag_id}:{context['run_id']}"


@task
def publish_model_event(promotion: dict[str, Any]) -> dict[str, Any]:
    """Tell the streaming scorer and the HTTP API about a new champion (they load it on this event).

    Produced through the Kafka provider's hook on the ``kafka_default`` Connection (its address and
    security extras), as Airflow users expect, and acknowledged before the task succeeds.
    """
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    context = get_current_context()
    event = model_update_event(
        version=promotion["version"],
        digest=promotion["digest"],
        uri=promotion["uri"],
        promoted_at=interval_end(context),
    )
    producer = KafkaProducerHook(kafka_config_id=KAFKA_CONN_ID).get_producer()
    topic = load_settings().kafka.model_updates_topic
    producer.produce(topic, key=event["version"].encode(), value=json.dumps(event).encode())
    remaining = producer.flush(30)
    if remaining:
        raise RuntimeError(f"{remaining} model-update event(s) not acknowledged by Kafka topic {topic} in 30 s")
    log.info("published %s to %s", event, topic)
    return event


def _family(plan: dict[str, Any]) -> str:
    """The model family of one training plan (its job name is ``recflow-train-<family>-<interval>``)."""
    return str(plan["name"]).removeprefix("recflow-train-").rsplit("-", 1)[0]


def _run_candidate(registry: Any, family: str, context: Any) -> Any:
    """The version this run's job registered for ``family``: the newest upload with this run id.

    Why look it up: the id is derived from the uploaded content, so only the registry knows it.
    """
    from recflow.registry.version_ids import version_prefix  # deferred: the registry package pulls in botocore

    mine = [
        mv
        for mv in registry.list_versions(family, prefix=version_prefix(family, interval_end(context)))
        if mv.lineage.get("run_id") == context["run_id"]
    ]
    if not mine:
        raise RuntimeError(
            f"no {family} version registered by run {context['run_id']!r} under "
            f"{registry.store.uri(registry.key('versions', version_prefix(family, interval_end(context))))}*: "
            "did its training job fail?"
        )
    return max(mine, key=lambda mv: mv.registered_at)
