"""Detached processes with pid files: start, find, health-wait and stop them across CLI invocations.

Why detached (own session and process group): a service must outlive the ``recflow services up`` that
started it, survive a Ctrl-C aimed at a demo, and be stoppable as a whole group later, JVM children
included. The pid file records the argument list too, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"

# Services started by this interpreter: holding the Popen objects lets us reap them (no zombies while a
# test process stops what it started) without "subprocess is still running" warnings at exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service could not be resolved, started, checked or stopped; the message says what to do."""


@dataclass(frozen=True)
class PidRecord:
    """What ``up`` wrote about a process it started (pid == process group id, as it leads a session)."""

    pid: int
    argv: tuple[str, ...]
    started_at: float
    #: The kernel's start time of the process (clock ticks since boot, ``/proc/<pid>/stat`` field 22):
    #: unlike the command line it survives ``exec`` (``spark-submit`` becomes ``java``), and a recycled
    #: pid has a different one.
    start_ticks: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"pid": self.pid, "argv": list(self.argv), "started_at": self.started_at, "start_ticks": self.start_ticks}
        )

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        raw = json.loads(text)
        ticks = raw.get("start_ticks")
        return cls(
            pid=int(raw["pid"]),
            argv=tuple(raw["argv"]),
            started_at=float(raw["started_at"]),
            start_ticks=None if ticks is None else int(ticks),
        )


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when unknown (no /proc) or gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[19])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) from ``/proc/<pid>/stat``, or None when unknown or gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _reap(pid: int) -> None:
    """Collect our own dead child so it does not linger as a zombie that looks alive."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"


def _cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # no /proc (macOS): trust the pid
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in a process group; uses /proc, else asks the kernel about the group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            members.append(int(entry.name))
    return members


def command_line(pid: int) -> tuple[str, ...]:
    """The process's argument list (empty when it is gone or /proc is missing)."""
    return _cmdline(pid) or ()


def descendants(pid: int) -> list[int]:
    """Live processes whose parent chain leads to ``pid`` (children of another session or group too).

    Why not the process group: a task runner or a Python worker may lead a group of its own, yet dies
    with its parent's machine; a crash of a process tree must reach them.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def read_live_pid(path: Path) -> PidRecord | None:
    """The record in ``path`` if its process still runs our command; removes a stale or broken file."""
    try:
        rec = PidRecord.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("removing unreadable pid file %s", path)
        path.unlink(missing_ok=True)
        return None
    if is_alive(rec.pid):
        ticks = start_ticks(rec.pid) if rec.start_ticks is not None else None
        if ticks is not None:
            if ticks == rec.start_ticks:
                return rec
        else:
            cmd = _cmdline(rec.pid)
            if cmd is None or cmd == rec.argv:
                return rec
    log.info("removing stale pid file %s (pid %d is gone or runs something else)", path, rec.pid)
    path.unlink(missing_ok=True)
    return None


def port_open(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def rotate_log(path: Path) -> None:
    """Keep one previous log (``.1``) so a restart does not erase the log of the run that failed."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def start_detached(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> PidRecord:
    """Start ``argv`` (no shell) in its own session, stdout+stderr to ``log_path``; write the pid file.

    ``user`` (root only) runs the process as that system user, with its primary group and no
    supplementary groups. Why not ``runuser``/``su``: they fork and stay as the parent, so the pid
    file would name the wrapper, and on a signal they SIGKILL the child after two seconds; switching
    user in the child before ``exec`` keeps the pid, the argument list and clean shutdowns ours.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_log(log_path)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(  # argument list, no shell
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
            **as_user(user),
        )
    _CHILDREN[proc.pid] = proc
    rec = PidRecord(pid=proc.pid, argv=tuple(argv), started_at=time.time(), start_ticks=start_ticks(proc.pid))
    pid_path.write_text(rec.to_json())
    return rec


def stop_group(
    pgid: int,
    *,
    term_timeout: float = 20.0,
    kill_timeout: float = 5.0,
    first_signal: signal.Signals = signal.SIGTERM,
) -> None:
    """Signal the whole group (SIGTERM unless ``first_signal`` says otherwise), wait, then SIGKILL;
    raise if anything is still alive afterwards.

    ``first_signal`` exists for servers whose SIGTERM is not the clean, prompt stop: PostgreSQL's SIGTERM
    waits for every client to disconnect, its SIGINT ("fast shutdown") ends sessions and checkpoints.
    """
    for sig, timeout in ((first_signal, term_timeout), (signal.SIGKILL, kill_timeout)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            _reap(pgid)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pgid)
            if not group_members(pgid):
                return
            time.sleep(0.1)
        if sig != signal.SIGKILL:
            log.warning("process group %d ignored %s for %.0fs; sending SIGKILL", pgid, sig.name, timeout)
    left = group_members(pgid)
    if left:
        raise ServiceError(f"processes {left} of group {pgid} survived SIGKILL")


def stop_recorded(pid_path: Path, record: PidRecord, *, term_timeout: float = 30.0) -> None:
    """Stop the group of a process started by :func:`start_detached` (SIGTERM, SIGKILL after
    ``term_timeout``) and remove its pid file once nothing lives under it."""
    stop_group(record.pid, term_timeout=term_timeout)
    if read_live_pid(pid_path) is None:
        pid_path.unlink(missing_ok=True)


def stop_named(run_dir: Path, name: str, *, term_timeout: float = 30.0) -> bool:
    """Stop the detached process whose pid file is ``run_dir/<name>.pid``, if it runs; True if one did.

    The one way the scorer's and the HTTP API's launchers (and ``recflow services down``) stop theirs.
    """
    pid_path = run_dir / f"{name}.pid"
    record = read_live_pid(pid_path)
    if record is None:
        return False
    stop_recorded(pid_path, record, term_timeout=term_timeout)
    return True


def stop_all_named(run_dir: Path, prefix: str) -> list[str]:
    """Stop every process whose pid file in ``run_dir`` is ``<prefix>*.pid``; the names of those that ran."""
    return [path.stem for path in sorted(run_dir.glob(f"{prefix}*.pid")) if stop_named(run_dir, path.stem)]


def as_user(user: str | None) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a child as ``user`` (none when ``user`` is None)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two concurrent ``up`` calls do not start the same service twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
