"""Runtime settings, resolved from environment variables with local-first defaults.

Why env vars: Spark jobs run where Airflow is not installed, so they cannot read Airflow Connections.
The Airflow layer resolves its Connections and hands endpoints and credentials to jobs as environment
variables; nothing secret ever appears on a command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from recflow.config.credentials import local_credentials, refuse_placeholders
from recflow.config.kafka import KafkaSettings, security_from_env
from recflow.config.s3 import S3Settings


def project_root() -> Path:
    """The repository root (``RECFLOW_ROOT`` overrides; default: the checkout this package sits in)."""
    return Path(os.environ.get("RECFLOW_ROOT", Path(__file__).resolve().parents[3]))


def state_dir() -> Path:
    """Git-ignored folder for service data, logs, the Airflow home and the local lake."""
    return Path(os.environ.get("RECFLOW_STATE", project_root() / ".recflow"))


def runs_root() -> Path:
    """Where training jobs leave their candidates (``--output-dir``): ``RECFLOW_RUNS``, else ``<state>/runs``.

    Why a setting: Spark executors write the artifacts' Parquet tables there, so on a multi-host
    cluster it must be a path mounted at the same place on the driver and every executor host.
    """
    explicit = os.environ.get("RECFLOW_RUNS")
    return Path(explicit) if explicit else state_dir() / "runs"


#: The fault plan of :mod:`recflow.services.faults` (named here, below the Spark layer that passes it on),
#: and the folder where processes that share a plan count how often each ``*N`` entry fired.
FAULTS_ENV = "RECFLOW_FAULTS"
FAULTS_LEDGER_ENV = "RECFLOW_FAULTS_LEDGER"


def fault_environment() -> dict[str, str]:
    """What a process passes on to its Spark executors so a fault plan acts there too: the plan, its
    ledger, and the state folder holding the local services' pid files. Empty without a plan, so a
    normal job ships nothing.

    Why explicitly: a ``spark://`` worker starts executors with its own environment, not the driver's.
    """
    plan = os.environ.get(FAULTS_ENV, "")
    if not plan:
        return {}
    ledger = os.environ.get(FAULTS_LEDGER_ENV, "")
    return {FAULTS_ENV: plan, "RECFLOW_STATE": str(state_dir()), **({FAULTS_LEDGER_ENV: ledger} if ledger else {})}


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """The integer in the environment variable ``name``, else ``default`` when it is unset or blank.

    Why an error rather than the default for a bad value: a typo in a port or a retention must stop the
    process, naming the variable and its value, instead of silently running with something else."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a whole number") from exc
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything a job needs to find the services; built once per process by :func:`load_settings`."""

    s3: S3Settings
    kafka: KafkaSettings
    lake_root: Path
    state: Path = field(default_factory=state_dir)
    landing_root: Path = field(default_factory=lambda: state_dir() / "landing")
    #: The same places as URIs, verbatim from the environment: a local path or ``s3://bucket/prefix``.
    #: ``Path("s3://b/p")`` would collapse the ``//``, so ingestion uses these; Spark jobs keep the Paths.
    lake_uri: str = ""
    landing_uri: str = ""
    quarantine_uri: str = ""
    """Default ``<lake_uri>/quarantine`` (env ``RECFLOW_QUARANTINE``)."""
    reports_uri: str = ""
    """Where GX Data Docs are uploaded; default ``s3://<reports bucket>/validation`` (env ``RECFLOW_REPORTS``)."""

    def __post_init__(self) -> None:
        # Frozen dataclass: fill the URI defaults from the Paths for callers that build Settings by hand.
        lake = self.lake_uri or str(self.lake_root)
        object.__setattr__(self, "lake_uri", lake)
        object.__setattr__(self, "landing_uri", self.landing_uri or str(self.landing_root))
        object.__setattr__(self, "quarantine_uri", self.quarantine_uri or f"{lake.rstrip('/')}/quarantine")
        object.__setattr__(self, "reports_uri", self.reports_uri or f"s3://{self.s3.reports_bucket}/validation")


def s3_port() -> int:
    return env_int("RECFLOW_S3_PORT", 9000)


def kafka_port() -> int:
    return env_int("RECFLOW_KAFKA_PORT", 9092)


def kafka_controller_port() -> int:
    return env_int("RECFLOW_KAFKA_CONTROLLER_PORT", 9093)


def scorer_metrics_port() -> int:
    """Port of the streaming scorer's Prometheus endpoint (127.0.0.1 only)."""
    return env_int("RECFLOW_SCORER_METRICS_PORT", 9308)


def serve_port() -> int:
    """Port of the HTTP API (``recflow serve``)."""
    return env_int("RECFLOW_SERVE_PORT", 8000)


def pg_port() -> int:
    """Port of the opt-in local PostgreSQL (5433, so a system cluster on 5432 is never in the way)."""
    return env_int("RECFLOW_PG_PORT", 5433)


def load_settings() -> Settings:
    """Resolve settings from the environment (``RECFLOW_*`` and the standard ``AWS_*`` names).

    Without ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, the S3 keys are the local server's, generated
    into the state folder (:mod:`recflow.config.credentials`). A ``change-me`` placeholder in any
    credential variable stops here (:func:`recflow.config.credentials.refuse_placeholders`).
    """
    refuse_placeholders()
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (access_key and secret_key):
        generated = local_credentials(state_dir())
        access_key, secret_key = generated.s3_access_key, generated.s3_secret_key
    s3 = S3Settings(
        endpoint_url=os.environ.get("RECFLOW_S3_ENDPOINT", f"http://127.0.0.1:{s3_port()}"),
        access_key=access_key,
        secret_key=secret_key,
        region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        models_bucket=os.environ.get("RECFLOW_MODELS_BUCKET", "recflow-models"),
        lake_bucket=os.environ.get("RECFLOW_LAKE_BUCKET", "recflow-lake"),
        reports_bucket=os.environ.get("RECFLOW_REPORTS_BUCKET", "recflow-reports"),
    )
    kafka = KafkaSettings(
        bootstrap_servers=os.environ.get("RECFLOW_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port()}"),
        security=security_from_env(os.environ),
    )
    lake = os.environ.get("RECFLOW_LAKE") or str(state_dir() / "lake")
    landing = os.environ.get("RECFLOW_LANDING") or str(state_dir() / "landing")
    return Settings(
        s3=s3,
        kafka=kafka,
        lake_root=Path(lake),
        landing_root=Path(landing),
        lake_uri=lake,
        landing_uri=landing,
        quarantine_uri=os.environ.get("RECFLOW_QUARANTINE", ""),
        reports_uri=os.environ.get("RECFLOW_REPORTS", ""),
    )
