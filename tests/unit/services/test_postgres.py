"""The opt-in PostgreSQL service without a server: pinned command lines, binary lookup, names, and how the
manager treats an optional service (started on request, stopped with its own signal, as its own user)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from recflow.config.kafka import KafkaSettings
from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings
from recflow.services import manager
from recflow.services.postgres import (
    PostgresService,
    ServiceError,
    initdb_argv,
    pg_bin_dir,
    psql_argv,
    server_argv,
)
from recflow.services.process import as_user, group_members, port_open

#: Generated S3 keys for settings that never reach a server (no credential literal in the tests).
KEYS = (secrets.token_hex(4), secrets.token_hex(8))

BIN = Path("/usr/lib/postgresql/15/bin")


def test_server_argv_listens_on_loopback_only_without_a_socket() -> None:
    assert server_argv(BIN, Path("/s/postgres/data"), 5433) == [
        "/usr/lib/postgresql/15/bin/postgres",
        "-D", "/s/postgres/data",
        "-p", "5433",
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",
        "-c", "max_connections=200",
        "-c", "logging_collector=off",
    ]  # fmt: skip


def test_initdb_argv_reads_the_password_from_a_file() -> None:
    argv = initdb_argv(BIN, Path("/s/data"), Path("/s/initdb.pw"))
    assert argv == [
        "/usr/lib/postgresql/15/bin/initdb",
        "--pgdata", "/s/data",
        "--username", "postgres",
        "--pwfile", "/s/initdb.pw",
        "--auth-host", "scram-sha-256",
        "--auth-local", "scram-sha-256",
        "--encoding", "UTF8",
        "--locale", "C.UTF-8",
        "--no-instructions",
    ]  # fmt: skip


def test_psql_argv_keeps_the_password_off_the_command_line() -> None:
    password = secrets.token_hex(8)
    service = PostgresService(Path("/s"), 5433, password=password)
    argv = psql_argv(BIN, 5433, "postgres", "SELECT 1")
    assert argv[-2:] == ["--command", "SELECT 1"]
    assert argv[argv.index("--host") : argv.index("--host") + 2] == ["--host", "127.0.0.1"]
    assert not any(password in part for part in argv)
    assert password not in repr(service)


def test_newest_debian_version_wins(tmp_path: Path) -> None:
    for major in ("9", "15", "13"):
        (tmp_path / major / "bin").mkdir(parents=True)
        (tmp_path / major / "bin" / "initdb").touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)  # no initdb: a client-only install
    assert pg_bin_dir(tmp_path) == tmp_path / "15" / "bin"


def test_missing_binaries_name_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="apt-get install postgresql"):
        pg_bin_dir(tmp_path / "none")


def test_sqlalchemy_url_and_unsafe_names() -> None:
    password = secrets.token_hex(8)
    service = PostgresService(Path("/s"), 15433, password=password)
    assert (
        service.sqlalchemy_url("airflow_t1") == f"postgresql+psycopg2://airflow:{password}@127.0.0.1:15433/airflow_t1"
    )
    for bad in ("Airflow", "a-b", "x; DROP DATABASE postgres", ""):
        with pytest.raises(ValueError, match="invalid PostgreSQL identifier"):
            service.sqlalchemy_url(bad)


def test_runs_as_postgres_only_when_root() -> None:
    service = PostgresService(Path("/s"), 5433, password=secrets.token_hex(8))
    assert service.stop_signal == signal.SIGINT  # fast shutdown; SIGTERM waits for clients
    assert service.run_as == ("postgres" if os.geteuid() == 0 else None)
    assert as_user(None) == {}


def test_postgres_is_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECFLOW_PG_PORT", "15999")
    settings = _settings(tmp_path)
    assert "postgres" not in [s.name for s in manager.default_services(settings)]
    pg, *others = manager.optional_services(settings)
    assert isinstance(pg, PostgresService) and pg.port == 15999
    assert [s.name for s in others] == ["spark-master", "spark-worker"]  # the other opt-in services
    # Not running: ``status`` and ``down`` leave it out (its port may belong to someone else).
    assert "postgres" not in [s.name for s in manager._known_services(settings)]


# --- the manager honours an optional service's stop signal -------------------------------------------


@dataclass(frozen=True)
class SigintOnlyService:
    """A stand-in server that ignores SIGTERM and exits cleanly on SIGINT (as PostgreSQL's fast shutdown)."""

    state: Path
    port: int
    name: str = "sigint-only"
    stop_signal: signal.Signals = signal.SIGINT

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def home(self) -> Path:
        path = self.state / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prepare(self) -> list[str]:
        code = (
            "import os, signal, http.server\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"def on_int(*_):\n    open({str(self.home / 'stopped-by')!r}, 'w').write('SIGINT')\n    os._exit(0)\n"
            "signal.signal(signal.SIGINT, on_int)\n"
            f"http.server.HTTPServer(('127.0.0.1', {self.port}), http.server.SimpleHTTPRequestHandler).serve_forever()"
        )
        return [sys.executable, "-c", code]

    def probe(self, timeout: float = 5.0) -> str:
        if not port_open(self.port):
            raise ServiceError("not listening")
        return "listening"

    def provision(self) -> None:
        pass


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        s3=S3Settings("http://127.0.0.1:1", *KEYS),
        kafka=KafkaSettings("127.0.0.1:1"),
        lake_root=tmp_path / "lake",
        state=tmp_path,
    )


def test_down_uses_the_services_stop_signal(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = _settings(tmp_path)
    service = SigintOnlyService(tmp_path, port)
    try:
        assert manager.ensure_services_up(settings, services=[service], timeout=20) == ("sigint-only",)
        [row] = manager.service_status(settings, services=[service])
        assert row.pid is not None
        assert manager.services_down(settings, services=[service]) == ("sigint-only",)
        # SIGTERM is ignored: a SIGTERM first would end in SIGKILL 20 s later, and no handler would run.
        assert (service.home / "stopped-by").read_text() == "SIGINT"
        assert group_members(row.pid) == []
    finally:
        manager.services_down(settings, services=[service])


def test_cli_starts_the_optional_service_only_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recflow.cli import main as cli

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    settings = _settings(tmp_path)
    optional = SigintOnlyService(tmp_path, port)
    # `services down` also stops a streaming scorer found under the state folder: never the real one.
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.setattr(manager, "load_settings", lambda: settings)
    monkeypatch.setattr(manager, "default_services", lambda settings=None: [])
    monkeypatch.setattr(manager, "optional_services", lambda settings=None: [optional])
    monkeypatch.setattr(manager, "postgres_service", lambda settings=None: optional)
    try:
        assert cli.main(["services", "up", "--timeout", "20"]) == 0
        assert not port_open(port), "plain `up` must not start the optional service"
        assert cli.main(["services", "up", "--with-postgres", "--timeout", "20"]) == 0
        assert [row.name for row in manager.service_status(settings)] == ["sigint-only"]  # running: listed
        assert cli.main(["services", "down"]) == 0  # stops it too
        assert not port_open(port) and manager.service_status(settings) == []
    finally:
        manager.services_down(settings, services=[optional])
