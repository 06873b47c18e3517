"""Ingestion against the real object store: every bad input of issue 4, backfill idempotency, the DAG.

Landing, lake, quarantine and reports are ``s3://`` prefixes on the local S3 server, unique per test and
deleted afterwards. Each bad input must end in a clear error or a quarantine, and lose nothing:
``landed == accepted + quarantined`` is checked against what was actually written to S3.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.data import synthetic
from recflow.data.lake import S3Lake, split_s3
from recflow.data.landing import find_landing_file
from recflow.validation import (
    COL_REASON,
    LandingDayRequest,
    ValidationFailed,
    ValidationResult,
    lake_partition,
    validate_partition,
)

DAY = date(2026, 11, 3)
HEADER = b"event_id,user_id,item_id,event_ts,quantity,amount\n"


@dataclass
class Zone:
    """One test's landing / lake / quarantine / reports prefixes on the S3 server."""

    settings: Settings
    landing: str
    lake: str
    quarantine: str
    reports: str

    @property
    def client(self) -> Any:
        return s3_client(self.settings.s3)

    def land(self, day: date, body: bytes, name: str = "interactions.csv") -> str:
        bucket, key = split_s3(f"{self.landing}/date={day}/{name}")
        self.client.put_object(Bucket=bucket, Key=key, Body=body)
        return find_landing_file(self.landing, day, self.settings.s3)

    def validate(
        self, day: date, body: bytes | None = None, name: str = "interactions.csv", **kw: Any
    ) -> ValidationResult:
        uri = self.land(day, body, name) if body is not None else find_landing_file(self.landing, day, self.settings.s3)
        return validate_partition(LandingDayRequest(
            uri, day=day, lake_root=self.lake, quarantine_root=self.quarantine, reports_root=self.reports,
            s3=self.settings.s3, **kw,
        ))  # fmt: skip

    def failed(self, day: date, body: bytes, name: str = "interactions.csv", **kw: Any) -> ValidationResult:
        with pytest.raises(ValidationFailed) as info:
            self.validate(day, body, name, **kw)
        return info.value.result

    def read_parquet(self, uri: str) -> pd.DataFrame:
        bucket, key = split_s3(uri)
        return pd.read_parquet(io.BytesIO(self.client.get_object(Bucket=bucket, Key=key)["Body"].read()))

    def committed(self, root: str, partition: str, name: str) -> bytes:
        """A file of a committed partition, read the way readers must: through its commit."""
        bucket, key = split_s3(S3Lake(root, self.settings.s3).file_uri(partition, name))
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def quarantined(self, day: date, name: str) -> bytes:
        return self.committed(self.quarantine, f"date={day}", name)

    def rejects(self, day: date) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.quarantined(day, "rejects.parquet")))

    def accepted(self, day: date) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.committed(self.lake, lake_partition(day), "part-0.parquet")))

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        return "Contents" in self.client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)

    def report(self, day: date) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.quarantined(day, "report.json"))
        return doc


def _delete_prefix(client: Any, uri: str) -> None:
    bucket, key = split_s3(uri)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key}/"):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})


@pytest.fixture
def zone(live_services: Settings) -> Iterator[Zone]:
    run = f"test-ingest-{uuid.uuid4().hex[:10]}"
    s3 = live_services.s3
    z = Zone(
        settings=live_services,
        landing=f"s3://{s3.lake_bucket}/{run}/landing",
        lake=f"s3://{s3.lake_bucket}/{run}/lake",
        quarantine=f"s3://{s3.lake_bucket}/{run}/quarantine",
        reports=f"s3://{s3.reports_bucket}/{run}",
    )
    yield z
    client = z.client
    _delete_prefix(client, f"s3://{s3.lake_bucket}/{run}")
    _delete_prefix(client, z.reports)


@pytest.fixture(scope="module")
def clean_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 160 clean synthetic events of DAY as CSV (without the optional rating column)."""
    path = synthetic.write_day(DAY, tmp_path_factory.mktemp("gen"), events_per_day=2_000, n_users=300, n_items=40)
    df = pd.read_csv(path, dtype=str).drop(columns=["rating"])
    return df.to_csv(index=False).encode()


def _with_lines(clean: bytes, extra: list[bytes]) -> bytes:
    return clean + b"".join(line + b"\n" for line in extra)


def _reconciles(zone: Zone, r: ValidationResult) -> None:
    assert r.landed == r.accepted + r.quarantined
    assert len(zone.rejects(date.fromisoformat(r.day))) == r.quarantined
    if r.success:
        assert len(zone.accepted(date.fromisoformat(r.day))) == r.accepted


# ------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("body", "name"), [(b"", "interactions.csv"), (HEADER, "interactions.csv"),
                                            (gzip.compress(HEADER), "interactions.csv.gz")],
                         ids=["empty", "header-only", "header-only-gzip"])  # fmt: skip
def test_empty_file_or_header_only_is_quarantined_whole(zone: Zone, body: bytes, name: str) -> None:
    r = zone.failed(DAY, body, name)
    assert r.error and r.error.startswith("empty_file")
    assert r.landed == 0 and r.accepted == 0 and r.lake_path is None
    assert zone.quarantined(DAY, f"source-{name}") == body
    assert zone.report(DAY)["error"].startswith("empty_file")
    assert not zone.exists(f"{zone.lake}/{lake_partition(DAY)}")


@pytest.mark.parametrize(
    ("header", "missing", "extra"),
    [
        (b"event_id,user_id,item_id,event_ts,amount", ["quantity"], []),
        (b"event_id,user_id,item_id,event_ts,quantity,amount,store", [], ["store"]),
        (b"event_id,customer_id,item_id,event_ts,quantity,amount", ["user_id"], ["customer_id"]),
    ],
    ids=["missing", "extra", "renamed"],
)
def test_column_mismatch_names_the_columns(zone: Zone, header: bytes, missing: list[str], extra: list[str]) -> None:
    body = header + b"\ne1,u1,i1,2026-11-03T10:00:00Z,1,2.5\n"
    r = zone.failed(DAY, body)
    assert r.error and r.error.startswith("schema_mismatch")
    for col in missing + extra:
        assert col in r.error
    assert zone.quarantined(DAY, "source-interactions.csv") == body, "the quarantined copy must be the delivered bytes"


def test_wrong_types_and_null_keys_are_row_rejects(zone: Zone, clean_csv: bytes) -> None:
    bad = [
        b"x1,u1,i1,not-a-time,1,2.5",
        b"x2,u1,i1,2026-11-03T10:00:00Z,one,2.5",
        b"x3,u1,i1,2026-11-03T10:00:00Z,1,cheap",
        b",u1,i1,2026-11-03T10:00:00Z,1,2.5",
        b"x5,,i1,2026-11-03T10:00:00Z,1,2.5",
        b"x6,u1,,2026-11-03T10:00:00Z,1,2.5",
    ]
    r = zone.validate(DAY, _with_lines(clean_csv, bad), threshold=0.01)
    _reconciles(zone, r)
    assert r.quarantined == len(bad)
    reasons = set(";".join(zone.rejects(DAY)[COL_REASON]).split(";"))
    assert {"event_ts_unparsable", "quantity_not_integer", "amount_not_numeric",
            "null_event_id", "null_user_id", "null_item_id"} <= reasons  # fmt: skip


def test_negative_or_absurd_amounts_are_row_rejects(zone: Zone, clean_csv: bytes) -> None:
    bad = [b"a1,u1,i1,2026-11-03T10:00:00Z,1,-5", b"a2,u1,i1,2026-11-03T10:00:00Z,1,1e12",
           b"a3,u1,i1,2026-11-03T10:00:00Z,1,0", b"a4,u1,i1,2026-11-03T10:00:00Z,-2,5"]  # fmt: skip
    r = zone.validate(DAY, _with_lines(clean_csv, bad))
    _reconciles(zone, r)
    rej = zone.rejects(DAY).set_index("event_id")[COL_REASON]
    assert rej[["a1", "a2", "a3"]].str.contains("amount_out_of_range").all()
    assert "quantity_out_of_range" in rej["a4"]


def test_duplicate_event_ids_within_a_day_and_across_days(zone: Zone, clean_csv: bytes) -> None:
    first_line = clean_csv.splitlines()[1]
    r1 = zone.validate(DAY, _with_lines(clean_csv, [first_line, first_line]))
    _reconciles(zone, r1)
    assert r1.reason_counts.get("duplicate_event_id") == 2
    assert zone.accepted(DAY)["event_id"].is_unique

    # The next day re-sends three of DAY's events (timestamps moved into its interval).
    nxt = DAY + timedelta(days=1)
    day_rows = pd.read_csv(io.BytesIO(clean_csv), dtype=str)
    resent = day_rows.head(3).assign(event_ts="2026-11-04T12:00:00Z")
    fresh = day_rows.iloc[3:].assign(
        event_id=lambda d: d["event_id"] + "-n",
        event_ts=lambda d: d["event_ts"].str.replace("2026-11-03", "2026-11-04"),
    )
    r2 = zone.validate(nxt, pd.concat([fresh, resent]).to_csv(index=False).encode())
    _reconciles(zone, r2)
    assert r2.reason_counts.get("duplicate_event_id_across_days") == 3


def test_timestamps_outside_the_interval_or_in_the_future(zone: Zone, clean_csv: bytes) -> None:
    bad = [b"t1,u1,i1,2026-11-02T23:59:59Z,1,2", b"t2,u1,i1,2026-11-04T00:00:00Z,1,2",
           b"t3,u1,i1,2031-01-01T00:00:00Z,1,2"]  # fmt: skip
    r = zone.validate(DAY, _with_lines(clean_csv, bad))
    _reconciles(zone, r)
    rej = zone.rejects(DAY).set_index("event_id")[COL_REASON]
    assert rej["t1"] == "event_ts_before_interval"
    assert rej["t2"] == "event_ts_in_future" and rej["t3"] == "event_ts_in_future"


def test_non_utf8_bytes_are_kept_verbatim_in_quarantine(zone: Zone, clean_csv: bytes) -> None:
    raw = b"n1,u\xff\xfe1,i1,2026-11-03T10:00:00Z,1,2"
    r = zone.validate(DAY, _with_lines(clean_csv, [raw]))
    _reconciles(zone, r)
    rej = zone.rejects(DAY)
    assert list(rej[COL_REASON]) == ["non_utf8_line"]
    assert rej["raw_line"].iloc[0].encode("utf-8").decode("unicode_escape").encode("latin-1") == raw


def test_truncated_gzip_is_quarantined_whole(zone: Zone, clean_csv: bytes) -> None:
    full = gzip.compress(clean_csv)
    truncated = full[: len(full) // 2]
    r = zone.failed(DAY, truncated, "interactions.csv.gz")
    assert r.error and r.error.startswith("corrupt_file")
    assert r.accepted == 0 and r.landed == r.quarantined  # rows read before the cut are held, not published
    assert not zone.exists(f"{zone.lake}/{lake_partition(DAY)}")
    assert zone.quarantined(DAY, "source-interactions.csv.gz") == truncated


def test_redelivery_replaces_the_partition(zone: Zone, clean_csv: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_LAKE_GRACE_SECONDS", "0")  # superseded attempts go at once
    r1 = zone.validate(DAY, clean_csv)
    lake = S3Lake(zone.lake, zone.settings.s3)
    run1 = lake.manifest(lake_partition(DAY))
    shorter = b"\n".join(clean_csv.splitlines()[:1001]) + b"\n"
    r2 = zone.validate(DAY, shorter)
    run2 = lake.manifest(lake_partition(DAY))
    assert r1.accepted > r2.accepted == 1000
    assert run1 and run2 and run1["attempt"] != run2["attempt"] and run2["rows"] == 1000
    df = zone.accepted(DAY)
    assert len(df) == 1000 and df["event_id"].is_unique
    keys = zone.client.list_objects_v2(Bucket=lake.bucket, Prefix=f"{lake.prefix}/")["Contents"]
    part = lake_partition(DAY)
    assert sorted(k["Key"][len(lake.prefix) + 1 :] for k in keys) == [
        f"_attempts/{part}/{run2['attempt']}/{part}/part-0.parquet",
        f"_commits/{part}.json",
        f"{part}/_SUCCESS",
    ], "stale or staged objects"


def test_too_many_bad_rows_fail_with_a_summary_and_data_docs(zone: Zone, clean_csv: bytes) -> None:
    bad = [b"b%d,u1,i1,2026-11-03T10:00:00Z,1,-1" % i for i in range(100)]  # ~4.4 % > 1 %
    r = zone.failed(DAY, _with_lines(clean_csv, bad))
    _reconciles(zone, r)
    assert r.accepted == 0 and r.quarantined == r.landed
    assert "amount_out_of_range" in str(ValidationFailed(r)) and "-1.0" in str(ValidationFailed(r))
    assert r.data_docs_uri and r.data_docs_uri.startswith(zone.reports)
    bucket, key = split_s3(r.data_docs_uri)
    page = zone.client.get_object(Bucket=bucket, Key=key)
    assert page["ContentType"] == "text/html" and b"raw_interactions" in page["Body"].read()


# --------------------------------------------------------------------------------- large file streamed

_STREAM_PROBE = """
import json, sys, logging
from datetime import date
logging.disable(logging.INFO)
from recflow.config.settings import load_settings
from recflow.validation import LandingDayRequest, validate_partition
r = validate_partition(LandingDayRequest(sys.argv[1], day=date(2026, 11, 3), lake_root=sys.argv[2],
                       s3=load_settings().s3, chunk_bytes=4 * 1024 * 1024, gx_sample_rows=20_000, data_docs=False))
print(json.dumps({"landed": r.landed, "accepted": r.accepted}))
"""


def _big_csv_gz(rows: int) -> bytes:
    """A gzip CSV of ``rows`` valid events, built fast (vectorised text, gzip level 1)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as gz:
        gz.write(HEADER)
        step = 200_000
        for start in range(0, rows, step):
            n = min(step, rows - start)
            gz.write("".join(
                f"e{i:09d},u{i % 7919:05d},i{i % 311:03d},"
                f"2026-11-03T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z,"
                f"{1 + i % 3},{(i % 9973) / 100 + 1:.2f}\n"
                for i in range(start, start + n)
            ).encode())  # fmt: skip
    return out.getvalue()


def test_a_file_larger_than_memory_allows_is_streamed(zone: Zone) -> None:
    """2.5 M rows (~150 MB of CSV, ~1.5 GB as a pandas frame of strings) streamed from S3 in 4 MiB chunks,
    in a fresh interpreter: every row lands. The memory goal (peak RSS flat as the input grows) is measured
    by ``make bench-data``, not asserted here."""
    rows = 2_500_000
    body = _big_csv_gz(rows)
    uri = zone.land(DAY, body, "interactions.csv.gz")
    out = subprocess.run([sys.executable, "-c", _STREAM_PROBE, uri, zone.lake], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["landed"] == probe["accepted"] == rows


# --------------------------------------------------------------------------------------- backfill


def test_seven_day_backfill_twice_leaves_identical_partitions(zone: Zone, tmp_path: Path) -> None:
    days = [DAY + timedelta(days=i) for i in range(7)]
    for d in days:
        path = synthetic.write_day(d, tmp_path, events_per_day=1_500, n_users=300, n_items=40)
        bucket, key = split_s3(f"{zone.landing}/date={d}/{path.name}")
        zone.client.upload_file(str(path), bucket, key)
    lake = S3Lake(zone.lake, zone.settings.s3)
    quarantine = S3Lake(zone.quarantine, zone.settings.s3)

    def backfill() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        for d in days:
            zone.validate(d)
        parts = {str(d): lake.files(lake_partition(d)) for d in days}
        rejects = {str(d): quarantine.files(f"date={d}")["rejects.parquet"] for d in days}
        return parts, rejects

    first = backfill()
    second = backfill()
    assert first == second, "a re-run must leave byte-identical partitions"
    ids = pd.concat([zone.accepted(d)["event_id"] for d in days])
    assert ids.is_unique and len(ids) == sum(lake.partition_rows(lake_partition(d)) or 0 for d in days)


# ---------------------------------------------------------------------------------------- the DAG


def test_dag_run_on_a_bad_partition_fails_at_validate_with_data_docs(
    zone: Zone, clean_csv: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dag.test()`` of ingest_interactions on S3 URIs: the validate task fails (no retries: the same
    bytes would fail again), the summary and Data Docs URI are in XCom, and the Data Docs page exists."""
    from datetime import UTC, datetime

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session

    for var, uri in (("RECFLOW_LANDING", zone.landing), ("RECFLOW_LAKE", zone.lake),
                     ("RECFLOW_QUARANTINE", zone.quarantine), ("RECFLOW_REPORTS", zone.reports)):  # fmt: skip
        monkeypatch.setenv(var, uri)
    zone.land(DAY, _with_lines(clean_csv, [b"b%d,u1,i1,2026-11-03T10:00:00Z,1,-1" % i for i in range(100)]))
    initdb()
    dag_file = Path(__file__).resolve().parents[2] / "dags" / "ingest_interactions.py"
    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("ingest_interactions")
    assert dag is not None
    run = dag.test(logical_date=datetime(2026, 11, 4, 1, tzinfo=UTC), run_conf={"reason": "integration test"})

    assert run.state == "failed"
    with create_session() as session:
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        rows = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=run.run_id, key="validation").all()
        summaries = [XComModel.deserialize_value(x) for x in rows]
    assert states == {"validate": "failed", "announce": "upstream_failed"}
    assert len(summaries) == 1 and summaries[0]["day"] == str(DAY) and not summaries[0]["success"]
    assert "amount_out_of_range" in summaries[0]["failed"] and "row_reject_share" in summaries[0]["failed"]
    uri = summaries[0]["data_docs_uri"]
    assert uri and uri.startswith(f"{zone.reports}/raw_interactions/date={DAY}/")
    bucket, key = split_s3(uri)
    assert zone.client.head_object(Bucket=bucket, Key=key)["ContentType"] == "text/html"
    assert not zone.exists(f"{zone.lake}/{lake_partition(DAY)}")
