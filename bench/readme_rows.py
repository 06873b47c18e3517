"""The README's benchmark rows, rendered from ``bench/results/*.json`` so they cannot drift from them.

``python bench/readme_rows.py`` rewrites those rows of ``README.md`` in place; ``bench/data.py`` and
``bench/scoring.py`` call :func:`sync_readme` after writing their results, and
``tests/unit/bench/test_readme_rows.py`` (part of ``make test``) fails when the README and the committed
results disagree. A row is found by the start of its first cell (:data:`ROWS`); everything else in the
README is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _verdicts(goals: list[dict[str, Any]]) -> str:
    return "; ".join(f"{g['goal']} ({'met' if g['met'] else 'NOT met'}: {g['value']})" for g in goals)


def _load(doc: dict[str, Any]) -> str:
    run = doc["run"]
    loads = (run["load_avg_start"][0], run["load_avg_end"][0])
    busy = ", machine not quiet" if loads[0] > doc["machine"]["cpus"] else ""  # as bench/machine.py judges it
    return f"load {loads[0]:.1f}-{loads[1]:.1f}{busy}, {run['started'][:10]}"


def ingestion_row(doc: dict[str, Any]) -> str:
    """The ingestion row from ``data.json``: rows/s of ``ingest`` and ``read`` and the peaks, per size."""
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for r in doc["results"]:
        by_size.setdefault(r["rows"], {})[r["mode"]] = r
    parts = []
    for rows, modes in sorted(by_size.items()):
        ingest, read = modes.get("ingest"), modes.get("read")
        text = f"{rows:,} rows: ingest {ingest['rows_per_s']:,} rows/s" if ingest else f"{rows:,} rows:"
        if read:
            text += f", read-only {read['rows_per_s']:,} rows/s"
        if ingest:
            text += f", ingest peak RSS {ingest['peak_rss_mib']} MiB"
        parts.append(text)
    first = f"ingestion end to end ([data.md](bench/results/data.md), {_load(doc)})"
    return f"| {first} | {'; '.join(parts)} | {_verdicts(doc['goals'])} |"


def scoring_row(doc: dict[str, Any]) -> str:
    """The batch-scoring row from ``scoring.json``: whole-job and Spark users/s and memory, per size."""
    rows = doc["rows"]
    parts = []
    for users in sorted({r["users"] for r in rows if r["method"] == "recflow"}):
        at = {r["method"]: r for r in rows if r["users"] == users}
        ours = at["recflow"]
        text = f"{users:,} users: whole job {ours['users_per_s']:,.0f} users/s ({ours['peak_rss_mb_all']:,.0f} MB)"
        if "recflow_window_inputs" in at:
            window = at["recflow_window_inputs"]["users_per_s"]
            text += f", with the window aggregated instead of the seen table {window:,.0f}"
        if "spark_recommend_for_all_users" in at:
            spark = at["spark_recommend_for_all_users"]
            text += f", recommendForAllUsers {spark['users_per_s']:,.0f} ({spark['peak_rss_mb_all']:,.0f} MB)"
        if "gemm_topk_limit" in at:
            text += f", GEMM+top-K limit {at['gemm_topk_limit']['users_per_s']:,.0f}"
        parts.append(text)
    first = f"batch scoring, users x 10^4 items, rank 64 ([scoring.md](bench/results/scoring.md), {_load(doc)})"
    memory = "MB = sum of every process's peak RSS of the method, JVM included"
    return f"| {first} | {'; '.join(parts)} ({memory}) | {_verdicts(doc['goals'])} |"


#: README row (by the start of its first cell) -> (result file, renderer).
ROWS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "| ingestion end to end": ("data.json", ingestion_row),
    "| batch scoring, users x": ("scoring.json", scoring_row),
}


def expected_rows(results: Path = RESULTS) -> dict[str, str]:
    """Row prefix -> the row the README must hold, rendered from the result files in ``results``."""
    return {prefix: render(json.loads((results / name).read_text())) for prefix, (name, render) in ROWS.items()}


def sync_readme(readme: Path = ROOT / "README.md", results: Path = RESULTS) -> None:
    """Replace each generated row of ``readme`` with the one rendered from ``results``; a missing row is an error."""
    lines = readme.read_text().split("\n")
    for prefix, row in expected_rows(results).items():
        found = [n for n, line in enumerate(lines) if line.startswith(prefix)]
        if len(found) != 1:
            raise SystemExit(f"{readme}: expected one row starting {prefix!r}, found {len(found)}")
        lines[found[0]] = row
    readme.write_text("\n".join(lines))


if __name__ == "__main__":
    sync_readme()
