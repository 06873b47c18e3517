"""Spark reads of a committed lake table: the same DataFrame on a local lake and on S3.

Why: readers go only through a partition's commit. On a local lake the partition path is a link to the
committed attempt, so ``spark.read.parquet(<lake>/<table>)`` already does (and discovers the
``<key>=<value>`` partition column). On S3 there are no links: the committed files sit under
``_attempts/`` (which Spark skips), so the driver lists the committed partitions, hands Spark exactly
their files, and adds the partition column from each file's path, as discovery would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recflow.config.s3 import S3Settings
from recflow.data.locations import is_s3
from recflow.data.s3_lake import S3Lake

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def committed_parquet(lake_root: str | Path, table: str, s3: S3Settings | None = None) -> list[str]:
    """``s3a://`` URIs of every committed Parquet file of ``table`` on an S3 lake, sorted."""
    lake = S3Lake("s3://" + str(lake_root).split("://", 1)[1], s3)
    uris = [uri for part in lake.partitions(table) for uri in lake.parquet_uris(part)]
    return sorted("s3a://" + uri.removeprefix("s3://") for uri in uris)


def read_table(
    spark: SparkSession, lake_root: str | Path, table: str, partition_key: str, s3: S3Settings | None = None
) -> DataFrame:
    """The committed rows of ``table`` with its ``partition_key`` column (a date), through the commits.

    Raises FileNotFoundError when an S3 table has no committed partition (Spark raises its
    AnalysisException for an empty local one)."""
    root = str(lake_root).rstrip("/")
    if not is_s3(root):
        return spark.read.parquet(f"{root}/{table}")
    from pyspark.sql import functions as F

    files = committed_parquet(root, table, s3)
    if not files:
        raise FileNotFoundError(f"no committed partition of {table} under {root}")
    value = F.regexp_extract(F.input_file_name(), rf"/{table}/{partition_key}=([^/]+)/", 1)
    return spark.read.parquet(*files).withColumn(partition_key, value.cast("date"))
