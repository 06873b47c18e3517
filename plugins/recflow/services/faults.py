"""Fault injection at named points of the pipeline, acting on the real local services.

Why an environment variable: the same fault must be injectable into a real run (a DAG task, the
scorer, a ``spark-submit``), not only into a test, and a child process inherits it. ``RECFLOW_FAULTS``
holds ``point=action:target`` entries separated by ``,`` or ``;``, for example::

    RECFLOW_FAULTS=lake.publish.before_commit=stop:s3
    RECFLOW_FAULTS="scorer.fetch=pause:s3;scorer.dead_letter=kill:kafka"

Code calls :func:`hit` at a point; every entry for that point then runs, in order. Actions:

- ``stop``: stop the service's process group as ``recflow services down`` would (SIGTERM, then SIGKILL);
- ``kill``: SIGKILL the group at once (a crash: no shutdown hook runs);
- ``pause``: SIGSTOP the group (the process hangs, its port still accepts connections);
  :func:`resume` sends SIGCONT;
- ``raise``: raise :class:`InjectedFault` in the calling code (for failures no service causes).

A ``*N`` after the target fires the entry at most N times in one process (``stop:kafka*1``): a record
replayed after the broker is back must not stop it again. With ``RECFLOW_FAULTS_LEDGER=<folder>`` the N
times are shared by every process that has that folder (Spark executors, a task's retries): one file
per firing, created atomically, so ``kill:spark-executor*1`` kills one executor, not each retry's.

Targets are the names ``recflow services status`` shows (``s3``, ``kafka``, ``postgres``,
``spark-master``, ``spark-worker``); ``broker`` means ``kafka``. ``spark-executor`` means the executor
JVMs the local Spark worker runs, each with its Python workers (the calling task's own process too,
when a point inside a task fires): the worker survives and the master starts a new executor, as on a
cluster that lost one. ``stop`` and ``kill`` of a service that is not running do nothing: the fault is
already there. ``docs/faults.md`` lists the points and what the pipeline does at each. A malformed
``RECFLOW_FAULTS`` is an error at the first :func:`hit`, never ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from recflow.config.settings import FAULTS_ENV, FAULTS_LEDGER_ENV, load_settings
from recflow.services.manager import Service, default_services, optional_services, pid_file
from recflow.services.process import command_line, descendants, group_members, is_alive, read_live_pid, stop_group

log = logging.getLogger(__name__)

ENV: Final = FAULTS_ENV
#: Every point the code offers; an entry naming another point is refused, so a typo cannot go unnoticed.
POINTS: Final = frozenset(
    {
        "lake.publish.before_commit",
        "batch.publish.before_commit",
        "batch.score.partition",
        "scorer.fetch",
        "scorer.dead_letter",
    }
)
ACTIONS: Final = ("stop", "kill", "pause", "raise")
ALIASES: Final = {"broker": "kafka"}
#: The target that names the local worker's executors rather than a service of its own.
EXECUTORS: Final = "spark-executor"
#: The main class of every Spark executor JVM (what tells it from the worker in the worker's group).
EXECUTOR_CLASS: Final = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
#: How long ``stop`` of the executors waits after SIGTERM before SIGKILL.
EXECUTOR_TERM_S: Final = 10.0
_ENTRY: Final = re.compile(r"^(?P<point>[a-z_.]+)=(?P<action>[a-z]+):(?P<target>[^,;=*]+)(\*(?P<times>[0-9]+))?$")


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` action, and by a malformed ``RECFLOW_FAULTS``."""


@dataclass(frozen=True)
class Fault:
    """One ``point=action:target`` entry."""

    point: str
    action: str
    target: str
    times: int | None = None


#: How often each entry fired in this process (for ``*N``).
_FIRED: dict[Fault, int] = {}


def parse(spec: str) -> list[Fault]:
    """The entries of a ``RECFLOW_FAULTS`` value (empty for an empty value); a bad entry is an error."""
    faults = []
    for raw in re.split(r"[,;]", spec):
        entry = raw.strip()
        if not entry:
            continue
        m = _ENTRY.match(entry)
        if m is None:
            example = "lake.publish.before_commit=stop:s3"
            raise InjectedFault(f"{ENV}: {entry!r} is not point=action:target (e.g. {example})")
        point, action, target = m["point"], m["action"], m["target"]
        if point not in POINTS:
            raise InjectedFault(f"{ENV}: unknown point {point!r}; known points: {', '.join(sorted(POINTS))}")
        if action not in ACTIONS:
            raise InjectedFault(f"{ENV}: unknown action {action!r} in {entry!r}; actions: {', '.join(ACTIONS)}")
        target = ALIASES.get(target, target) if action != "raise" else target
        faults.append(Fault(point, action, target, int(m["times"]) if m["times"] else None))
    return faults


def hit(point: str) -> None:
    """Run the faults ``RECFLOW_FAULTS`` sets for ``point`` (nothing when it names none)."""
    if point not in POINTS:
        raise InjectedFault(f"the code names an unknown fault point {point!r}: add it to POINTS and docs/faults.md")
    spec = os.environ.get(ENV, "")
    if not spec:
        return
    for fault in parse(spec):
        if fault.point == point and _claim(fault):
            log.warning("fault injection at %s: %s %s", point, fault.action, fault.target)
            _apply(fault)


def _claim(fault: Fault) -> bool:
    """Count one firing of ``fault``; False once it fired its ``*N`` times (in this process, or in
    every process sharing ``RECFLOW_FAULTS_LEDGER``)."""
    if fault.times is None:
        return True
    ledger = os.environ.get(FAULTS_LEDGER_ENV)
    if not ledger:
        _FIRED[fault] = _FIRED.get(fault, 0) + 1
        return _FIRED[fault] <= fault.times
    folder = Path(ledger) / hashlib.sha256(repr(fault).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(fault.times):
        try:
            os.close(os.open(folder / str(n), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return True
    return False


def _service(name: str) -> Service:
    settings = load_settings()
    for service in [*default_services(settings), *optional_services(settings)]:
        if service.name == name:
            return service
    raise InjectedFault(f"{ENV}: no local service named {name!r}")


def _apply(fault: Fault) -> None:
    if fault.action == "raise":
        raise InjectedFault(f"fault injected at {fault.point}: {fault.target}")
    if fault.target == EXECUTORS:
        _signal_executors(fault.action)
        return
    service = _service(fault.target)
    state = load_settings().state
    rec = read_live_pid(pid_file(state, service))
    if rec is None:
        log.warning("fault injection: %s is not running (nothing to %s)", fault.target, fault.action)
        return
    if fault.action == "pause":
        os.killpg(rec.pid, signal.SIGSTOP)
        return
    first = signal.SIGKILL if fault.action == "kill" else getattr(service, "stop_signal", signal.SIGTERM)
    stop_group(rec.pid, first_signal=first)
    pid_file(state, service).unlink(missing_ok=True)


def executor_processes() -> list[int]:
    """The local Spark worker's executor JVMs, each followed by its Python daemon and workers."""
    worker = read_live_pid(pid_file(load_settings().state, _service("spark-worker")))
    if worker is None:
        return []
    jvms = [pid for pid in group_members(worker.pid) if EXECUTOR_CLASS in command_line(pid)]
    return [pid for jvm in jvms for pid in (jvm, *descendants(jvm))]


def _signal_executors(action: str, pids: list[int] | None = None) -> None:
    """``action`` on every executor process; the calling process, when it is one of them, comes last."""
    pids = executor_processes() if pids is None else pids
    if not pids:
        log.warning("fault injection: no Spark executor is running (nothing to %s)", action)
        return
    sig = {"pause": signal.SIGSTOP, "resume": signal.SIGCONT, "kill": signal.SIGKILL}.get(action, signal.SIGTERM)
    me = os.getpid()
    for pid in sorted(pids, key=lambda p: p == me):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    if action == "stop":
        deadline = time.monotonic() + EXECUTOR_TERM_S
        while (left := [p for p in pids if p != me and is_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal_executors("kill", left + ([me] if me in pids else []))


def resume(name: str) -> bool:
    """SIGCONT a paused service's group (or the paused executors); False when it is not running."""
    target = ALIASES.get(name, name)
    if target == EXECUTORS:
        pids = executor_processes()
        _signal_executors("resume", pids)
        return bool(pids)
    service = _service(target)
    rec = read_live_pid(pid_file(load_settings().state, service))
    if rec is None:
        return False
    os.killpg(rec.pid, signal.SIGCONT)
    return True
