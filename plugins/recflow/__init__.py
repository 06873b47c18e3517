"""recflow: train, promote and serve user-item propensity models.

The core (every package but ``orchestration``) never imports Airflow, so Spark jobs
run on clusters where Airflow is not installed. Only ``recflow.orchestration`` talks to Airflow.
"""

__version__ = "0.1.0"
