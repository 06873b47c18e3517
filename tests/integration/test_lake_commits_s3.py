"""Spark reads an S3 lake only through its commits (``s3a://``, the path the cluster's jobs take).

Spark runs in a process of its own, as a job does: the s3a jars must be on the driver's class path when
its JVM starts, and an earlier test of the suite may already have started this process's JVM without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from lake_support import publish_users_day, scratch_s3_lake

from recflow.config.settings import Settings
from recflow.constants import COL_DATE
from recflow.data.lake import S3Lake
from recflow.services.faults import InjectedFault

pytestmark = pytest.mark.slow

#: Reads one table through the commits with a fresh JVM and prints its rows as JSON lines.
READER = textwrap.dedent(
    """
    import json, sys
    from recflow.data.spark_lake import read_table
    from recflow.services.maven import spark_s3a_jars
    from recflow.spark.session import get_spark

    jars = ",".join(str(j) for j in spark_s3a_jars())
    spark = get_spark("test-lake-commits-s3", master="local[1]", conf={"spark.jars": jars})
    for row in read_table(spark, sys.argv[1], sys.argv[2], sys.argv[3]).collect():
        print(json.dumps(row.asDict(), default=str))
    spark.stop()
    """
)


def _spark_rows(root: str, table: str, partition_column: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", READER, root, table, partition_column], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def lake(live_services: Settings) -> Iterator[S3Lake]:
    with scratch_s3_lake(live_services, "commits") as scratch:
        yield scratch


def test_spark_sees_only_committed_attempts(lake: S3Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d1, d2 = date(2026, 11, 3), date(2026, 11, 4)
    publish_users_day(lake, tmp_path, d1, ["a", "b"])
    publish_users_day(lake, tmp_path, d2, ["c"])
    publish_users_day(lake, tmp_path, d2, ["d"])  # replaces day 2; the superseded attempt stays for the grace period
    monkeypatch.setenv("RECFLOW_FAULTS", "lake.publish.before_commit=raise:crash")
    with pytest.raises(InjectedFault):
        publish_users_day(lake, tmp_path, d1, ["never"])  # uploaded, never committed
    monkeypatch.delenv("RECFLOW_FAULTS")
    rows = _spark_rows("s3a://" + lake.root.removeprefix("s3://"), "interactions", COL_DATE)
    assert sorted((r["user_id"], r[COL_DATE]) for r in rows) == [("a", str(d1)), ("b", str(d1)), ("d", str(d2))]
