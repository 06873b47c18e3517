"""The environment an Airflow process needs to run recflow's DAGs locally.

One source for ``make airflow``, ``make demo`` and the test fixtures: where Airflow keeps its metadata
DB, which folders hold DAGs and plugins, how Spark jobs find the venv's Python, where task processes
reach the execution API, how many task processes to run, and the Connections (as ``AIRFLOW_CONN_*``
JSON) for Spark, Kafka and the S3 server. No Airflow import here.

Why the caller's variables win: a user who sets ``AIRFLOW__API__PORT`` or their own metadata DB before
``eval "$(recflow airflow-env)"`` (or ``make airflow``) must not have it silently replaced; values that
depend on others (the execution API URL on the API host and port) are derived from the user's values.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from recflow.config.identities import role_identities
from recflow.config.kafka import AIRFLOW_CONSUMER, PROBE_CONSUMER
from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings, load_settings, project_root, state_dir
from recflow.services.postgres import pg_bin_dir
from recflow.services.process import ServiceError
from recflow.spark.session import pyspark_home

#: Airflow's own defaults for ``[api] host`` / ``[api] port``; only used when the user sets neither.
AIRFLOW_DEFAULT_API_HOST = "0.0.0.0"
AIRFLOW_DEFAULT_API_PORT = 8080
#: Addresses a server binds to but a client cannot dial.
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def api_base_url(environ: Mapping[str, str]) -> str:
    """The URL clients use to reach the API server, from ``AIRFLOW__API__BASE_URL`` or host and port.

    A wildcard bind address (Airflow's default ``0.0.0.0``) is dialled as ``127.0.0.1``.
    """
    base = environ.get("AIRFLOW__API__BASE_URL", "")
    if base and not base.startswith("/"):
        return base.rstrip("/")
    host = environ.get("AIRFLOW__API__HOST", AIRFLOW_DEFAULT_API_HOST)
    host = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    raw_port = environ.get("AIRFLOW__API__PORT") or str(AIRFLOW_DEFAULT_API_PORT)
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ValueError(f"AIRFLOW__API__PORT must be a TCP port number, got {raw_port!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{raw_port}{base.rstrip('/')}"


def execution_api_url(environ: Mapping[str, str]) -> str:
    """Where task processes reach the execution API: the user's URL, else ``<API base URL>/execution/``."""
    explicit = environ.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    return explicit or f"{api_base_url(environ)}/execution/"


def default_parallelism(cpus: int | None = None) -> int:
    """Task processes the LocalExecutor runs at once: one per core, at least two.

    Why: Airflow's default of 32 starts 32 idle worker processes (about 6 GiB RSS) on any machine, and on
    two cores more than two Spark jobs at once only queue for CPU.
    """
    return max(2, cpus if cpus is not None else (os.cpu_count() or 2))


#: Scheduler and DAG-processor settings for a few cores (measured in ``bench/results/airflow.md``).
#: Why: the scheduler sleeps ``scheduler_idle_sleep_time`` (default 1 s) after a loop with nothing to do,
#: and every hand-off (run start, each dependency, run end) waits for such a loop; and the DAG processor
#: re-parses every file every 30 s in 2 processes, CPU that tasks on 2 cores wait for. DAG edits then
#: show within 2 minutes (``airflow dags reserialize`` at once).
SCHEDULING = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
}


def airflow_env(
    settings: Settings | None = None,
    *,
    spark_master: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Variables to export before running ``airflow`` (values are strings, ready for ``os.environ``).

    Every key already set in ``environ`` (default: ``os.environ``) keeps its value, except ``PATH``,
    which gets the venv's ``bin`` in front. The Spark Connection's master is ``spark_master``, else
    ``RECFLOW_SPARK_MASTER`` (e.g. ``spark://127.0.0.1:7077`` after ``recflow services up --with-spark``),
    else ``local[*]``.
    """
    environ = os.environ if environ is None else environ
    spark_master = spark_master or environ.get("RECFLOW_SPARK_MASTER") or "local[*]"
    settings = settings or load_settings()
    home = Path(environ.get("AIRFLOW_HOME") or state_dir() / "airflow")
    root = project_root()
    venv_bin = str(Path(sys.executable).parent)
    s3 = settings.s3
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": execution_api_url(environ),
        "AIRFLOW__CORE__PARALLELISM": str(default_parallelism()),
        **SCHEDULING,
        "SPARK_HOME": str(pyspark_home()),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "RECFLOW_ROOT": str(root),
        "RECFLOW_STATE": str(state_dir()),
        "RECFLOW_LAKE": settings.lake_uri,
        "RECFLOW_LANDING": settings.landing_uri,
        "RECFLOW_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps({"conn_type": "spark", "host": spark_master}),
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": settings.kafka.bootstrap_servers,
                    **settings.kafka.security,
                    **AIRFLOW_CONSUMER,
                },
            }
        ),
        "AIRFLOW_CONN_RECFLOW_KAFKA_PROBE": json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    "bootstrap.servers": settings.kafka.bootstrap_servers,
                    **settings.kafka.security,
                    **PROBE_CONSUMER,
                },
            }
        ),
        "AIRFLOW_CONN_RECFLOW_S3": _s3_connection(s3),
        **role_connections(settings, environ),
    }
    env = {key: environ.get(key) or value for key, value in defaults.items()}
    env["PATH"] = f"{venv_bin}:{environ.get('PATH', '/usr/bin:/bin')}"
    return env


def _s3_connection(s3: S3Settings) -> str:
    return json.dumps(
        {
            "conn_type": "aws",
            "login": s3.access_key,
            "password": s3.secret_key,
            "extra": {"endpoint_url": s3.endpoint_url, "region_name": s3.region},
        }
    )


def role_connections(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """``AIRFLOW_CONN_RECFLOW_S3_<ROLE>`` for each role when the local S3 server holds one key per role.

    With ``RECFLOW_S3_SERVER=versitygw`` every task then signs as its role
    (:func:`recflow.orchestration.connections.s3_conn_id`); with S3Proxy (one key) there are none, and
    every task uses ``recflow_s3``.
    """
    if (environ.get("RECFLOW_S3_SERVER") or "s3proxy") != "versitygw":
        return {}
    return {
        f"AIRFLOW_CONN_RECFLOW_S3_{role.upper()}": _s3_connection(identity.s3(settings.s3))
        for role, identity in role_identities(settings.state).items()
    }


def shell_exports(env: dict[str, str]) -> str:
    """``export K='v'`` lines for ``eval "$(recflow airflow-env)"``."""
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())


def postgres_available() -> bool:
    """Whether the PostgreSQL server binaries are installed (then ``make airflow`` uses PostgreSQL)."""
    try:
        pg_bin_dir()
    except ServiceError:
        return False
    return True


def standalone_env(environ: Mapping[str, str], database_url: str | None) -> dict[str, str]:
    """The environment of ``airflow standalone`` for ``make airflow``.

    ``database_url`` (the local PostgreSQL's, when it runs) is the metadata DB unless the user set
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``; the API binds to 127.0.0.1 unless ``AIRFLOW__API__HOST``
    says otherwise; the LocalExecutor runs on PostgreSQL and SQLite alike.
    """
    layered = {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", **environ}
    if database_url and not environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        layered["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database_url
    # the whole environment (HOME, AIRFLOW__API__PORT, ...) with the derived values on top
    return {**layered, **airflow_env(environ=layered)}
