"""Cluster-mode configuration: the Spark standalone daemons, the job zip, ``s3a://`` settings."""

from __future__ import annotations

import secrets
import zipfile
from pathlib import Path

import pytest

import recflow
from recflow.config.s3 import S3Settings
from recflow.services.local_airflow import airflow_env
from recflow.services.spark import MASTER_CLASS, WORKER_CLASS, master_url, spark_services
from recflow.spark.packaging import job_archive, sources_digest
from recflow.spark.session import s3a_conf, spark_uri

#: Generated S3 keys for settings that never reach a server (no credential literal in the tests).
KEYS = (secrets.token_hex(4), secrets.token_hex(8))


def test_spark_daemons_listen_on_the_configured_ports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, port in {"MASTER": 20411, "MASTER_UI": 20412, "WORKER": 20413, "WORKER_UI": 20414}.items():
        monkeypatch.setenv(f"RECFLOW_SPARK_{name}_PORT", str(port))
    monkeypatch.setenv("RECFLOW_SPARK_WORKER_CORES", "3")
    master, worker = spark_services(tmp_path)
    assert master.ports == (20411, 20412) and worker.ports == (20413, 20414)
    argv = master.prepare()  # the JVM command bin/spark-class would exec, from Spark's launcher
    assert argv[0].endswith("/java") and "-cp" in argv
    assert argv[argv.index(MASTER_CLASS) :] == [
        MASTER_CLASS, "--host", "127.0.0.1", "--port", "20411", "--webui-port", "20412",
    ]  # fmt: skip
    assert master.environment()["SPARK_HOME"] in argv[argv.index("-cp") + 1]
    argv = worker.prepare()
    assert argv[argv.index(WORKER_CLASS) + 1] == "spark://127.0.0.1:20411"
    assert argv[argv.index("--port") + 1] == "20413" and argv[argv.index("--cores") + 1] == "3"
    assert master_url() == "spark://127.0.0.1:20411"


def test_spark_defaults_stay_off_airflows_8080(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MASTER", "MASTER_UI", "WORKER", "WORKER_UI"):
        monkeypatch.delenv(f"RECFLOW_SPARK_{name}_PORT", raising=False)
    master, worker = spark_services(tmp_path)
    assert master.port == 7077 and 8080 not in (*master.ports, *worker.ports)


def test_the_spark_connection_follows_recflow_spark_master() -> None:
    assert '"host": "local[*]"' in airflow_env(environ={})["AIRFLOW_CONN_SPARK_DEFAULT"]
    env = airflow_env(environ={"RECFLOW_SPARK_MASTER": "spark://10.1.2.3:7077"})
    assert '"host": "spark://10.1.2.3:7077"' in env["AIRFLOW_CONN_SPARK_DEFAULT"]


def test_job_archive_holds_the_package_and_is_reused(tmp_path: Path) -> None:
    first = job_archive(out_dir=tmp_path)
    assert first.name == f"recflow-{sources_digest()[:16]}.zip"
    with zipfile.ZipFile(first) as archive:
        names = set(archive.namelist())
    package = Path(recflow.__file__).resolve().parent
    every_module = {f"recflow/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    assert {"recflow/__init__.py", "recflow/training/flow.py", "recflow/spark/session.py"} <= every_module
    assert every_module <= names, f"missing from the --py-files zip: {sorted(every_module - names)}"
    assert not any("__pycache__" in n for n in names)
    mtime = first.stat().st_mtime_ns
    assert job_archive(out_dir=tmp_path) == first and first.stat().st_mtime_ns == mtime


def test_job_archive_changes_with_the_sources(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "recflow"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("A = 1\n")
    one = job_archive(pkg, tmp_path / "dist")
    (pkg / "__init__.py").write_text("A = 2\n")
    two = job_archive(pkg, tmp_path / "dist")
    assert one != two and one.is_file() and two.is_file()


def test_spark_reads_s3_lakes_through_s3a_and_paths_unchanged() -> None:
    assert spark_uri("s3://recflow-lake/lake") == "s3a://recflow-lake/lake"
    assert spark_uri(Path("/data/lake")) == "/data/lake"
    assert spark_uri("s3a://b/p") == "s3a://b/p"


def test_s3a_settings_come_from_the_s3_settings() -> None:
    conf = s3a_conf(S3Settings("http://127.0.0.1:9000", *KEYS, region="eu-west-1"))
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert (conf["spark.hadoop.fs.s3a.access.key"], conf["spark.hadoop.fs.s3a.secret.key"]) == KEYS
    assert s3a_conf(S3Settings("https://s3.amazonaws.com", *KEYS))["spark.hadoop.fs.s3a.connection.ssl.enabled"] == (
        "true"
    )


def test_spark_scratch_follows_the_lake_to_s3_or_a_configured_shared_uri(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from recflow.spark.session import scratch_uri

    monkeypatch.delenv("RECFLOW_SPARK_SCRATCH", raising=False)
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.setenv("RECFLOW_LAKE", "s3://recflow-lake/prod/lake/")
    assert scratch_uri() == "s3a://recflow-lake/prod/lake/_scratch"
    monkeypatch.setenv("RECFLOW_LAKE", str(tmp_path / "lake"))
    assert scratch_uri() == str(tmp_path / "spark-scratch")  # one machine: the state folder
    monkeypatch.setenv("RECFLOW_SPARK_SCRATCH", "hdfs://nn:8020/recflow/scratch/")
    assert scratch_uri() == "hdfs://nn:8020/recflow/scratch"
    monkeypatch.setenv("RECFLOW_SPARK_SCRATCH", "s3://shared/scratch")
    assert scratch_uri() == "s3a://shared/scratch"


def test_s3_lake_staging_goes_under_recflow_staging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from recflow.data.lake import S3Lake, staging_root

    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("RECFLOW_STAGING", raising=False)
    assert staging_root() == tmp_path / "state" / "tmp"
    monkeypatch.setenv("RECFLOW_STAGING", str(tmp_path / "shared"))
    lake = S3Lake("s3://b/lake", client=object())  # type: ignore[arg-type]  # staging never calls S3
    folder = lake.staging()
    assert folder.parent == tmp_path / "shared" and folder.is_dir()


def test_the_scheduler_settings_for_few_cores_apply_unless_the_user_set_them() -> None:
    from recflow.services.local_airflow import SCHEDULING

    env = airflow_env(environ={})
    assert {key: env[key] for key in SCHEDULING} == SCHEDULING
    mine = airflow_env(environ={"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1"})
    assert mine["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "1"


def test_training_output_goes_under_recflow_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from recflow.config.settings import runs_root

    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("RECFLOW_RUNS", raising=False)
    assert runs_root() == tmp_path / "state" / "runs"
    monkeypatch.setenv("RECFLOW_RUNS", "/mnt/shared/runs")
    assert runs_root() == Path("/mnt/shared/runs")
