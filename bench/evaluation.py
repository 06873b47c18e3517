"""Evaluation benchmark: seconds for every ranking metric at MovieLens-100K's shape.

Launch: ``make bench-evaluation`` (``python bench/evaluation.py``). Moved out of the unit suite
(``test_movielens_sized_evaluation_is_fast`` asserted it there), where a loaded machine made it flaky.

Definitions: 943 users x top 10 over 1 682 items, ~25 000 truth rows (seeded, as the old test); one
measurement = wall-clock seconds of one ``recflow.evaluation.metrics.evaluate`` call with every metric of
``METRICS`` and the catalog; the result is the median of ``--repeats`` measurements after one warm-up call.
Goal: the median under 1.0 s on 2 cores ("fast enough to run inside the compare task without notice").
Writes ``evaluation.json`` and ``evaluation.md`` to ``--out`` (default ``bench/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from machine import ROOT, machine_info

from recflow.constants import COL_ITEM, COL_SCORE, COL_USER
from recflow.evaluation.metrics import METRICS, evaluate

GOAL_SECONDS = 1.0


def movielens_shaped(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(truth, predictions, catalog size) with MovieLens-100K's numbers of users, items and rows."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 943, 1682
    truth = pd.DataFrame(
        {COL_USER: rng.integers(0, n_users, 25_000), COL_ITEM: rng.integers(0, n_items, 25_000)}
    ).drop_duplicates()
    pred = pd.DataFrame(
        {
            COL_USER: np.repeat(np.arange(n_users), 10),
            COL_ITEM: np.concatenate([rng.choice(n_items, 10, replace=False) for _ in range(n_users)]),
            COL_SCORE: rng.random(n_users * 10),
        }
    )
    return truth, pred, n_items


def run(repeats: int) -> dict[str, Any]:
    truth, pred, n_items = movielens_shaped()
    call = lambda: evaluate(truth, pred, metrics=list(METRICS), k=10, catalog=range(n_items))  # noqa: E731
    call()  # warm-up: first-call imports and allocations are not the steady state
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {
        "machine": machine_info(["numpy", "pandas"]),
        "command": " ".join([sys.executable, *sys.argv]),
        "shape": {"users": 943, "items": n_items, "truth_rows": len(truth), "k": 10, "metrics": sorted(METRICS)},
        "seconds": [round(s, 4) for s in seconds],
        "median_seconds": round(median, 4),
        "goals": [
            {"goal": f"median evaluate() at MovieLens-100K shape < {GOAL_SECONDS} s", "met": median < GOAL_SECONDS}
        ],
    }


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    goal = report["goals"][0]
    return "\n".join(
        [
            "# Evaluation at MovieLens-100K shape",
            "",
            f"{m['cpus']} CPUs, load {m['load_avg'][0]:.1f}, commit {m['commit']}, {m['date']}; "
            f"`{report['command']}`. Definitions: `bench/evaluation.py` docstring.",
            "",
            f"- runs (s): {', '.join(str(s) for s in report['seconds'])}",
            f"- median: {report['median_seconds']} s",
            f"- goal: {goal['goal']}: met: {'true' if goal['met'] else 'false'}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    report = run(args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "evaluation.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
