"""DAG integrity: every DAG file imports cleanly, cheaply, and follows the project's rules.

One test case per DAG file, named by its path, so a failure says which DAG and why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recflow.orchestration.alerts import ON_FAILURE

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
APPROVED_TAGS = {"recflow", "training", "scoring", "ingestion"}
#: Modules that must not load while a DAG file is parsed (they belong inside tasks).
HEAVY = ("tensorflow", "keras", "pyspark", "pandas", "great_expectations", "boto3", "confluent_kafka", "numpy")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dag_files_exist() -> None:
    assert {p.stem for p in DAG_FILES} >= {"recommender_training", "batch_scoring"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR.parent)))
def test_no_import_errors(dagbag, path: Path) -> None:
    errors = {k: v for k, v in dagbag.import_errors.items() if Path(k) == path}
    assert not errors, f"{path.name} failed to import:\n{next(iter(errors.values()), '')}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR.parent)))
def test_dag_rules(dagbag, path: Path) -> None:
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc) == path]
    assert dags, f"{path.name} defines no DAG"
    for dag in dags:
        assert dag.tags, f"{dag.dag_id} ({path.name}) has no tags"
        unapproved = set(dag.tags) - APPROVED_TAGS
        assert not unapproved, f"{dag.dag_id} ({path.name}) has unapproved tags {sorted(unapproved)}"
        assert dag.doc_md, f"{dag.dag_id} ({path.name}) has no doc_md"
        assert not dag.catchup, f"{dag.dag_id} ({path.name}) has catchup on"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag.dag_id}.{task.task_id} has no owner"
            retries = getattr(task, "retries", None)
            assert retries is not None, f"{dag.dag_id}.{task.task_id}: retries is unset"
            assert retries >= 2, f"{dag.dag_id}.{task.task_id}: retries={retries}, needs >= 2"
            timeout = task.execution_timeout
            assert timeout is not None and timeout.total_seconds() > 0, f"{dag.dag_id}.{task.task_id}: no timeout"
            callbacks = (
                task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
            )
            assert ON_FAILURE in callbacks, f"{dag.dag_id}.{task.task_id}: a failure sends no alert"


_PROBE = """
import json, sys, time, importlib.util
import airflow.sdk  # the framework itself is allowed
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator  # noqa: F401
before = set(sys.modules)
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"seconds": time.perf_counter() - t0, "new": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: str(p.relative_to(DAGS_DIR.parent)))
def test_no_heavy_imports_at_parse_time(path: Path) -> None:
    """Parse each DAG in a fresh interpreter and list what its import loaded beyond Airflow itself."""
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = sorted({m.split(".")[0] for m in probe["new"]} & set(HEAVY))
    assert not heavy, f"{path.name} imports {heavy} at parse time ({probe['seconds']:.2f}s); move them into tasks"
