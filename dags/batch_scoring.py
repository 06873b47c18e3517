"""
### Batch scoring

Nightly, and whenever a new champion is promoted: a Spark job scores every active user of the day
with the champion of the run's data interval (or a pinned `version`), removes what
each user has already seen in the lake, checks the output with `expectations/batch_scores.json` in a
staging folder and only then publishes `scores/event_date=<day>/` (the previous partition is kept when
the check fails). Each published partition emits a `recflow://lake/scores` Asset event. With an offer
catalog (the `offers` Param, else `RECFLOW_OFFERS`, passed to the job as `--offers`), the day's
`offers/event_date=<day>/` is published in the same commit.

CLI: `airflow dags test batch_scoring 2026-11-09`; history:
`airflow backfill create --dag-id batch_scoring --from-date ... --to-date ... --reprocess-behavior completed`
scores each past day with the champion of that day (README, "Which champion scores a day").
"""

from __future__ import annotations

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag

from recflow.config.settings import project_root
from recflow.constants import VERSION_ID_PATTERN
from recflow.orchestration.assets import CHAMPION
from recflow.orchestration.connections import SPARK_MACROS, spark_submit_kwargs
from recflow.orchestration.deadline import BATCH_CRON
from recflow.orchestration.defaults import DEFAULT_ARGS, START_DATE, daily_or_when_updated
from recflow.orchestration.scorer_confirmation import ConfirmStreamingScorer
from recflow.orchestration.scoring_tasks import check_scores, plan_scoring

#: An empty string (the champion) or a version id.
PINNED_VERSION_PATTERN = "^$|" + VERSION_ID_PATTERN
#: The users travel to the job as one JSON argument: 1,000 ids of up to 64 characters stay well under
#: Linux's 128 KiB limit for one argument; a larger set belongs in the lake, not in a trigger form.
MAX_PINNED_USERS = 1000
MAX_USER_ID_CHARS = 64

#: The run's Params: the trigger form in the UI, and what the REST API validates a run against.
PARAMS = {
    "k": Param(10, type="integer", minimum=1, maximum=200, description="Items per user."),
    "active_days": Param(30, type="integer", minimum=1, maximum=365, description="Activity window."),
    "version": Param(
        "",
        type="string",
        pattern=PINNED_VERSION_PATTERN,
        description="A blessed registry version to score with, e.g. als-20261110T0000-3f9a2c1b7e04 "
        "(empty: the data interval's champion).",
    ),
    "users": Param(
        [],
        type="array",
        items={"type": "string", "minLength": 1, "maxLength": MAX_USER_ID_CHARS},
        maxItems=MAX_PINNED_USERS,
        uniqueItems=True,
        description=f"Only these users (empty: all); at most {MAX_PINNED_USERS}.",
    ),
    "offers": Param(
        "",
        type="string",
        maxLength=1024,
        description="Offer catalog file for this run, e.g. ../shared/data/pcard/offerList.csv (relative to the "
        "project root); empty: RECFLOW_OFFERS, or no offers when that is unset.",
    ),
}


@dag(
    dag_id="batch_scoring",
    schedule=daily_or_when_updated(BATCH_CRON, CHAMPION),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recflow", "scoring"],
    user_defined_macros=SPARK_MACROS,
    doc_md=__doc__,
    params=PARAMS,
)
def batch_scoring() -> None:
    score = SparkSubmitOperator(
        task_id="score",
        application=str(project_root() / "spark_jobs" / "batch_score.py"),
        application_args=plan_scoring(),
        name="recflow-batch-score",
        **spark_submit_kwargs("batch"),
    )
    score >> check_scores() >> ConfirmStreamingScorer(task_id="confirm_streaming_scorer")


batch_scoring()
