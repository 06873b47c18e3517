"""recflow: train, promote and serve user-item propensity models.

The core (data, evaluation, models, scoring, registry, scorer) never imports Airflow, so Spark jobs
run on clusters where Airflow is not installed. Only ``recflow.orchestration`` talks to Airflow.
"""

__version__ = "0.1.0"
