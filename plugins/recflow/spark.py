"""The one factory for Spark sessions, used by every job and test.

Why a factory: Python workers must run the driver's interpreter (the venv that has recflow and pandas),
ALS needs a checkpoint directory to keep long lineages off the stack, and tests want a small, quiet,
UI-less session. Doing that in one place keeps the jobs thin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from recflow.config import state_dir

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def get_spark(
    app_name: str,
    *,
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    checkpoint_dir: Path | None = None,
) -> SparkSession:
    """Return a (possibly existing) session.

    ``master`` defaults to whatever ``spark-submit`` set, else ``local[*]``. The checkpoint directory
    defaults to ``<state>/spark-checkpoints``.
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
    }
    for key, value in {**defaults, **dict(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    ckpt = checkpoint_dir or state_dir() / "spark-checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    spark.sparkContext.setCheckpointDir(str(ckpt))
    return spark
