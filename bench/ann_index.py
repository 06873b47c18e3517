"""recflow's item index (``recflow.scoring.ann``) inside the scoring core, against exact scoring.

Launch (``make bench-ann`` runs it after ``bench/ann.py``, the library comparison):
    .venv/bin/python bench/ann_index.py --items 10000 100000 1000000 --out bench/results

What it measures, per catalog size (``--items``) at rank ``--rank``, on a random-factor ALS model
(``recflow.models.synthetic.random_als``: i.i.d. normal factors, the hardest case for an index, 20 seen
items per user, ``--users`` users):

* exact: ``score_batch(..., n_candidates=0)``, every item scored; the reference for recall.
* each index configuration (``--configs``, ``factory:build_depth:search_depth:pool``): build time with
  ``--threads`` threads (what training pays; configurations of one structure share one build and differ
  only in how deep they search and how many candidates they re-score), the scoring core's time per
  request with the index (one user per call, as ``recflow serve`` scores a request; the same for
  exact), and recall@10 = |top-10
  with the index ∩ exact top-10| / 10 over ``--queries`` users, seen items removed in both (the answer
  a user gets, not the index's raw neighbours).
* threshold: the smallest measured catalog from which the index answers a request faster than exact
  scoring, which is what ``recflow.scoring.ann.ANN_MIN_ITEMS`` should be.

Scoring is single-threaded (BLAS and faiss search), as in one serving worker. The machine is shared:
every row records the load average. Writes ``ann_index.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import (
    finish_run,
    machine_info,
    provenance_line,
    start_run,
)  # bench/machine.py (this folder is on sys.path when run)

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

ROOT = Path(__file__).resolve().parents[1]
K = 10


def parse_config(text: str) -> Any:
    from recflow.scoring.ann import AnnParams

    factory, build, search, pool = text.split(":")
    return AnnParams(factory=factory, build_depth=int(build), search_depth=int(search), pool=int(pool))


def per_request_ms(model: Any, batch: Any, n: int, **kwargs: Any) -> float:
    """Median milliseconds of one-user calls of the core over the first ``n`` users."""
    from recflow.scoring.core import score_batch

    times = []
    for i in range(n):
        one = batch.take(np.array([i]))
        began = time.perf_counter()
        score_batch(model, one, k=K, **kwargs)
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1000)


def run(n_items: int, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import faiss

    from recflow.models.synthetic import random_als
    from recflow.scoring.ann import CandidateIndex
    from recflow.scoring.core import UserBatch, score_batch

    faiss.omp_set_num_threads(1)
    model = random_als(tmp / str(n_items), n_users=args.users, n_items=n_items, rank=args.rank, seen_per_user=20,
                       seed=n_items)  # fmt: skip
    codes = np.random.default_rng(0).permutation(args.users)[: args.queries]
    batch = UserBatch(codes=codes, seen=model.seen.ragged(codes))
    truth = score_batch(model, batch, k=K, n_candidates=0).items
    exact_ms = per_request_ms(model, batch, args.timed, n_candidates=0)
    rows = [{"items": n_items, "method": "exact", "build_s": 0.0, "ms_per_request": round(exact_ms, 3),
             "recall@10": 1.0, "load_1m": round(os.getloadavg()[0], 2)}]  # fmt: skip
    print(json.dumps(rows[-1]), flush=True)
    built: dict[tuple[str, int], tuple[Any, float]] = {}  # one build per structure; searches retuned on it
    for text in args.configs:
        params = parse_config(text)
        load = os.getloadavg()[0]
        key = (params.factory, params.build_depth)
        if key not in built:
            began = time.perf_counter()
            built[key] = (CandidateIndex.build(model.item_factors, params, threads=args.threads),
                          time.perf_counter() - began)  # fmt: skip
            faiss.omp_set_num_threads(1)
        index, build_s = built[key]
        index.retune(search_depth=params.search_depth, pool=params.pool)
        model.candidate_index = index
        found = score_batch(model, batch, k=K, ann_min_items=0).items
        recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))
        rows.append({"items": n_items, "method": f"index {text}", "build_s": round(build_s, 1),
                     "ms_per_request": round(per_request_ms(model, batch, args.timed, ann_min_items=0), 3),
                     "recall@10": round(recall, 4), "load_1m": round(load, 2)})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        model.candidate_index = None
    return rows


def threshold(rows: list[dict[str, Any]]) -> int | None:
    """The smallest catalog at which some index with recall@10 >= 0.95 answers a request faster than exact."""
    for n in sorted({r["items"] for r in rows}):
        exact = next(r for r in rows if r["items"] == n and r["method"] == "exact")
        if any(r["ms_per_request"] < exact["ms_per_request"] and r["recall@10"] >= 0.95
               for r in rows if r["items"] == n and r["method"] != "exact"):  # fmt: skip
            return n
    return None


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    big = [r for r in rows if r["items"] >= 1_000_000 and r["method"] != "exact"]
    best = max(big, key=lambda r: r["recall@10"], default=None)
    return [
        {
            "goal": "10^6 items with the index: recall@10 >= 0.95 against exact",
            "measured": f"{best['method']}: {best['recall@10']} (built in {best['build_s']} s)" if best else "not run",
            "met": bool(best and best["recall@10"] >= 0.95),
        }
    ]


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        "# recflow's item index in the scoring core, against exact scoring",
        "",
        provenance_line(doc["run"]),
        "",
        f"{m['cpus']} cores, faiss-cpu {m['versions']['faiss-cpu']}; each row has the load at its start. "
        f"Rank {doc['rank']}, {doc['users']:,} users, recall over "
        f"{doc['queries']} users, time per request = median of {doc['timed']} one-user calls of `score_batch`, one "
        f"thread; index built with {doc['threads']} threads. Configuration = faiss factory : build depth "
        "(efConstruction) : search depth (efSearch or nprobe) : candidates re-scored (`PQx4fs`, recflow's default: "
        "a scan of every item's 4-bit product-quantization codes, one code per two dimensions, whose depths are "
        "unused). Factors i.i.d. normal.",
        "",
        "| items | method | build s | ms per request | recall@10 | load |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['items']:,} | {r['method']} | {r['build_s']} | {r['ms_per_request']} | {r['recall@10']} | "
            f"{r['load_1m']} |"
            for r in doc["rows"]
        ],
        "",
        f"Smallest measured catalog at which the index answers a request faster than exact (recall >= 0.95): "
        f"{doc['threshold'] if doc['threshold'] is not None else 'none measured'}.",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *[f"| {g['goal']} | {g['measured']} | {str(g['met']).lower()} |" for g in doc["goals"]],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 30_000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--timed", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=[
            "PQx4fs:1:1:200",
            "PQx4fs:1:1:400",
            "PQx4fs:1:1:800",
            "HNSW32:40:256:200",
            "HNSW32:40:1024:200",
            "IVF1024,Flat:1:64:200",
        ],
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    run_record = start_run()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for n in args.items for row in run(n, args, Path(tmp))]
    doc = {"rows": rows, "rank": args.rank, "users": args.users, "queries": args.queries, "timed": args.timed,
           "threads": args.threads, "threshold": threshold(rows), "goals": goals(rows),
           "run": finish_run(run_record), "machine": machine_info(["faiss-cpu", "numpy"])}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ann_index.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "ann_index.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
