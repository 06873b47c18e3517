"""The one factory for Spark sessions, used by every job and test.

Why a factory: Python workers must run the driver's interpreter (the venv that has recflow and pandas),
ALS needs a checkpoint directory to keep long lineages off the stack, and tests want a small, quiet,
UI-less session. Doing that in one place keeps the jobs thin. :func:`session_conf` scopes a job's own
settings to the block that needs them, so a shared session (tests, a long-lived driver) gets its own back.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from recflow.config.s3 import S3Settings
from recflow.config.settings import fault_environment, load_settings, state_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def pyspark_home() -> Path:
    """The pyspark wheel's folder: it carries ``bin/spark-submit`` and the jars (our SPARK_HOME)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pyspark is not installed in this Python: run `make venv`")
    return Path(next(iter(spec.submodule_search_locations)))


def spark_uri(uri: str | Path) -> str:
    """The URI a Spark job reads: ``s3://b/p`` becomes ``s3a://b/p`` (Hadoop's S3 connector); paths stay."""
    text = str(uri)
    return "s3a://" + text.removeprefix("s3://") if text.startswith("s3://") else text


def scratch_uri() -> str:
    """Where Spark writes intermediate files every executor must reach (ALS checkpoints).

    ``RECFLOW_SPARK_SCRATCH`` (a shared URI: ``s3a://``, ``hdfs://`` or a path mounted on every host),
    else ``<lake>/_scratch`` when the lake is on the object store (so it follows the lake to S3), else
    ``<state>/spark-scratch`` (one machine). Why not a driver-local folder: on a multi-host cluster each
    executor would checkpoint to its own disk, and a lost executor's checkpoint would be unreadable.
    Nothing there is kept: an S3 lifecycle rule may expire ``_scratch/`` after a day.
    """
    explicit = os.environ.get("RECFLOW_SPARK_SCRATCH")
    if explicit:
        return spark_uri(explicit.rstrip("/"))
    lake = load_settings().lake_uri
    if lake.startswith("s3://"):
        return f"{spark_uri(lake.rstrip('/'))}/_scratch"
    return str(state_dir() / "spark-scratch")


def s3a_conf(s3: S3Settings) -> dict[str, str]:
    """Spark settings for ``s3a://`` on the configured object store (S3Proxy, MinIO or AWS S3).

    The endpoint and keys come from the environment the Airflow task renders from the ``recflow_s3``
    Connection (never from arguments); as Hadoop settings they reach the executors with each job, and
    Spark's UI redacts them (``spark.redaction.regex`` matches ``access.key`` and ``secret``). Path-style
    addressing, because S3-compatible servers rarely serve virtual-host buckets.
    """
    endpoint = s3.endpoint_url
    return {
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": s3.region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https://")).lower(),
        "spark.hadoop.fs.s3a.access.key": s3.access_key,
        "spark.hadoop.fs.s3a.secret.key": s3.secret_key,
        "spark.hadoop.fs.s3a.aws.credentials.provider": ("org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
    }


def get_spark(
    app_name: str,
    *,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    checkpoint_dir: Path | str | None = None,
) -> SparkSession:
    """Return a (possibly existing) session.

    ``master`` defaults to whatever ``spark-submit`` set (the Spark Connection's master), else
    ``local[*]`` for tests and notebooks. The checkpoint directory defaults to ``<scratch>/checkpoints``
    (:func:`scratch_uri`: on S3 next to an S3 lake). ``s3a://`` is configured for the object store in the
    environment, and a fault plan (``RECFLOW_FAULTS``) is passed on to the executors.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Not launched by spark-submit (which starts the JVM first and passes its port): run locally.
        builder = builder.master("local[*]")
    defaults = {
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.driver.memory": "4g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **s3a_conf(load_settings().s3),
        # a fault plan (RECFLOW_FAULTS) must reach executors a spark:// worker starts with its own env
        **{f"spark.executorEnv.{key}": value for key, value in fault_environment().items()},
    }
    for key, value in {**defaults, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    ckpt = str(checkpoint_dir or f"{scratch_uri()}/checkpoints")
    if "://" not in ckpt:
        Path(ckpt).mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(ckpt)  # Spark adds a folder per application
    return spark


@contextmanager
def session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """``settings`` on the session for the block, then each key back to what it was (or unset)."""
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)
