"""docs/architecture.md stays the map: every task of every DAG is in its table, and every function or module it
names exists.

Why a test: the map is what a newcomer trusts, and a renamed function or a new task would otherwise leave it
wrong without anyone noticing (the README's old layout table named modules that no longer existed).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "plugins" / "recflow"
STAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
#: A backticked dotted name, optionally called: `batch.job.run_batch_scoring`, `registry.serving.fetch_artifact()`.
DOTTED = re.compile(r"`([a-z_]+(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`")
#: A row of the task table: | `dag` | `task` ... | package (functions) |
TASK_ROW = re.compile(r"^\| `(?P<dag>\w+)` \| `(?P<task>\w+)`", re.MULTILINE)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def _module_file(parts: list[str]) -> Path | None:
    path = PACKAGE.joinpath(*parts)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _names(path: Path) -> set[str]:
    """Top-level and class-level names a module defines or imports (what ``module.name`` can refer to)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def resolves(dotted: str) -> bool | None:
    """True when ``dotted`` (``recflow.``-prefixed, or from a stage package or one of its modules down) names a
    module and, if there is a rest, something that module defines; False when a module matches but the name
    does not; None when no module of recflow matches (a DAG or task reference, not a code path)."""
    parts = dotted.removeprefix("recflow.").split(".")
    verdict: bool | None = None
    # as written, then relative to each stage package (``job.run_batch_scoring`` in the batch row)
    for prefix, candidate in [(0, parts), *((1, [stage, *parts]) for stage in STAGES)]:
        for i in range(len(candidate), prefix, -1):
            module = _module_file(candidate[:i])
            if module is not None:
                rest = candidate[i:]
                if not rest or rest[0] in _names(module):
                    return True
                verdict = False
                break
    return verdict


def test_every_dag_task_is_in_the_map(dagbag) -> None:
    mapped = {(m["dag"], m["task"]) for m in TASK_ROW.finditer(DOC.read_text())}
    tasks = {(dag.dag_id, task.task_id) for dag in dagbag.dags.values() for task in dag.tasks}
    assert tasks, "no DAG parsed"
    missing = sorted(tasks - mapped)
    assert not missing, f"docs/architecture.md's task table lacks {missing}: say which package does their work"
    stale = sorted(mapped - tasks)
    assert not stale, f"docs/architecture.md's task table names tasks no DAG has: {stale}"


def test_every_name_the_map_cites_exists() -> None:
    cited = {m for m in DOTTED.findall(DOC.read_text()) if not m.endswith((".py", ".yaml", ".json", ".md"))}
    wrong = sorted(name for name in cited if resolves(name) is False)
    assert not wrong, f"docs/architecture.md names what the code does not have: {wrong}"


def test_the_resolver_sees_a_wrong_name() -> None:
    """The check above must be able to fail (a rule that cannot fail proves nothing)."""
    assert resolves("recflow.batch.job.run_batch_scoring") is True
    assert resolves("batch.job.run_batch_scoring") is True
    assert resolves("job.run_batch_scoring") is True  # relative to a stage package
    assert resolves("batch.job.no_such_function") is False
    assert resolves("recommender_training.compare") is None  # a DAG task, not a code path
