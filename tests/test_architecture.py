"""Layering rules, checked on the source: Spark jobs must run where Airflow is not installed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "recflow"
AIRFLOW_LAYER = {PACKAGE / "orchestration"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


CORE_FILES = sorted(p for p in PACKAGE.rglob("*.py") if not any(layer in p.parents for layer in AIRFLOW_LAYER))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_airflow(path: Path) -> None:
    bad = sorted(name for name in _imports(path) if name == "airflow" or name.startswith("airflow."))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: only recflow.orchestration may import Airflow"


@pytest.mark.parametrize("path", sorted((ROOT / "spark_jobs").glob("*.py")), ids=lambda p: p.name)
def test_spark_jobs_import_neither_airflow_nor_dags(path: Path) -> None:
    bad = sorted(
        name
        for name in _imports(path)
        if name.split(".")[0] in {"airflow", "dags"} or name.startswith("recflow.orchestration")
    )
    assert not bad, f"spark_jobs/{path.name} imports {bad}"


def test_the_rule_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself must catch both import forms (a rule that cannot fail proves nothing)."""
    sample = tmp_path / "x.py"
    sample.write_text("import airflow\nfrom airflow.sdk import task\nfrom . import sibling\n")
    assert _imports(sample) == {"airflow", "airflow.sdk"}
