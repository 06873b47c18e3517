"""Approximate nearest-neighbour candidates for large catalogs: faiss vs hnswlib vs usearch, against exact.

Launch (``make bench-ann``):
    .venv/bin/python bench/ann.py --out bench/results

What it measures, per catalog size (``--items``) at rank ``--rank``, on the same item factors:

* exact: the scoring core's way, one matrix product of the query users against every item and a
  top-10 (``np.argpartition``), batch of ``--batch`` users; the reference for recall.
* each index (inner-product HNSW, M=32, efConstruction=200; search ef=``--ef``): build time, query
  time for the same users (top-10), and recall@10 = |index top-10 ∩ exact top-10| / 10, averaged.
* the crossover: the smallest catalog at which the index answers a batch faster than exact scoring.

Factors: i.i.d. normal, the hardest case for graph indexes (no cluster structure); factors of a trained
model are clustered and usually give a higher recall at the same ef. Single-threaded (BLAS and the
indexes), as one serving worker scores. The machine is shared: every row records the load average.

This is the measurement that chooses the library and the catalog size from which the index should be
used; the index is not yet built at training time nor used by the scoring core (see the report).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # bench/machine.py (this folder is on sys.path when run)

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

ROOT = Path(__file__).resolve().parents[1]
K = 10
M, EF_CONSTRUCTION = 32, 200


def exact_top(items: np.ndarray, users: np.ndarray, k: int = K) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    scores = users @ items.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return top, time.perf_counter() - began


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def faiss_index(items: np.ndarray, ef: int) -> tuple[Any, float]:
    import faiss

    faiss.omp_set_num_threads(1)
    began = time.perf_counter()
    index = faiss.IndexHNSWFlat(items.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.add(items)
    index.hnsw.efSearch = ef
    return (lambda q: index.search(q, K)[1]), time.perf_counter() - began


def hnswlib_index(items: np.ndarray, ef: int) -> tuple[Any, float]:
    import hnswlib

    began = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=items.shape[1])
    index.init_index(max_elements=len(items), M=M, ef_construction=EF_CONSTRUCTION)
    index.add_items(items, np.arange(len(items)), num_threads=1)
    index.set_ef(ef)
    index.set_num_threads(1)
    return (lambda q: index.knn_query(q, k=K)[0]), time.perf_counter() - began


def usearch_index(items: np.ndarray, ef: int) -> tuple[Any, float]:
    from usearch.index import Index

    began = time.perf_counter()
    index = Index(ndim=items.shape[1], metric="ip", connectivity=M, expansion_add=EF_CONSTRUCTION, expansion_search=ef)
    index.add(np.arange(len(items)), items, threads=1)
    return (lambda q: index.search(q, K, threads=1).keys), time.perf_counter() - began


LIBRARIES = {"faiss": faiss_index, "hnswlib": hnswlib_index, "usearch": usearch_index}


def run(n_items: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(n_items)
    items = rng.standard_normal((n_items, args.rank), dtype=np.float32)
    users = rng.standard_normal((args.batch, args.rank), dtype=np.float32)
    truth, exact_s = exact_top(items, users)
    rows = [{"items": n_items, "method": "exact", "build_s": 0.0, "query_ms_per_user": exact_s * 1000 / args.batch,
             "recall@10": 1.0, "load_1m": round(os.getloadavg()[0], 2)}]  # fmt: skip
    for name in args.libraries:
        load = os.getloadavg()[0]
        search, build_s = LIBRARIES[name](items, args.ef)
        began = time.perf_counter()
        found = np.asarray(search(users))
        query_s = time.perf_counter() - began
        rows.append({"items": n_items, "method": name, "build_s": round(build_s, 2),
                     "query_ms_per_user": query_s * 1000 / args.batch, "recall@10": round(recall(found, truth), 4),
                     "load_1m": round(load, 2)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# Approximate nearest-neighbour candidates: faiss vs hnswlib vs usearch, against exact scoring",
        "",
        f"Commit `{m['commit']}`, {m['date']}, {m['cpus']} cores **shared with other engineers' runs** (load "
        f"average {', '.join(f'{x:.2f}' for x in m['load_avg'])} at the end; each row has its own). Command: "
        f"`{doc['command']}`. Rank {doc['rank']}, {doc['batch']} query users, top-{K}, HNSW M={M}, "
        f"efConstruction={EF_CONSTRUCTION}, ef={doc['ef']}, one thread. Factors i.i.d. normal (the hardest case).",
        "",
        "| items | method | build s | query ms per user | recall@10 | load |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['items']:,} | {r['method']} | {r['build_s']} | {r['query_ms_per_user']:.3f} | {r['recall@10']} | "
            f"{r['load_1m']} |"
            for r in doc["rows"]
        ],
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *[f"| {g['goal']} | {g['measured']} | {str(g['met']).lower()} |" for g in doc["goals"]],
    ]
    return "\n".join(lines) + "\n"


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    biggest = max(r["items"] for r in rows)
    at_big = [r for r in rows if r["items"] == biggest and r["method"] != "exact"]
    best = max(at_big, key=lambda r: r["recall@10"], default=None)
    return [
        {
            "goal": "10^6 items with the index: recall@10 >= 0.95 against exact",
            "measured": f"best at {biggest:,} items: {best['method']} {best['recall@10']}" if best else "not run",
            "met": bool(best and biggest >= 1_000_000 and best["recall@10"] >= 0.95),
        }
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--ef", type=int, default=128)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    rows = [row for n in args.items for row in run(n, args)]
    doc = {"rows": rows, "rank": args.rank, "batch": args.batch, "ef": args.ef, "goals": goals(rows),
           "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "machine": machine_info(["faiss-cpu", "hnswlib", "usearch", "numpy"])}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ann.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "ann.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
