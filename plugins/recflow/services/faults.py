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
replayed after the broker is back must not stop it again. Targets are the names ``recflow services
status`` shows (``s3``, ``kafka``, ``postgres``, ``spark-master``, ``spark-worker``); ``broker`` means
``kafka``. ``stop`` and ``kill`` of a service that is not running do nothing: the fault is already
there. ``docs/faults.md`` lists the points and what the pipeline does at each. A malformed
``RECFLOW_FAULTS`` is an error at the first :func:`hit`, never ignored.
"""

from __future__ import annotations

import logging
import os
import re
import signal
from dataclasses import dataclass
from typing import Final

from recflow.config.settings import load_settings
from recflow.services.manager import Service, default_services, optional_services, pid_file
from recflow.services.process import read_live_pid, stop_group

log = logging.getLogger(__name__)

ENV: Final = "RECFLOW_FAULTS"
#: Every point the code offers; an entry naming another point is refused, so a typo cannot go unnoticed.
POINTS: Final = frozenset(
    {
        "lake.publish.before_commit",
        "batch.publish.before_commit",
        "scorer.fetch",
        "scorer.dead_letter",
    }
)
ACTIONS: Final = ("stop", "kill", "pause", "raise")
ALIASES: Final = {"broker": "kafka"}
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
        if fault.point == point and (fault.times is None or _FIRED.get(fault, 0) < fault.times):
            _FIRED[fault] = _FIRED.get(fault, 0) + 1
            log.warning("fault injection at %s: %s %s", point, fault.action, fault.target)
            _apply(fault)


def _service(name: str) -> Service:
    settings = load_settings()
    for service in [*default_services(settings), *optional_services(settings)]:
        if service.name == name:
            return service
    raise InjectedFault(f"{ENV}: no local service named {name!r}")


def _apply(fault: Fault) -> None:
    if fault.action == "raise":
        raise InjectedFault(f"fault injected at {fault.point}: {fault.target}")
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


def resume(name: str) -> bool:
    """SIGCONT a paused service's group; False when it is not running."""
    service = _service(ALIASES.get(name, name))
    rec = read_live_pid(pid_file(load_settings().state, service))
    if rec is None:
        return False
    os.killpg(rec.pid, signal.SIGCONT)
    return True
