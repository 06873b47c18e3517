"""Every benchmark result of issue 24 (``data.json``, ``scoring.json``) says where it comes from, and
every commit a result file names exists in this repository.

Why: ``data.json`` once named a commit the repository does not hold, and ``scoring.json`` recorded no
commit, date or arguments, so nobody could tell which code a number measured.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from recflow.config.settings import project_root

RESULTS = project_root() / "bench" / "results"


def _run_keys() -> tuple[str, ...]:
    """The keys ``bench/machine.py`` writes under ``run`` (loaded from the file: bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_machine", project_root() / "bench" / "machine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.RUN_KEYS)


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return doc


def _resolves(commit: str) -> bool:
    probe = ["git", "cat-file", "-e", f"{commit}^{{commit}}"]
    return subprocess.run(probe, cwd=project_root(), capture_output=True).returncode == 0


@pytest.fixture(autouse=True)
def _git_checkout() -> None:
    if not (project_root() / ".git").exists():
        pytest.skip("not a git checkout: commits cannot be resolved")


@pytest.mark.parametrize("name", ["data.json", "scoring.json", "serving_goals.json"])
def test_result_records_commit_command_times_and_load(name: str) -> None:
    run = _doc(name)["run"]
    missing = [k for k in _run_keys() if k not in run]
    assert not missing, f"{name} lacks {missing} under 'run'"
    assert len(run["commit"]) == 40 and _resolves(run["commit"]), f"{name}: commit {run['commit']} not in the repo"
    assert run["command"].startswith(f"python bench/{Path(name).stem}.py"), run["command"]
    assert datetime.fromisoformat(run["started"]) <= datetime.fromisoformat(run["finished"])
    assert len(run["load_avg_start"]) == 3 and len(run["load_avg_end"]) == 3


@pytest.mark.parametrize("name", ["data.json", "scoring.json"])
def test_every_goal_is_marked_met_or_not(name: str) -> None:
    goals = _doc(name)["goals"]
    assert goals, f"{name} records no goals"
    for goal in goals:
        assert set(goal) >= {"goal", "value", "met"} and isinstance(goal["met"], bool), goal


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_a_named_commit_exists_in_the_repository(path: Path) -> None:
    doc = json.loads(path.read_text())
    named = [section["commit"] for section in (doc.get("run"), doc.get("machine")) if isinstance(section, dict)
             and section.get("commit")]  # fmt: skip
    unresolved = [c for c in named if not _resolves(c)]
    assert not unresolved, f"{path.name} names commits the repository does not hold: {unresolved}"
