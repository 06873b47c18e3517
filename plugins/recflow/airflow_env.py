"""The environment an Airflow process needs to run recflow's DAGs locally.

One source for ``make airflow``, ``make demo`` and the test fixtures: where Airflow keeps its SQLite
DB, which folders hold DAGs and plugins, how Spark jobs find the venv's Python, and the Connections
(as ``AIRFLOW_CONN_*`` JSON) for Spark, Kafka and the S3 server. No Airflow import here.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from recflow.config import Settings, load_settings, project_root, state_dir


def pyspark_home() -> Path:
    """The pyspark wheel's folder: it carries ``bin/spark-submit`` and the jars (our SPARK_HOME)."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyspark is not installed in this Python: run `make venv`")
    return Path(next(iter(spec.submodule_search_locations)))


def airflow_env(settings: Settings | None = None, *, spark_master: str = "local[*]") -> dict[str, str]:
    """Variables to export before running ``airflow`` (values are strings, ready for ``os.environ``)."""
    settings = settings or load_settings()
    home = state_dir() / "airflow"
    root = project_root()
    venv_bin = str(Path(sys.executable).parent)
    s3 = settings.s3
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/execution/",
        "SPARK_HOME": str(pyspark_home()),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PATH": f"{venv_bin}:{_current_path()}",
        "RECFLOW_ROOT": str(root),
        "RECFLOW_STATE": str(state_dir()),
        "RECFLOW_LAKE": settings.lake_uri,
        "RECFLOW_LANDING": settings.landing_uri,
        "RECFLOW_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
            {"conn_type": "kafka", "extra": {"bootstrap.servers": settings.kafka.bootstrap_servers}}
        ),
        "AIRFLOW_CONN_RECFLOW_S3": json.dumps(
            {
                "conn_type": "aws",
                "login": s3.access_key,
                "password": s3.secret_key,
                "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
            }
        ),
    }


def _current_path() -> str:
    import os

    return os.environ.get("PATH", "/usr/bin:/bin")


def shell_exports(env: dict[str, str]) -> str:
    """``export K='v'`` lines for ``eval "$(recflow airflow-env)"``."""
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())
