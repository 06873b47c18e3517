"""Batch-scoring benchmark: recflow's job path against Spark's recommendForAllUsers and the GEMM limits.

Launch (``make bench-scoring`` runs this):
    .venv/bin/python bench/scoring.py --sizes 10000 100000 1000000 --out bench/results

Shapes: ``users`` x 10^4 items, rank 64, float32 factors drawn from a fixed seed; every user has 20
distinct seen items in the lake, one a day over the 20 days up to the scored day (so a day is 1/20 of
the look-back, and every user is active), k = 10. Each method runs in a fresh child process
so its peak memory is its own. Methods (rows of the table):

* ``recflow``: the real job, ``recflow.batch.job.run_batch_scoring`` on ``local[2]``: the seen table
  brought up to the scored day (yesterday's snapshot, built before the clock starts as the previous
  night would have, plus the day's interactions: ``snapshot_seconds``), active users and seen arrays
  read from it (``inputs_seconds`` includes the update), users joined to their factor rows from the artifact's Parquet,
  ``mapInArrow`` scoring core, each task writing its staged Parquet files and checking them read back,
  the ``batch_scores`` GX suite over those checks on the driver, publish. ``worker_peak_rss_mb`` = the
  largest peak RSS (VmHWM) of any Python worker (what must stay flat).
* ``recflow_window_inputs``: the same job with the seen items aggregated from the 20-day window
  (the path before the seen table; forced with a 1-day retention), for comparison.
* ``recflow_score_write``: the same run's scoring stage only (join -> score -> staged Parquet written
  and checked per user), read from the job's log line, to separate it from the inputs and the suite.
* ``spark_recommend_for_all_users``: a Spark ``ALSModel`` holding the same factors (a tiny fitted model
  whose factor Parquet is replaced, then loaded), ``recommendForAllUsers(10)`` written to Parquet (the
  write materialises it). Plain: no seen removal. Not run above ``--spark-max-users`` (default 10^6:
  at 10^7 its output alone is 10^8 rows through one 6 GB driver JVM on 2 cores, over half an hour here).
* ``gemm_limit``: ``U @ I.T`` in blocks of 4096 users, multithreaded BLAS over all cores, nothing else.
* ``gemm_topk_limit``: one process per core, single-threaded BLAS, each GEMM + ``argpartition`` top-10 +
  sort of the 10 on its share of users (no seen removal).
* ``ncf_rerank`` / ``ncf_model_predict``: NeuMF re-ranking 200 candidates per user with the scoring core,
  against ``model.predict`` on exactly the same (user, item) pairs; ``users`` = users re-ranked.

seconds = wall time of the measured step (data generation, Spark start-up and imports excluded);
users/s = users / seconds. ``peak_rss_mb_all`` (the like-for-like memory column) = the sum of the peak
RSS (VmHWM) of every process of a method: the benchmark child (the driver's Python), the JVM and every
Python worker for the Spark methods, every share for ``gemm_topk_limit``. A sum of peaks bounds what the
method held at once from above. The 1-minute load average before and after each method is recorded: the
machine is shared, so read the numbers with it.

Goals, read as worded (each in ``scoring.json`` with its value and ``met``): at 10^6 users the whole
job >= 3x ``recommendForAllUsers`` and >= 0.6x ``gemm_topk_limit``; users/s at 10^7 within 20 % of the
rate at 10^6, either way (0.8 <= ratio <= 1.2; not met when 10^7 was not run); the largest Python
worker's peak flat (<= 1.25x from the smallest size to the largest); NCF re-rank >= 0.6x
``model.predict``. The run's commit, command line, start and end time and load are under ``run``.
Writes scoring.json, scoring.md and scoring.png, then the README's row (``bench/readme_rows.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from machine import finish_run, provenance_line, start_run  # bench/machine.py (this folder is on sys.path)
from readme_rows import sync_readme

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, RANK, SEEN, K = 10_000, 64, 20, 10
SCORED_DAY = date(2026, 11, 2)
#: One seen item a day per user: the lake holds the SEEN days up to the scored day.
LAKE_DAYS = tuple(SCORED_DAY - timedelta(days=SEEN - 1 - d) for d in range(SEEN))
NCF_USERS, NCF_CANDIDATES = 2_000, 200


def _factors(n_users: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(42)
    items = (rng.standard_normal((N_ITEMS, RANK)) / 8).astype(np.float32)
    users = (rng.standard_normal((n_users, RANK)) / 8).astype(np.float32)
    return users, items


def _work(n_users: int) -> Path:
    from recflow.config.settings import state_dir

    return state_dir() / "bench-scoring" / f"users={n_users}-days={SEEN}"


def _vmhwm_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) / 1024 if match else 0.0


def _all_peaks_mb(jvm: int) -> float:
    """Sum of the peak RSS of this process, the JVM and every process under the JVM (Python workers)."""
    return _vmhwm_mb(os.getpid()) + _vmhwm_mb(jvm) + sum(_vmhwm_mb(p.pid) for p in _descendants(jvm))


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _prepare(n_users: int) -> dict[str, Any]:
    """Lake (20 seen items per user, one a day) and an ALS artifact with the benchmark's factors."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recflow.constants import COL_ITEM, COL_TS, COL_USER
    from recflow.models.als import AlsParams, AlsRecommender
    from recflow.models.index import IdIndex, SeenItems

    work = _work(n_users)
    done = work / "prepared.json"
    if done.is_file():
        return dict(json.loads(done.read_text()))
    shutil.rmtree(work, ignore_errors=True)
    users_f, items_f = _factors(n_users)
    users = [f"u{n:07d}" for n in range(n_users)]
    items = [f"i{n:05d}" for n in range(N_ITEMS)]
    rng = np.random.default_rng(7)
    # 20 distinct items per user: a random offset and stride modulo the catalog (no per-user loop)
    start = rng.integers(0, N_ITEMS, n_users)[:, None]
    seen = (start + np.arange(SEEN)[None, :] * 37) % N_ITEMS
    user_col = pa.array(users)
    lake = work / "lake"
    for d, day in enumerate(LAKE_DAYS):
        folder = lake / "interactions" / f"event_date={day}"
        folder.mkdir(parents=True)
        item_col = pa.array(np.asarray(items, dtype=object)[seen[:, d]])
        ts = pa.array(np.full(n_users, np.datetime64(day, "us")), type=pa.timestamp("us", tz="UTC"))
        pq.write_table(pa.table({COL_USER: user_col, COL_ITEM: item_col, COL_TS: ts}), folder / "part-0.parquet")
    # The artifact's seen index is the training one; the job never reads it (it uses the lake's).
    index = IdIndex(users=tuple(users), items=tuple(items))
    training = SeenItems(indptr=np.arange(n_users + 1, dtype=np.int64) * 1, indices=seen[:, 0].astype(np.int32))
    model = AlsRecommender(index, training, users_f, items_f, AlsParams(rank=RANK))
    artifact = work / "artifact"
    model.save(artifact)
    (artifact / "lineage.json").write_text(json.dumps({"window": {"start": str(LAKE_DAYS[0])}}))
    info = {"lake": str(lake), "artifact": str(artifact)}
    done.write_text(json.dumps(info))
    return info


# ------------------------------------------------------------------------------------------- methods


def _recflow(n_users: int, *, window_inputs: bool = False) -> dict[str, Any]:
    import logging

    from recflow.batch.job import read_interactions, run_batch_scoring
    from recflow.batch.layout import ScoringRequest
    from recflow.batch.seen_snapshot import SEEN_RETENTION_DAYS, Window, snapshot_path, update_snapshot
    from recflow.spark.session import get_spark

    info = _prepare(n_users)
    log_lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(record.getMessage())

    logging.getLogger("recflow").addHandler(Keep())
    logging.getLogger("recflow").setLevel(logging.INFO)
    spark = get_spark(
        "bench-scoring", master="local[2]", conf={"spark.driver.memory": "6g", "spark.ui.enabled": "false"}
    )
    try:
        request = ScoringRequest(day=SCORED_DAY, version="als-bench", k=K, active_days=SEEN)
        retention = 1 if window_inputs else SEEN_RETENTION_DAYS  # 1 day < the active window: aggregation
        if not window_inputs:  # last night's snapshot exists; tonight's is the job's to write
            yesterday = Window(SCORED_DAY - timedelta(days=1), retention)
            update_snapshot(spark, read_interactions(spark, info["lake"]), info["lake"], yesterday)
            shutil.rmtree(snapshot_path(info["lake"], SCORED_DAY), ignore_errors=True)
            log_lines.clear()
        t0 = time.perf_counter()
        summary = run_batch_scoring(spark, artifact_dir=Path(info["artifact"]), request=request,
                                    lake_root=info["lake"], seen_retention_days=retention)  # fmt: skip
        seconds = time.perf_counter() - t0
        jvm = spark.sparkContext._gateway.proc.pid if spark.sparkContext._gateway.proc else os.getpid()  # type: ignore[union-attr]
        workers = [p for p in _descendants(jvm) if "python" in p.name()]
        worker_peak = max((_vmhwm_mb(p.pid) for p in workers), default=0.0)
        all_peaks = _all_peaks_mb(jvm)
    finally:
        spark.stop()
    staged = next(
        (float(m.group(1)) for line in log_lines if (m := re.search(r"scored and staged \S+ in ([\d.]+) s", line))),
        None,
    )
    inputs = next(
        (
            float(m.group(1))
            for line in log_lines
            if (m := re.search(r"active users and their seen items in ([\d.]+) s", line))
        ),
        None,
    )
    snapshot = next(
        (
            float(m.group(1))
            for line in log_lines
            if (m := re.search(r"seen snapshot as of \S+ \(\w+\) in ([\d.]+) s", line))
        ),
        None,
    )
    assert summary["rows"] == n_users * K, summary
    out = {"seconds": seconds, "peak_rss_mb_all": all_peaks, "worker_peak_rss_mb": round(worker_peak, 1),
           "python_workers": len(workers), "summary": summary}  # fmt: skip
    if staged is not None:
        out["score_write_seconds"] = staged
    if inputs is not None:
        out["inputs_seconds"] = round(inputs + (snapshot or 0.0), 1)
    if snapshot is not None:
        out["snapshot_seconds"] = snapshot
    return out


def _spark_recommend(n_users: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from pyspark.ml.recommendation import ALS, ALSModel

    from recflow.spark.session import get_spark

    work = _work(n_users) / "spark-als"
    shutil.rmtree(work, ignore_errors=True)
    users_f, items_f = _factors(n_users)
    spark = get_spark("bench-als", master="local[2]", conf={"spark.driver.memory": "6g", "spark.ui.enabled": "false"})
    try:
        tiny = spark.createDataFrame(pd.DataFrame({"u": [0, 1], "i": [0, 1], "r": [1.0, 1.0]}))
        ALS(rank=RANK, maxIter=1, userCol="u", itemCol="i", ratingCol="r", implicitPrefs=True).fit(tiny).save(str(work))
        for name, mat in (("userFactors", users_f), ("itemFactors", items_f)):
            shutil.rmtree(work / name)
            frame = pd.DataFrame({"id": np.arange(len(mat), dtype=np.int32), "features": list(mat)})
            spark.createDataFrame(frame, "id int, features array<float>").write.parquet(str(work / name))
        model = ALSModel.load(str(work))
        t0 = time.perf_counter()
        model.recommendForAllUsers(K).write.mode("overwrite").parquet(str(work / "recs"))
        seconds = time.perf_counter() - t0
        jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
        peak = _all_peaks_mb(jvm)
    finally:
        spark.stop()
    return {"seconds": seconds, "peak_rss_mb_all": peak, "ran": "ALSModel.recommendForAllUsers(10).write.parquet"}


def _gemm(n_users: int) -> dict[str, Any]:
    users_f, items_f = _factors(n_users)
    item_t = items_f.T.copy()
    t0 = time.perf_counter()
    for start in range(0, n_users, 4096):
        users_f[start : start + 4096] @ item_t
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb_all": _vmhwm_mb(os.getpid())}


def _gemm_topk_share(n_users: int, part: int, parts: int) -> dict[str, Any]:
    import numpy as np

    users_f, items_f = _factors(n_users)
    mine = np.ascontiguousarray(users_f[part::parts])
    del users_f
    item_t = items_f.T.copy()
    t0 = time.perf_counter()
    for start in range(0, len(mine), 1024):
        scores = mine[start : start + 1024] @ item_t
        top = np.argpartition(scores, N_ITEMS - K, axis=1)[:, N_ITEMS - K :]
        vals = np.take_along_axis(scores, top, axis=1)
        np.take_along_axis(top, np.argsort(-vals, axis=1), axis=1)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb_all": _vmhwm_mb(os.getpid())}


def _ncf() -> dict[str, Any]:
    import numpy as np

    from recflow.models.index import IdIndex, SeenItems
    from recflow.models.ncf import NcfParams, NcfRecommender, build_neumf
    from recflow.scoring.core import Ragged, UserBatch, popular_candidates, score_batch

    params = NcfParams()
    index = IdIndex(users=tuple(f"u{n}" for n in range(NCF_USERS)), items=tuple(f"i{n}" for n in range(N_ITEMS)))
    rng = np.random.default_rng(3)
    seen = SeenItems(
        indptr=np.arange(NCF_USERS + 1, dtype=np.int64), indices=rng.integers(0, N_ITEMS, NCF_USERS).astype(np.int32)
    )
    model = NcfRecommender(index, seen, build_neumf(NCF_USERS, N_ITEMS, params), params)
    codes = np.arange(NCF_USERS, dtype=np.int64)
    batch = UserBatch(codes=codes, seen=Ragged.empty(NCF_USERS))
    cands = popular_candidates(model, NCF_CANDIDATES)
    score_batch(model, batch.take(np.arange(16)), k=K)  # warm-up (graph tracing)
    t0 = time.perf_counter()
    score_batch(model, batch, k=K)
    rerank = time.perf_counter() - t0
    users = np.repeat(codes.astype(np.int32), len(cands))
    items = np.tile(cands, NCF_USERS)
    model.model.predict({"user": users[:1000], "item": items[:1000]}, verbose=0)
    t0 = time.perf_counter()
    model.model.predict({"user": users, "item": items}, batch_size=65536, verbose=0)
    predict = time.perf_counter() - t0
    return {
        "rerank_seconds": rerank,
        "predict_seconds": predict,
        "pairs": len(users),
        "peak_rss_mb_all": _vmhwm_mb(os.getpid()),
    }


def child(method: str, n_users: int, part: int = 0, parts: int = 1) -> dict[str, Any]:
    if method == "recflow":
        return _recflow(n_users)
    if method == "recflow_window_inputs":
        return _recflow(n_users, window_inputs=True)
    if method == "spark_recommend_for_all_users":
        return _spark_recommend(n_users)
    if method == "gemm_limit":
        return _gemm(n_users)
    if method == "gemm_topk_share":
        return _gemm_topk_share(n_users, part, parts)
    if method == "ncf":
        return _ncf()
    raise SystemExit(f"unknown method {method}")


# ------------------------------------------------------------------------------------------- driver


def _spawn(method: str, n_users: int, env: dict[str, str], part: int = 0, parts: int = 1) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--users",
        str(n_users),
        "--part",
        str(part),
        "--parts",
        str(parts),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed with {proc.returncode}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def _row(
    method: str, users: int, seconds: float, peak: float, load: tuple[float, float], **extra: Any
) -> dict[str, Any]:
    return {"method": method, "users": users, "seconds": round(seconds, 3), "users_per_s": round(users / seconds, 1),
            "peak_rss_mb_all": round(peak, 1), "load_before": load[0], "load_after": load[1], **extra}  # fmt: skip


def measure(n_users: int, spark_max_users: int) -> list[dict[str, Any]]:
    cores = os.cpu_count() or 1
    base = {**os.environ}
    single = {**base, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    _prepare(n_users)
    methods = ["gemm_limit", "gemm_topk_limit", "recflow", "recflow_window_inputs", "spark_recommend_for_all_users"]
    if n_users > spark_max_users:
        methods.remove("spark_recommend_for_all_users")
    for method in methods:
        before = os.getloadavg()[0]
        if method == "gemm_topk_limit":
            t0 = time.perf_counter()
            parts = [_spawn("gemm_topk_share", n_users, single, p, cores) for p in range(cores)]
            results = [_result(p) for p in parts]
            # Wall time of the slowest share (the children start together; generation excluded).
            seconds = max(r["seconds"] for r in results)
            peak = sum(r["peak_rss_mb_all"] for r in results)
            rows.append(_row(method, n_users, seconds, peak, (before, os.getloadavg()[0]), processes=cores,
                             wall_with_startup=round(time.perf_counter() - t0, 1)))  # fmt: skip
            continue
        env = single if method.startswith("recflow") else base
        r = _result(_spawn(method, n_users, env))
        load = (before, os.getloadavg()[0])
        extra = {k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb_all", "score_write_seconds")}
        rows.append(_row(method, n_users, r["seconds"], r["peak_rss_mb_all"], load, **extra))
        if "score_write_seconds" in r and method == "recflow":
            rows.append(_row("recflow_score_write", n_users, r["score_write_seconds"], r["peak_rss_mb_all"], load))
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals read as worded, each with its value and ``met`` (see the module docstring)."""

    def ups(method: str, users: int) -> float | None:
        return next((r["users_per_s"] for r in rows if r["method"] == method and r["users"] == users), None)

    def goal(text: str, value: Any, met: bool) -> dict[str, Any]:
        return {"goal": text, "value": value, "met": bool(met)}

    out = []
    ours = ups("recflow", 10**6)
    for method, times in (("spark_recommend_for_all_users", 3.0), ("gemm_topk_limit", 0.6)):
        other = ups(method, 10**6)
        ratio = round(ours / other, 2) if ours and other else None
        out.append(goal(f"whole job >= {times}x {method} at 10^6 users", ratio or "not measured",
                        ratio is not None and ratio >= times))  # fmt: skip
    big = ups("recflow", 10**7)
    ratio = round(big / ours, 2) if big and ours else None
    out.append(goal("users/s at 10^7 within 20% of the rate at 10^6, either way (0.8-1.2)",
                    ratio or "not measured", ratio is not None and 0.8 <= ratio <= 1.2))  # fmt: skip
    peaks = {r["users"]: r["worker_peak_rss_mb"] for r in rows if r["method"] == "recflow"}
    if len(peaks) >= 2:
        lo, hi = peaks[min(peaks)], peaks[max(peaks)]
        out.append(goal("largest Python worker's peak RSS flat in users (<= 1.25x from smallest to largest size)",
                        f"{lo:.0f} -> {hi:.0f} MB", hi <= 1.25 * lo))  # fmt: skip
    ncf = next((r for r in rows if r["method"] == "ncf_rerank"), None)
    pred = next((r for r in rows if r["method"] == "ncf_model_predict"), None)
    if ncf and pred:
        value = round(pred["seconds"] / ncf["seconds"], 2)
        out.append(goal("NCF re-rank >= 0.6x in-process model.predict on the same pairs", value, value >= 0.6))
    return out


def write(rows: list[dict[str, Any]], out_dir: Path, sizes: list[int], run: dict[str, Any]) -> None:
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    met = goals(rows)
    doc = {
        "run": run,
        "rows": rows,
        "goals": met,
        "sizes_requested": sizes,
        "shape": {"items": N_ITEMS, "rank": RANK, "seen_per_user": SEEN, "k": K},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "numpy": np.__version__,
        "definitions": __doc__,
    }
    (out_dir / "scoring.json").write_text(json.dumps(doc, indent=2, default=str))
    lines = [
        "# Batch scoring benchmark",
        "",
        f"{N_ITEMS} items, rank {RANK}, {SEEN} seen items per user, k={K}; {os.cpu_count()} cores (shared). "
        "Definitions: `bench/scoring.py` docstring.",
        provenance_line(run),
        "",
        "| method | users | seconds | users/s | peak RSS MB, all processes | largest worker MB | load 1m before/after"
        " |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        load = f"{r['load_before']:.1f} / {r['load_after']:.1f}"
        worker = r.get("worker_peak_rss_mb", "")
        lines.append(f"| {r['method']} | {r['users']} | {r['seconds']} | {r['users_per_s']} | {r['peak_rss_mb_all']} | "
                     f"{worker} | {load} |")  # fmt: skip
    lines += ["", "| goal | value | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['value']} | {'met' if g['met'] else 'NOT met'} |" for g in met]
    (out_dir / "scoring.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = ("recflow", "recflow_window_inputs", "recflow_score_write", "spark_recommend_for_all_users", "gemm_limit",
             "gemm_topk_limit")  # fmt: skip
    for method in shown:
        pts = sorted((r["users"], r["users_per_s"]) for r in rows if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("users")
    ax.set_ylabel("users / s")
    ax.set_title(f"Batch scoring, {N_ITEMS} items, rank {RANK}, k={K}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "scoring.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--child")
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--part", type=int, default=0)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--spark-max-users", type=int, default=1_000_000, help="no recommendForAllUsers above this")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.users, args.part, args.parts), default=str))
        return
    run = start_run()
    rows: list[dict[str, Any]] = []
    before = os.getloadavg()[0]
    r = _result(_spawn("ncf", 0, {**os.environ}))
    load = (before, os.getloadavg()[0])
    peak = r["peak_rss_mb_all"]
    rows.append(_row("ncf_rerank", NCF_USERS, r["rerank_seconds"], peak, load, pairs=r["pairs"]))
    rows.append(_row("ncf_model_predict", NCF_USERS, r["predict_seconds"], peak, load, pairs=r["pairs"]))
    for n in args.sizes:
        rows += measure(n, args.spark_max_users)
        write(rows, args.out, args.sizes, finish_run(run))  # after every size: a long run keeps what it measured
    if args.out.resolve() == (ROOT / "bench" / "results").resolve():
        sync_readme()
    print((args.out / "scoring.md").read_text())


if __name__ == "__main__":
    main()
