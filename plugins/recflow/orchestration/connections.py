"""Turn Airflow Connections into the plain settings the core uses.

Credentials live only in Connections (``AIRFLOW_CONN_RECFLOW_S3``, ``AIRFLOW_CONN_KAFKA_DEFAULT``,
``AIRFLOW_CONN_SPARK_DEFAULT``). Spark jobs cannot read Connections, so :func:`spark_job_env` passes
them as environment variables rendered by Jinja at run time; they never appear on a command line.

Least privilege (issue 21): each task signs S3 requests as its pipeline role (``trainer``, ``promoter``,
``batch``, ``scorer``; :mod:`recflow.config.identities`) through the Connection ``recflow_s3_<role>``
when it is defined, and through ``recflow_s3`` otherwise. So a set-up with one key (S3Proxy) keeps
working unchanged, and one with a key per role (versitygw, AWS IAM: ``docs/deployment.md``) defines the
four role Connections and each task gets only its role's rights.
"""

from __future__ import annotations

import dataclasses

from recflow.config.kafka import KafkaSettings, security_from_extra
from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings, load_settings
from recflow.spark.packaging import job_archive

S3_CONN_ID = "recflow_s3"
KAFKA_CONN_ID = "kafka_default"
SPARK_CONN_ID = "spark_default"

#: The pipeline roles that have a Connection of their own (``recflow_s3_<role>``).
ROLES = ("trainer", "promoter", "batch", "scorer")


def s3_conn_id(role: str | None = None) -> str:
    """The Connection ``role`` signs with: ``recflow_s3_<role>`` when it is defined, else ``recflow_s3``."""
    if role is None:
        return S3_CONN_ID
    if role not in ROLES:
        raise ValueError(f"S3 role {role!r} is not one of {', '.join(ROLES)}")
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    own = f"{S3_CONN_ID}_{role}"
    try:
        BaseHook.get_connection(own)
    except AirflowNotFoundException:
        return S3_CONN_ID
    return own


def s3_connection(role: str | None = None) -> object:
    """The Connection object of :func:`s3_conn_id` (a Jinja macro: ``recflow_s3_conn('batch').login``)."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(s3_conn_id(role))


def spark_job_env(role: str) -> dict[str, str]:
    """Environment of a SparkSubmitOperator running as ``role``; rendered per task run from its Connection."""
    conn = f"recflow_s3_conn({role!r})"
    return {
        "AWS_ACCESS_KEY_ID": f"{{{{ {conn}.login }}}}",
        "AWS_SECRET_ACCESS_KEY": f"{{{{ {conn}.password }}}}",
        "RECFLOW_S3_ENDPOINT": f"{{{{ {conn}.extra_dejson.endpoint_url }}}}",
    }


def py_files() -> str:
    """The ``recflow`` zip for ``--py-files`` (built once per code version): what executors import."""
    return str(job_archive())


def s3a_classpath() -> str:
    """Class path of the ``s3a://`` jars when the lake is on the object store, else empty."""
    # deferred: recflow.services loads every local service manager (~16 ms) at DAG parse time
    from recflow.services.maven import spark_s3a_jars

    if not load_settings().lake_uri.startswith("s3://"):
        return ""
    return ":".join(str(jar) for jar in spark_s3a_jars())


#: Jinja macros of the DAGs that submit Spark jobs: called when a task renders, never at parse time.
SPARK_MACROS = {"recflow_py_files": py_files, "recflow_s3a_classpath": s3a_classpath, "recflow_s3_conn": s3_connection}
#: ``py_files`` of every SparkSubmitOperator: the package ships with the job, as a real cluster needs.
SPARK_PY_FILES = "{{ recflow_py_files() }}"
#: ``conf`` of every SparkSubmitOperator: the s3a jars on the driver's and the executors' class path.
SPARK_CONF = {
    "spark.driver.extraClassPath": "{{ recflow_s3a_classpath() }}",
    "spark.executor.extraClassPath": "{{ recflow_s3a_classpath() }}",
}


def spark_submit_kwargs(role: str) -> dict[str, object]:
    """The keyword arguments every SparkSubmitOperator of recflow shares, signing S3 as ``role``.

    Its DAG needs ``user_defined_macros=SPARK_MACROS``.
    """
    return {"conn_id": SPARK_CONN_ID, "env_vars": spark_job_env(role), "py_files": SPARK_PY_FILES, "conf": SPARK_CONF}


class ConnectionIncomplete(ValueError):
    """A Connection lacks what recflow needs (keys, an endpoint); the message says what and where to set it."""


def s3_settings(role: str | None = None) -> S3Settings:
    """S3 settings with the endpoint and keys of ``role``'s Connection (:func:`s3_conn_id`).

    The Connection must hold the keys (login, password) and the endpoint (extra ``endpoint_url``):
    without them it is :class:`ConnectionIncomplete`, never a silent fall-back to local defaults, which
    would send the task's requests, signed with other keys, to another server.
    """
    from airflow.sdk import BaseHook

    conn_id = s3_conn_id(role)
    conn = BaseHook.get_connection(conn_id)
    endpoint = conn.extra_dejson.get("endpoint_url")
    missing = [name for name, value in (("login", conn.login), ("password", conn.password),
                                        ("extra endpoint_url", endpoint)) if not value]  # fmt: skip
    if missing:
        raise ConnectionIncomplete(
            f"Connection {conn_id!r} has no {', '.join(missing)}: set the S3 access key as login, the "
            "secret as password and the server in extra endpoint_url (recflow provision --connections, or "
            'eval "$(recflow airflow-env)" for the local services)'
        )
    base = load_settings().s3
    return dataclasses.replace(
        base,
        endpoint_url=str(endpoint),
        access_key=str(conn.login),
        secret_key=str(conn.password),
        region=conn.extra_dejson.get("region_name", base.region),
    )


def kafka_settings() -> KafkaSettings:
    """Kafka settings with the address and the security extras (SASL_SSL, ...) of ``kafka_default``.

    The extras use librdkafka's keys, as the Kafka provider stores them; see :mod:`recflow.config.kafka`.
    """
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(KAFKA_CONN_ID).extra_dejson
    base = load_settings().kafka
    return dataclasses.replace(
        base,
        bootstrap_servers=str(extra.get("bootstrap.servers") or base.bootstrap_servers),
        security=security_from_extra(extra, KAFKA_CONN_ID) or base.security,
    )


def settings(role: str | None = None) -> Settings:
    """Full settings with S3 taken from ``role``'s Connection (Kafka: :func:`kafka_settings`, where it is used)."""
    return dataclasses.replace(load_settings(), s3=s3_settings(role))
