"""What every benchmark records beside its numbers: the machine, its load, the versions and the run.

Shared by the bench scripts (run as ``python bench/<name>.py``, so this folder is on ``sys.path``), so
each result file describes its run the same way. :func:`start_run` / :func:`finish_run` record the
provenance a reader needs to reproduce or distrust a number: the full commit (and whether the tree had
uncommitted changes outside ``bench/results/``), the exact command line, the UTC start and end, and the
load average at both ends. ``tests/unit/bench/test_results_provenance.py`` checks that the committed
result files carry all of it and that their commit resolves in the repository.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The keys :func:`start_run` and :func:`finish_run` write under ``run`` (the provenance test reads them).
RUN_KEYS = ("commit", "dirty", "command", "argv", "started", "finished", "load_avg_start", "load_avg_end")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def machine_info(packages: Iterable[str]) -> dict[str, Any]:
    """Python, cores, load average, platform, the named packages' versions, the git commit and the UTC time."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "platform": platform.platform(),
        "versions": {p: md.version(p) for p in packages},
        "commit": _git("rev-parse", "HEAD"),
        "date": _utc(),
    }


def start_run(argv: list[str] | None = None) -> dict[str, Any]:
    """The run's provenance at its start: full commit, dirty flag, exact command line, time and load.

    ``dirty`` is true when tracked files other than ``bench/results/`` differ from the commit: the numbers
    then come from code the commit does not hold, and the result file says so.
    """
    args = sys.argv[1:] if argv is None else argv
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else str(script)
    changed = [line for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": any("bench/results/" not in line for line in changed),
        "command": shlex.join(["python", shown, *args]),
        "argv": list(args),
        "started": _utc(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def finish_run(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` with the end time and the load average at the end added."""
    return {**run, "finished": _utc(), "load_avg_end": [round(x, 2) for x in os.getloadavg()]}


def provenance_line(run: dict[str, Any]) -> str:
    """One Markdown line saying where the numbers come from (written from the record, never by hand)."""
    dirty = " (with uncommitted changes)" if run["dirty"] else ""
    load = f"{run['load_avg_start'][0]:.1f} -> {run['load_avg_end'][0]:.1f}"
    line = (
        f"Run `{run['command']}` at commit `{run['commit'][:12]}`{dirty}, {run['started']} -> {run['finished']} UTC, "
        f"1-minute load {load} (start -> end)."
    )
    cores = os.cpu_count() or 1
    # judged at the start: a benchmark that saturates the cores itself (its load generator, servers and
    # Spark) raises the load by its end on any machine
    if run["load_avg_start"][0] > cores:
        line += (
            f" **The machine was not quiet** (load above its {cores} cores when the run started): wall-clock"
            " rates are lower than a quiet run's and not comparable with one; CPU seconds and memory are."
        )
    return line
