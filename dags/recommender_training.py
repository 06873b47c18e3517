"""
### Recommender training

Validates the window's data with Great Expectations, trains every chosen model family plus the
popularity baseline as parallel Spark jobs (`SparkSubmitOperator`), evaluates all of them on one
time-based hold-out, promotes the winner to the S3 model registry and announces it on Kafka.

Trigger it from the UI with the Params form (models, K, epochs, search budget), or from the CLI:
`airflow dags test recommender_training 2026-11-09`.

`check_window` ends a run early, as a skip with the reason and before any Spark job, when its window
has no data (e.g. the cron run created when the DAG is unpaused on an empty lake) or, for an
asset-triggered run, while ingestion still has validations to finish.

A backfill of N ingestion days triggers one run: `ingest_interactions` emits one asset event per batch
of runs (its `announce` task, one at a time across runs, leaves the event to the last of them), and
events that still arrive while a training run is queued or running wait and are consumed together by
one next run (Airflow creates no asset-triggered run while `max_active_runs=1` is reached). The
`check_window` rule above is the safety net for ingestion runs started by hand meanwhile.
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag

from recflow.orchestration.assets import VALIDATED_INTERACTIONS
from recflow.orchestration.connections import SPARK_MACROS, spark_submit_kwargs
from recflow.orchestration.defaults import DEFAULT_ARGS, START_DATE, daily_or_when_updated
from recflow.orchestration.guards import check_window
from recflow.orchestration.ingest_tasks import days_to_validate, validate_window_day
from recflow.orchestration.training_tasks import CompareOperator, plan_training, promote, publish_model_event
from recflow.training.specs import available_specs

#: The run's Params: the trigger form in the UI, and what the REST API validates a run against.
PARAMS = {
    "models": Param(
        ["als", "ncf"],
        type="array",
        items={"type": "string", "enum": [m for m in available_specs() if m != "popularity"]},
        minItems=1,
        description="Model families to train (the popularity baseline always runs).",
    ),
    "k": Param(10, type="integer", minimum=1, maximum=100, description="Cut-off of the ranking metrics."),
    "epochs": Param(None, type=["null", "integer"], minimum=1, maximum=100, description="NCF epochs."),
    "search_budget": Param(1, type="integer", minimum=1, maximum=50, description="Parameter sets to try."),
    "train_days": Param(6, type="integer", minimum=1, maximum=365),
    "holdout_days": Param(2, type="integer", minimum=1, maximum=30),
    "threshold": Param(0.01, type="number", minimum=0, maximum=1, description="Max share of bad rows."),
    "promote": Param(True, type="boolean", description="Promote the winner (off: evaluate only)."),
    "reason": Param("", type="string", description="Why this run was triggered (goes to the audit log)."),
    "force_promote": Param(
        {"enabled": False, "reason": ""},
        type="object",
        properties={"enabled": {"type": "boolean"}, "reason": {"type": "string"}},
        required=["enabled", "reason"],
        additionalProperties=False,
        # JSON Schema if/then: turning it on requires a reason, which the blessing and audit log keep
        **{
            "if": {"properties": {"enabled": {"const": True}}},
            "then": {"properties": {"reason": {"type": "string", "minLength": 3, "pattern": "\\S"}}},
        },
        description="Promote the best candidate even if the policy rejects it (the canary still runs). Needs a reason.",
    ),
}


@dag(
    dag_id="recommender_training",
    schedule=daily_or_when_updated("0 2 * * *", VALIDATED_INTERACTIONS),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recflow", "training"],
    user_defined_macros=SPARK_MACROS,
    doc_md=__doc__,
    params=PARAMS,
)
def recommender_training() -> None:
    checked = check_window()
    days = days_to_validate()
    validated = validate_window_day.expand(day=days)
    plans = plan_training()
    checked >> [days, plans]
    train = SparkSubmitOperator.partial(
        task_id="train", map_index_template="{{ task.name }}", **spark_submit_kwargs("trainer")
    ).expand_kwargs(plans)
    decision = CompareOperator(task_id="compare", plans=plans)
    validated >> plans
    train >> decision
    publish_model_event(promote(decision.output))


recommender_training()
