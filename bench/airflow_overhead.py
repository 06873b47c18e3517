"""Airflow overhead on the cluster topology: how much of a DAG run's wall time is orchestration.

Launch (``make bench-airflow``; ~10 min on 2 cores):
    .venv/bin/python bench/airflow_overhead.py --out bench/results

It runs ``tests/integration/test_cluster.py`` (PostgreSQL, api-server + scheduler + dag-processor +
triggerer with the LocalExecutor, the Spark standalone master and worker, Kafka, the S3 server, the lake
on S3) and reads the measurement that test writes for its REST-triggered ``recommender_training`` and
``batch_scoring`` runs. Definitions (from the run's and task instances' timestamps in the REST API; see
``overhead_report`` in ``tests/integration/airflow_cluster.py``):

* wall: the run's start to end; busy: the union of its task instances' start..end intervals;
* orchestration overhead share = (wall - busy) / wall: the time in which no task of the run executed
  (scheduling, queueing, handing the task to the executor). Goal: <= 10 %.
* gap: for each dependency edge, the downstream task's start minus the end of its last upstream
  instance; the median over the run's edges is reported.

Writes ``airflow.json`` (everything, with machine load) and ``airflow.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.10


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(report: dict[str, Any], machine: dict[str, Any]) -> str:
    lines = [
        "# Airflow overhead on the cluster topology (`make bench-airflow`)",
        "",
        f"{machine['cpus']} CPUs, load average at the end {machine['load_avg'][0]:.1f} (1 min) / "
        f"{machine['load_avg'][1]:.1f} (5 min), Python {machine['python']}, commit {machine['commit']}, "
        f"{machine['date']}. Definitions: `bench/airflow_overhead.py` docstring.",
        "",
        "| DAG run | wall s | busy s | overhead s | overhead share | (success-only busy) | lead s | tail s "
        "| median gap s | goal <= 10 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for dag_id, row in report["dags"].items():
        met = "met" if row["overhead_share"] <= GOAL else "not met"
        lines.append(
            f"| {dag_id} | {row['wall_s']:.1f} | {row['busy_s']:.1f} | {row['overhead_s']:.1f} | "
            f"{row['overhead_share']:.1%} | {row['overhead_share_success_only']:.1%} | {row['lead_s']:.1f} | "
            f"{row['tail_s']:.1f} | {row['median_gap_s']} | {met} |"
        )
    for dag_id, row in report["dags"].items():
        lines += ["", f"`{dag_id}` gaps between dependent tasks (s): " + ", ".join(
            f"{edge} {gap}" for edge, gap in row["gaps"].items()
        ), f"`{dag_id}` task seconds: " + ", ".join(f"{t} {s}" for t, s in row["tasks"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recflow-bench-airflow-") as tmp:
        env = {**os.environ, "RECFLOW_BENCH_AIRFLOW_OUT": tmp}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_cluster.py"],
            cwd=ROOT, env=env, check=False,
        )  # fmt: skip
        measured = Path(tmp) / "airflow.json"
        if done.returncode != 0 or not measured.is_file():
            sys.exit(f"the cluster test failed (exit {done.returncode}); nothing measured")
        report = json.loads(measured.read_text())
    machine = _machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "airflow.json").write_text(json.dumps({"machine": machine, **report}, indent=2) + "\n")
    (args.out / "airflow.md").write_text(markdown(report, machine))
    print(markdown(report, machine))


if __name__ == "__main__":
    main()
