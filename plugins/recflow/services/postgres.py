"""PostgreSQL (Debian's package) as an opt-in local service: the Airflow metadata DB for the real scheduler.

Why opt-in: SQLite is the embedded default (``airflow dags test``, the demo); only the scheduler path
(``airflow scheduler`` + LocalExecutor + ``airflow backfill create``) needs a database that several
processes write at once. ``recflow services up --with-postgres`` or a test fixture asks for it.

Why these choices:

* The cluster lives under ``<state>/postgres/data`` (``initdb`` once), owned by the ``postgres`` system
  user when we run as root, because the server refuses to run as root.
* It listens on 127.0.0.1 only, with no Unix socket (nothing to place in ``/var/run``), and password
  (SCRAM) authentication; the password comes from ``RECFLOW_PG_PASSWORD`` or else the state folder's
  generated credentials (:mod:`recflow.config.credentials`), and reaches ``initdb`` through
  a private file and ``psql`` through ``PGPASSWORD``, never a command line.
* Health is a real query (``SELECT 1`` through ``psql``), so the core needs no Python driver.
* SIGINT ("fast shutdown") stops it: SIGTERM would wait for every client to disconnect.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from recflow.services.process import LOCALHOST, ServiceError, as_user

log = logging.getLogger(__name__)

#: The system user that owns the cluster when recflow runs as root (Debian's package creates it).
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
#: Role and database Airflow uses (the role owns the database; it is not a superuser).
APP_ROLE = "airflow"
APP_DB = "airflow"
MAX_CONNECTIONS = 200  # scheduler, API server, DAG processor and executor workers each hold a pool
#: Written after ``initdb``; renamed when the password stopped being a fixed default, so a cluster made
#: with that published password is re-created once (it holds only local, disposable Airflow metadata).
_INITDB_STAMP = "initdb-done-generated-password"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

INSTALL_HINT = "install PostgreSQL (Debian: apt-get install postgresql; .ci/run does it)"


def pg_bin_dir(search_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The folder with ``initdb``/``postgres``/``psql``: the newest Debian version, else ``initdb`` on PATH.

    Why not PATH first: Debian keeps the server binaries in ``/usr/lib/postgresql/<major>/bin`` and puts
    only wrapper scripts (``pg_wrapper``) on PATH.
    """
    versions = sorted(
        (p for p in search_root.glob("*/bin") if (p / "initdb").is_file() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise ServiceError(f"PostgreSQL server binaries (initdb) not found: {INSTALL_HINT}")


def run_as_user() -> str | None:
    """``postgres`` when we are root (the server refuses root), else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise ServiceError(f"running as root but there is no {SYSTEM_USER!r} system user: {INSTALL_HINT}") from exc
    return SYSTEM_USER


def initdb_argv(bin_dir: Path, data_dir: Path, pwfile: Path) -> list[str]:
    """Create the cluster: UTF-8, the superuser's password from ``pwfile``, SCRAM on every connection."""
    return [
        str(bin_dir / "initdb"),
        "--pgdata", str(data_dir),
        "--username", SUPERUSER,
        "--pwfile", str(pwfile),
        "--auth-host", "scram-sha-256",
        "--auth-local", "scram-sha-256",
        "--encoding", "UTF8",
        "--locale", "C.UTF-8",
        "--no-instructions",
    ]  # fmt: skip


def server_argv(bin_dir: Path, data_dir: Path, port: int) -> list[str]:
    """Run the server in the foreground (the manager detaches it) on 127.0.0.1 only, no Unix socket."""
    return [
        str(bin_dir / "postgres"),
        "-D", str(data_dir),
        "-p", str(port),
        "-c", f"listen_addresses={LOCALHOST}",
        "-c", "unix_socket_directories=",
        "-c", f"max_connections={MAX_CONNECTIONS}",
        "-c", "logging_collector=off",
    ]  # fmt: skip


def psql_argv(bin_dir: Path, port: int, database: str, sql: str | None = None) -> list[str]:
    """``psql`` over TCP as the superuser; ``sql`` as ``-c``, else the script comes on stdin."""
    argv = [
        str(bin_dir / "psql"),
        "--no-psqlrc", "--no-align", "--tuples-only", "--quiet",
        "--set", "ON_ERROR_STOP=1",
        "--host", LOCALHOST,
        "--port", str(port),
        "--username", SUPERUSER,
        "--dbname", database,
    ]  # fmt: skip
    return [*argv, "--command", sql] if sql is not None else argv


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A database or role name we create: checked rather than quoted, so it is safe in SQL and URLs."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid PostgreSQL identifier {name!r}: use lower-case letters, digits, _")
    return name


def _check_reachable(path: Path, user: str) -> None:
    """Fail clearly when ``user`` cannot enter ``path`` (a 0700 parent, e.g. pytest's ``tmp_path`` as root)."""
    probe = subprocess.run(["test", "-x", str(path)], check=False, timeout=10, **as_user(user))
    if probe.returncode != 0:
        raise ServiceError(
            f"the {user!r} user cannot enter {path}: every parent folder must be traversable by it (o+x); "
            "point RECFLOW_STATE at such a folder"
        )


@dataclass(frozen=True)
class PostgresService:
    """The cluster as a managed service: files under ``<state>/postgres``, data in ``<state>/postgres/data``."""

    state: Path
    port: int
    password: str = field(repr=False)
    name: str = "postgres"
    #: Read by the manager: stop with a fast shutdown, run as the cluster's owner.
    stop_signal: signal.Signals = signal.SIGINT

    @property
    def run_as(self) -> str | None:
        return run_as_user()

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def home(self) -> Path:
        return self.state / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def sqlalchemy_url(self, database: str = APP_DB, *, driver: str = "psycopg2") -> str:
        """The URL Airflow's ``[database] sql_alchemy_conn`` takes, as the application role."""
        return f"postgresql+{driver}://{APP_ROLE}:{self.password}@{LOCALHOST}:{self.port}/{_ident(database)}"

    def prepare(self) -> list[str]:
        """``initdb`` once (owned by the server's user), then return the server command."""
        bin_dir = pg_bin_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        self._initdb_once(bin_dir)
        return server_argv(bin_dir, self.data_dir, self.port)

    def _initdb_once(self, bin_dir: Path) -> None:
        """Create the cluster unless a previous ``initdb`` finished (a half-made one is wiped first)."""
        stamp = self.home / _INITDB_STAMP
        if stamp.is_file() and (self.data_dir / "PG_VERSION").is_file():
            return
        if self.data_dir.exists():
            log.info("re-creating the PostgreSQL cluster in %s", self.data_dir)
            shutil.rmtree(self.data_dir)
        stamp.unlink(missing_ok=True)
        user = self.run_as
        if user is not None:
            _check_reachable(self.home, user)
        self.data_dir.mkdir(mode=0o700)
        pwfile = self.home / "initdb.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password + "\n")
        try:
            if user is not None:
                entry = pwd.getpwnam(user)
                for path in (self.data_dir, pwfile):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            done = subprocess.run(
                initdb_argv(bin_dir, self.data_dir, pwfile),
                cwd=self.home,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                **as_user(user),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceError(f"initdb failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        stamp.write_text(bin_dir.parent.name)

    def psql(
        self, sql: str | None = None, *, database: str = "postgres", stdin: str | None = None, timeout: float = 30.0
    ) -> str:
        """Run SQL as the superuser over TCP; return stdout. The password travels in ``PGPASSWORD``."""
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": str(max(1, int(timeout)))}
        done = subprocess.run(
            psql_argv(pg_bin_dir(), self.port, database, sql),
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(f"psql on port {self.port} failed (exit {done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def probe(self, timeout: float = 5.0) -> str:
        """Raise unless ``SELECT 1`` answers; return the server version."""
        out = self.psql("SELECT 1, current_setting('server_version')", timeout=timeout)
        one, _, version = out.partition("|")
        if one != "1":
            raise ServiceError(f"SELECT 1 returned {out!r}")
        return f"PostgreSQL {version}"

    def provision(self) -> None:
        """The ``airflow`` role (password from the settings) and the ``airflow`` database it owns."""
        self.create_database(APP_DB)

    def create_database(self, database: str) -> None:
        """Create ``database`` owned by the application role unless it exists (and the role itself)."""
        database = _ident(database)
        script = (
            f"SELECT 'CREATE ROLE {APP_ROLE} LOGIN' WHERE NOT EXISTS "
            f"(SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') \\gexec\n"
            f"ALTER ROLE {APP_ROLE} PASSWORD {_quote_literal(self.password)};\n"
            f"SELECT 'CREATE DATABASE {database} OWNER {APP_ROLE}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{database}') \\gexec\n"
        )
        self.psql(stdin=script)

    def drop_database(self, database: str) -> None:
        """Drop ``database``, ending its sessions first (a per-test database is thrown away whole)."""
        self.psql(f"DROP DATABASE IF EXISTS {_ident(database)} WITH (FORCE)")
