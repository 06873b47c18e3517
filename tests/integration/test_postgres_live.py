"""The opt-in PostgreSQL service for real: initdb as the server's user, a real ``SELECT 1``, a database
for Airflow, a fast clean stop that leaves no process. Uses its own state folder and a free port, so it
never touches a PostgreSQL that ``recflow services up --with-postgres`` started."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recflow.config.kafka import KafkaSettings
from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings, load_settings
from recflow.services import manager
from recflow.services.postgres import PostgresService, ServiceError, pg_bin_dir, psql_argv
from recflow.services.process import group_members, port_open

#: PostgreSQL's binaries are a hard dependency of the scheduler tests: without them this module fails with
#: ServiceError (saying how to install them), never skips.
pg_bin_dir()


#: Generated S3 keys for settings that never reach a server (no credential literal in the tests).
KEYS = (secrets.token_hex(4), secrets.token_hex(8))


@pytest.fixture
def state() -> Iterator[Path]:
    """A fresh state folder in the session folder: the ``postgres`` user must be able to enter it, which
    pytest's ``tmp_path`` (0700, owned by root) does not allow."""
    path = load_settings().lake_root.parent / f"pg-live-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_folder_the_server_user_cannot_enter_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root switches to the postgres user")
    with pytest.raises(ServiceError, match="cannot enter"):
        PostgresService(tmp_path / "deep", 1, password=secrets.token_hex(8)).prepare()


def test_up_query_down(state: Path) -> None:
    tmp_path = state
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = Settings(S3Settings("http://127.0.0.1:1", *KEYS), KafkaSettings("127.0.0.1:1"), tmp_path / "lake",
                        state=tmp_path)  # fmt: skip
    # a generated password with a quote in it: the SQL literal that sets it must escape it
    service = PostgresService(tmp_path, port, password=f"it's-{secrets.token_hex(6)}")
    try:
        assert manager.ensure_services_up(settings, services=[service], timeout=60) == ("postgres",)
        [row] = manager.service_status(settings, services=[service])
        assert row.state == "running" and row.detail.startswith("PostgreSQL "), row
        if os.geteuid() == 0:
            assert pwd.getpwuid(os.stat(f"/proc/{row.pid}").st_uid).pw_name == "postgres"
            assert pwd.getpwuid(service.data_dir.stat().st_uid).pw_name == "postgres"
        assert service.psql("SELECT 1") == "1"
        assert service.psql("SELECT datname FROM pg_database WHERE datname = 'airflow'") == "airflow"
        # The application role (not a superuser) logs in over TCP with the password, quote included.
        argv = psql_argv(pg_bin_dir(), port, "airflow", "SELECT current_user, rolsuper FROM pg_roles "
                         "WHERE rolname = current_user")  # fmt: skip
        argv[argv.index("--username") + 1] = "airflow"
        env = {**os.environ, "PGPASSWORD": service.password}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert (done.returncode, done.stdout.strip()) == (0, "airflow|f"), done.stderr
        env["PGPASSWORD"] = secrets.token_hex(8)  # any other password
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode != 0 and "password authentication failed" in done.stderr
        # Idempotent: a second ``up`` reuses the server and the cluster.
        assert manager.ensure_services_up(settings, services=[service], timeout=60) == ()
        assert manager.services_down(settings, services=[service]) == ("postgres",)
        assert group_members(row.pid) == [] and not port_open(port)
    finally:
        manager.services_down(settings, services=[service])
