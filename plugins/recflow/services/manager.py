"""Bring the local services up, report on them, take them down.

Why this shape: every service is the same four steps (prepare files and a command, start detached,
probe with a real API call, provision topics or buckets), so one loop handles idempotency, stale pid
files, foreign processes on our ports, timeouts and log tails for all of them. Services start in
parallel and are waited for together, which keeps a warm ``up`` at the speed of the slowest JVM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from recflow.config.credentials import local_credentials
from recflow.config.identities import role_identities
from recflow.config.settings import Settings, kafka_controller_port, kafka_port, load_settings, pg_port, s3_port
from recflow.services.kafka import KafkaService
from recflow.services.postgres import PostgresService
from recflow.services.process import (
    PidRecord,
    ServiceError,
    file_lock,
    group_members,
    is_alive,
    port_open,
    read_live_pid,
    start_detached,
    stop_group,
    tail,
    wait_until,
)
from recflow.services.s3 import S3ProxyService
from recflow.services.spark import spark_services
from recflow.services.versitygw import VersityService

log = logging.getLogger(__name__)

START_TIMEOUT = 120.0
PROBE_TIMEOUT = 5.0
LOG_TAIL_LINES = 40

State = Literal["running", "unhealthy", "stopped", "foreign"]


class Service(Protocol):
    """What the manager needs from a service (see :class:`KafkaService`, :class:`S3ProxyService`).

    Optional attributes, read with ``getattr``: ``stop_signal`` (default SIGTERM) and ``run_as`` (a system
    user to run the process as; default None), for :class:`PostgresService`; an ``environment()`` method
    (the process's whole environment; default: ours), for the Spark daemons.
    """

    @property
    def name(self) -> str: ...

    @property
    def ports(self) -> tuple[int, ...]: ...

    @property
    def home(self) -> Path: ...

    def prepare(self) -> list[str]:
        """Resolve jars and write config files; return the argument list that runs the service."""
        ...

    def probe(self, timeout: float = PROBE_TIMEOUT) -> str:
        """A real API call; raise when unhealthy, else return a short description."""
        ...

    def provision(self) -> None:
        """Create what the pipeline needs (idempotent)."""
        ...


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``recflow services status``."""

    name: str
    state: State
    pid: int | None
    ports: tuple[int, ...]
    detail: str

    @property
    def healthy(self) -> bool:
        return self.state == "running"


S3_SERVERS = ("s3proxy", "versitygw")


def s3_server_name() -> str:
    """Which local S3 server runs: ``RECFLOW_S3_SERVER`` (``s3proxy``, the default, or ``versitygw``).

    Why S3Proxy stays the default: it needs only the JVM that Kafka needs anyway, while versitygw (one
    identity per role, bucket policies, Object Lock) costs a one-time Go build (``docs/deployment.md``).
    """
    name = os.environ.get("RECFLOW_S3_SERVER", "s3proxy") or "s3proxy"
    if name not in S3_SERVERS:
        raise ServiceError(f"RECFLOW_S3_SERVER={name!r}: choose one of {', '.join(S3_SERVERS)}")
    return name


def s3_service(settings: Settings | None = None) -> Service:
    """The local S3 server of :func:`s3_server_name`, on ``RECFLOW_S3_PORT``."""
    settings = settings or load_settings()
    if s3_server_name() == "versitygw":
        return VersityService(settings.s3, settings.state, s3_port(), role_identities(settings.state))
    return S3ProxyService(settings.s3, settings.state, s3_port())


def default_services(settings: Settings | None = None) -> list[Service]:
    """Kafka and the S3 server, on the ports from the environment (see :mod:`recflow.config.settings`)."""
    settings = settings or load_settings()
    return [KafkaService(settings.kafka, settings.state, kafka_port(), kafka_controller_port()), s3_service(settings)]


def postgres_service(settings: Settings | None = None) -> PostgresService:
    """The opt-in PostgreSQL (port ``RECFLOW_PG_PORT``; password ``RECFLOW_PG_PASSWORD``, else the one
    generated into the state folder)."""
    settings = settings or load_settings()
    password = os.environ.get("RECFLOW_PG_PASSWORD") or local_credentials(settings.state).postgres_password
    return PostgresService(settings.state, pg_port(), password=password)


def spark_cluster(settings: Settings | None = None) -> list[Service]:
    """The opt-in Spark standalone master and worker (``recflow services up --with-spark``)."""
    settings = settings or load_settings()
    return list(spark_services(settings.state))


def optional_services(settings: Settings | None = None) -> list[Service]:
    """Services started only on request (``--with-postgres``, ``--with-spark``, the scheduler tests)."""
    return [postgres_service(settings), *spark_cluster(settings)]


def _known_services(settings: Settings) -> list[Service]:
    """The defaults plus the optional services that are running: what ``down`` and ``status`` cover.

    Why only running optional ones: a stopped opt-in service is not a fault, and its port may belong to
    someone else.
    """
    running = [s for s in optional_services(settings) if read_live_pid(pid_file(settings.state, s)) is not None]
    return [*default_services(settings), *running]


def _stop_signal(service: Service) -> signal.Signals:
    sig: signal.Signals = getattr(service, "stop_signal", signal.SIGTERM)
    return sig


def _run_dir(state: Path) -> Path:
    return state / "run"


def pid_file(state: Path, service: Service) -> Path:
    return _run_dir(state) / f"{service.name}.pid"


def log_file(state: Path, service: Service) -> Path:
    return state / "logs" / f"{service.name}.log"


def _probe(service: Service) -> str | None:
    """The probe's description when healthy, else None (ports checked first: no client noise)."""
    if not all(port_open(p) for p in service.ports):
        return None
    try:
        return service.probe(PROBE_TIMEOUT)
    except Exception as exc:  # any client error means "not healthy yet"
        log.debug("%s probe failed: %s", service.name, exc)
        return None


def _is_healthy(service: Service) -> bool:
    return _probe(service) is not None


def _failure(service: Service, state: Path, reason: str) -> ServiceError:
    path = log_file(state, service)
    return ServiceError(
        f"{service.name} {reason}.\n--- last {LOG_TAIL_LINES} lines of {path} ---\n"
        f"{tail(path, LOG_TAIL_LINES)}\n--- full log: {path}"
    )


def _foreign_port(service: Service) -> int | None:
    return next((p for p in service.ports if port_open(p)), None)


def _ports_free(service: Service) -> bool:
    return _foreign_port(service) is None


def _check_ports_free(services: Sequence[Service], state: Path) -> None:
    """Before launching anything: a port held by a foreign process is an error, not a hang."""
    for service in services:
        taken = _foreign_port(service)
        if taken is not None:
            raise ServiceError(
                f"port {taken} (needed by {service.name}) is already in use by a process recflow did not "
                f"start (no live pid file in {_run_dir(state)}). Stop that process, or choose other ports "
                "with RECFLOW_KAFKA_PORT / RECFLOW_KAFKA_CONTROLLER_PORT / RECFLOW_S3_PORT."
            )


def _launch(service: Service, state: Path) -> PidRecord:
    argv = service.prepare()
    log.info("starting %s on port(s) %s", service.name, ",".join(map(str, service.ports)))
    return start_detached(
        argv,
        cwd=service.home,
        log_path=log_file(state, service),
        pid_path=pid_file(state, service),
        user=getattr(service, "run_as", None),
        env=service.environment() if hasattr(service, "environment") else None,
    )


def _wait_healthy(service: Service, state: Path, rec: PidRecord, timeout: float) -> None:
    """Wait for the probe to pass; on early exit or timeout stop the process and raise with the log."""
    exited = False

    def ready() -> bool:
        nonlocal exited
        if not group_members(rec.pid):
            exited = True
            return True
        return _is_healthy(service)

    ok = wait_until(ready, timeout, interval=0.25)
    if ok and not exited:
        return
    stop_group(rec.pid, first_signal=_stop_signal(service))
    pid_file(state, service).unlink(missing_ok=True)
    reason = "exited during start-up" if exited else f"was not healthy within {timeout:.0f}s"
    raise _failure(service, state, reason)


def _reuse(service: Service, state: Path, timeout: float) -> bool:
    """True when our process for ``service`` is (or, within ``timeout``, becomes) healthy.

    Removes a stale pid file; stops a live but unhealthy process of ours so it can be started afresh.
    """
    rec = read_live_pid(pid_file(state, service))
    if rec is None:
        return False
    if _is_healthy(service):
        log.info("%s already running (pid %d)", service.name, rec.pid)
        return True
    log.info("%s (pid %d) is not healthy yet; waiting up to %.0fs", service.name, rec.pid, timeout)
    if wait_until(partial(_is_healthy, service), timeout, interval=0.5):
        return True
    log.warning("%s (pid %d) stayed unhealthy; restarting it", service.name, rec.pid)
    _stop_one(service, state)
    return False


def ensure_services_up(
    settings: Settings | None = None,
    *,
    services: Sequence[Service] | None = None,
    timeout: float = START_TIMEOUT,
) -> tuple[str, ...]:
    """Make every service healthy and provisioned; return the names of those this call started.

    Healthy services are left alone; a stale pid file is removed; a service of ours that is alive but
    unhealthy (e.g. left half-started by a killed run) gets ``timeout`` seconds to recover, then is
    restarted once. Raises :class:`ServiceError` with the log tail when a service does not come up.
    """
    settings = settings or load_settings()
    services = list(services) if services is not None else default_services(settings)
    state = settings.state
    started: list[str] = []
    with file_lock(_run_dir(state) / "services.lock"):
        to_start = [service for service in services if not _reuse(service, state, timeout)]
        _check_ports_free(to_start, state)
        launched: list[tuple[Service, PidRecord]] = []
        try:
            for service in to_start:
                launched.append((service, _launch(service, state)))
            for service, rec in launched:
                _wait_healthy(service, state, rec, timeout)
                started.append(service.name)
        except BaseException:
            # Leave nothing half-up from this call (also on Ctrl-C): the next ``up`` starts clean.
            for service, _rec in launched:
                if service.name not in started:
                    _stop_one(service, state)
            raise
        for service in services:
            service.provision()
    return tuple(started)


def _stop_one(service: Service, state: Path) -> bool:
    rec = read_live_pid(pid_file(state, service))
    if rec is None:
        return False
    log.info("stopping %s (process group %d)", service.name, rec.pid)
    stop_group(rec.pid, first_signal=_stop_signal(service))
    pid_file(state, service).unlink(missing_ok=True)
    return True


def services_down(
    settings: Settings | None = None, *, services: Sequence[Service] | None = None, port_timeout: float = 10.0
) -> tuple[str, ...]:
    """Stop every service recflow started (whole process groups); return the names stopped.

    By default that is Kafka, S3 and any running optional service (PostgreSQL).
    Raises :class:`ServiceError` if a process survives or one of our ports is still taken afterwards.
    """
    settings = settings or load_settings()
    services = list(services) if services is not None else _known_services(settings)
    stopped: list[str] = []
    with file_lock(_run_dir(settings.state) / "services.lock"):
        for service in services:
            if _stop_one(service, settings.state):
                stopped.append(service.name)
        for service in services:
            if not wait_until(partial(_ports_free, service), port_timeout):
                raise ServiceError(
                    f"{service.name} is stopped but port {_foreign_port(service)} is still in use "
                    "by a process recflow did not start"
                )
    return tuple(stopped)


def service_status(
    settings: Settings | None = None, *, services: Sequence[Service] | None = None
) -> list[ServiceStatus]:
    """Each service's state: ``running`` (ours, probe passes), ``unhealthy``, ``stopped`` or ``foreign``.

    By default: Kafka, S3 and any running optional service.
    """
    settings = settings or load_settings()
    services = list(services) if services is not None else _known_services(settings)
    result = []
    for service in services:
        rec = read_live_pid(pid_file(settings.state, service))
        detail = _probe(service) if rec is not None else None
        state: State
        if rec is not None:
            state = "running" if detail is not None else "unhealthy"
            detail = detail or f"probe failed; log: {log_file(settings.state, service)}"
        elif _foreign_port(service) is not None:
            state, detail = "foreign", "port taken by a process recflow did not start"
        else:
            state, detail = "stopped", ""
        result.append(ServiceStatus(service.name, state, rec.pid if rec else None, service.ports, detail or ""))
    return result


def format_status(rows: Sequence[ServiceStatus]) -> str:
    """A fixed-width table for the CLI."""
    header = ("service", "state", "pid", "ports", "detail")
    table = [header] + [
        (r.name, r.state, str(r.pid) if r.pid else "-", ",".join(map(str, r.ports)), r.detail) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ).rstrip()


# --- sharing the services between concurrent users (test sessions, demos) ------------------------------


def _leases_dir(state: Path) -> Path:
    return _run_dir(state) / "leases"


def _started_file(state: Path) -> Path:
    """Names of services that a :func:`shared_services` user had to start (so the last one out stops them)."""
    return _run_dir(state) / "started-by-shared.json"


def _read_started(state: Path) -> set[str]:
    try:
        return set(json.loads(_started_file(state).read_text()))
    except (FileNotFoundError, ValueError):
        return set()


def _live_leases(state: Path) -> list[Path]:
    """Lease files whose holder still runs; leases of killed holders are removed."""
    live = []
    for lease in sorted(_leases_dir(state).glob("*.lease")):
        try:
            pid = int(lease.read_text())
        except (OSError, ValueError):
            pid = -1
        if pid > 0 and is_alive(pid):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def claim_services(settings: Settings | None = None) -> None:
    """Make running services permanent: :func:`shared_services` users will no longer stop them.

    ``recflow services up`` calls this, so services a user asked for outlive a test run that had
    started them.
    """
    settings = settings or load_settings()
    with file_lock(_run_dir(settings.state) / "leases.lock"):
        _started_file(settings.state).unlink(missing_ok=True)


@contextlib.contextmanager
def shared_services(
    settings: Settings | None = None, *, keep: bool = False, services: Sequence[Service] | None = None
) -> Iterator[Settings]:
    """Healthy services for the duration of a block, shared safely between concurrent users.

    Why leases: several test sessions (and demos) use the same state folder at once; if the one that
    started the services stopped them on exit, the others would lose their broker mid-test. Each user
    holds a lease file; services that some user had to start are stopped when the last lease is
    released (never those started by ``recflow services up``), unless ``keep`` is true. ``services``
    defaults to Kafka and S3; pass e.g. ``[postgres_service()]`` for an optional one.
    """
    settings = settings or load_settings()
    state = settings.state
    lock = _run_dir(state) / "leases.lock"
    lease = _leases_dir(state) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.lease"
    with file_lock(lock):
        lease.parent.mkdir(parents=True, exist_ok=True)
        lease.write_text(str(os.getpid()))
    try:
        started = ensure_services_up(settings, services=services)
        if started:
            with file_lock(lock):
                names = _read_started(state) | set(started)
                _started_file(state).write_text(json.dumps(sorted(names)))
        yield settings
    finally:
        with file_lock(lock):
            lease.unlink(missing_ok=True)
            to_stop = _read_started(state)
            if not keep and to_stop and not _live_leases(state):
                every = [*default_services(settings), *optional_services(settings)]
                ours = [s for s in every if s.name in to_stop]
                log.info("last user of the shared services: stopping %s", ", ".join(sorted(to_stop)))
                services_down(settings, services=ours)
                _started_file(state).unlink(missing_ok=True)
