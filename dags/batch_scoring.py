"""
### Batch scoring

Nightly, and whenever a new champion is promoted: a Spark job scores every active user of the day
with the champion of the run's data interval (or a pinned `version`), removes what
each user has already seen in the lake, checks the output with `expectations/batch_scores.json` in a
staging folder and only then publishes `scores/event_date=<day>/` (the previous partition is kept when
the check fails). Each published partition emits a `recflow://lake/scores` Asset event.

CLI: `airflow dags test batch_scoring 2026-11-09`; history:
`airflow backfill create --dag-id batch_scoring --from-date ... --to-date ... --reprocess-behavior completed`
scores each past day with the champion of that day (README, "Which champion scores a day").
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag

from recflow.config.settings import project_root
from recflow.orchestration.assets import CHAMPION
from recflow.orchestration.connections import SPARK_CONF, SPARK_CONN_ID, SPARK_JOB_ENV, SPARK_MACROS, SPARK_PY_FILES
from recflow.orchestration.defaults import DEFAULT_ARGS, START_DATE
from recflow.orchestration.scoring_tasks import check_scores, confirm_streaming_scorer, plan_scoring


@dag(
    dag_id="batch_scoring",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 4 * * *", timezone="UTC", interval=timedelta(days=1)),
        assets=[CHAMPION],
    ),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["recflow", "scoring"],
    user_defined_macros=SPARK_MACROS,
    doc_md=__doc__,
    params={
        "k": Param(10, type="integer", minimum=1, maximum=200, description="Items per user."),
        "active_days": Param(30, type="integer", minimum=1, maximum=365, description="Activity window."),
        "version": Param(
            "", type="string", description="Registry version to score with (empty: the data interval's champion)."
        ),
        "users": Param([], type="array", items={"type": "string"}, description="Only these users (empty: all)."),
    },
)
def batch_scoring() -> None:
    score = SparkSubmitOperator(
        task_id="score",
        conn_id=SPARK_CONN_ID,
        application=str(project_root() / "spark_jobs" / "batch_score.py"),
        application_args=plan_scoring(),
        env_vars=SPARK_JOB_ENV,
        py_files=SPARK_PY_FILES,
        conf=SPARK_CONF,
        name="recflow-batch-score",
    )
    score >> check_scores() >> confirm_streaming_scorer()


batch_scoring()
