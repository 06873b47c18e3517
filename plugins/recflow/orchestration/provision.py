"""Create the Airflow Connections a deployment needs, from environment variables (the compose init service).

Why Connections in the metadata DB and not ``AIRFLOW_CONN_*`` on every container: the secrets then live
in one place (the init service's environment, then the DB, encrypted with the Fernet key), and every
Airflow component reads them the same way. Values never appear on a command line.

Variables: ``RECFLOW_S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``
(``recflow_s3``); ``RECFLOW_KAFKA_BOOTSTRAP`` (``kafka_default``); ``RECFLOW_SPARK_MASTER``
(``spark_default``). Kafka security (SASL_SSL) comes from ``RECFLOW_KAFKA_SECURITY_PROTOCOL``,
``RECFLOW_KAFKA_SASL_MECHANISM``, ``RECFLOW_KAFKA_SASL_USERNAME``, ``RECFLOW_KAFKA_SASL_PASSWORD`` and
``RECFLOW_KAFKA_SSL_CA_LOCATION`` (:mod:`recflow.config.kafka`); other client settings from
``RECFLOW_KAFKA_EXTRA`` as JSON.

Run: ``python -m recflow.orchestration.provision`` (what ``recflow provision --connections`` starts, so the
CLI itself never imports Airflow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recflow.config.credentials import refuse_placeholders
from recflow.config.kafka import AIRFLOW_CONSUMER, PROBE_CONN_ID, PROBE_CONSUMER, security_from_env
from recflow.orchestration.connections import KAFKA_CONN_ID, S3_CONN_ID, SPARK_CONN_ID


def connection_specs(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Connection id -> fields, from the environment; a missing required variable is an error naming it,
    a ``change-me`` placeholder (copied from ``.env.example``) stops the init service before it writes any."""
    refuse_placeholders(environ)

    def need(name: str) -> str:
        value = environ.get(name)
        if not value:
            raise ValueError(f"{name} is not set: the init service needs it to create the Connections")
        return value

    kafka_extra = {
        "bootstrap.servers": need("RECFLOW_KAFKA_BOOTSTRAP"),
        **security_from_env(environ),  # RECFLOW_KAFKA_SECURITY_PROTOCOL, _SASL_*, _SSL_* (recflow.config.kafka)
        **AIRFLOW_CONSUMER,  # the provider's triggers consume as this group
        **json.loads(environ.get("RECFLOW_KAFKA_EXTRA") or "{}"),
    }
    return {
        S3_CONN_ID: {
            "conn_type": "aws",
            "login": need("AWS_ACCESS_KEY_ID"),
            "password": need("AWS_SECRET_ACCESS_KEY"),
            "extra": json.dumps(
                {
                    "endpoint_url": need("RECFLOW_S3_ENDPOINT"),
                    "region_name": environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                }
            ),
        },
        KAFKA_CONN_ID: {"conn_type": "kafka", "extra": json.dumps(kafka_extra)},
        PROBE_CONN_ID: {"conn_type": "kafka", "extra": json.dumps({**kafka_extra, **PROBE_CONSUMER})},
        SPARK_CONN_ID: {"conn_type": "spark", "host": need("RECFLOW_SPARK_MASTER")},
    }


def upsert_connections(environ: Mapping[str, str] | None = None, *, airflow_bin: str | None = None) -> list[str]:
    """Create or replace the Connections with ``airflow connections import --overwrite``; return their ids.

    The file it imports is private to this user and deleted afterwards; the CLI is Airflow's supported
    way to write Connections (no ORM access from our code).
    """
    specs = connection_specs(os.environ if environ is None else environ)
    airflow_bin = airflow_bin or str(Path(sys.executable).parent / "airflow")
    with tempfile.TemporaryDirectory(prefix="recflow-conns-") as tmp:
        path = Path(tmp) / "connections.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(specs, handle)
        done = subprocess.run(  # argument list, no shell; the secrets are in the file, not the arguments
            [airflow_bin, "connections", "import", "--overwrite", str(path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"airflow connections import failed: {done.stderr[-2000:]}")
    return sorted(specs)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the Connections from this process's environment and name them on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m recflow.orchestration.provision", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    print(f"connections: {', '.join(upsert_connections())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
