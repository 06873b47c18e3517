"""Streaming benchmark: the engines side by side on the real local broker, plus the in-process limit.

Launch (``make bench-streaming`` runs this; ~8 min on 2 cores):
    .venv/bin/python bench/streaming.py --out bench/results

Definitions:

* model: ``bench/bench_world.py`` (shared with ``bench/serving.py``): a random-factor ALS champion,
  ``--users`` x ``--items`` at rank ``--rank``, with the item index training builds from
  ``recflow.scoring.ann.ANN_MIN_ITEMS`` items on (the scorer and the in-process limit use it), registered
  and promoted in bucket ``recflow-bench-streaming``; requests draw users uniformly from 110% of the known
  users, so ~9% take the cold-start fallback. k = 10.
  ``ratio_to_in_process``: each row's sustained rate over the in-process answer path.
* latency: per request, from just before the client produces it to when the client consumes its
  answer (Kafka both ways, queueing, scoring). p50/p99 over the first answer of every request.
* warm-up: after the scorers start, 3 s at 1,000 req/s that no row records (``bench/serving.py`` warms
  up likewise).
* offered_rps: requests sent / seconds the sender took (the sender is one Python process; when it
  cannot reach the asked rate, the row says so). sustained_rps: answers received / seconds from the
  first send to the last answer. ``flood`` rows send as fast as the sender can. A rate counts as
  sustained for the throughput goal only when sustained_rps >= ``KEEP_UP`` (98%) of offered_rps.
* sent / answered / dlq / lost: per row from the client's matching; ``reconciliation`` recounts every
  request record of an engine's runs against answers and dead letters on the broker.
* in-process limit, measured in the same run on the same model: ``model`` = the scoring core alone
  (``recflow.scoring.core.score_batch`` with the users' seen items) on batches of 1,000 requests' users;
  ``answer path`` = parse + score + encode of those batches (what the scorer does per poll, minus Kafka).
  The throughput goal's "within 2x of the in-process limit" is checked against the answer path, one
  process on one core; the ratio to the scoring call alone is printed beside it (the model is a
  1,500 x 150 matrix product, so that call is an order of magnitude cheaper than any Kafka round trip).
* where the p99 accrues (extra columns): request leg = record timestamp (the client's producer) to the
  scorer reading it; in scorer = read to answer produced; answer leg = the rest, to the client's read.
* client settings (a latency-sensitive caller): producer ``linger.ms=1``, ``acks=all``, idempotent; the
  listener polls with ``fetch.wait.max.ms=5``; payloads are built before sending; the process freezes
  its long-lived objects out of the garbage collector's sight after setup (``quiet_gc``). The sender
  and the listener are threads of this process, on the same 2 cores as the broker and the scorer.
* swap pause: a run at ``--swap-rate`` req/s during which the champion changes A -> B -> A; the
  scorer's own serving-loop pause per swap, and the worst client latency in the second after a swap.
* Spark micro-batch: ``bench/spark_candidate.py`` (Structured Streaming, ``foreachBatch``) with the same
  parsing, scoring and answer encoding; Real-Time Mode is probed by the same job (``--probe-real-time``).

Writes ``streaming.json`` (everything, with machine info and load average), ``streaming.md`` (tables)
and ``streaming.png`` (latency against offered rate) to ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_world import bench_world, promote  # bench/, on sys.path when run
from machine import finish_run, machine_info, provenance_line, start_run

# NumPy is imported inside functions, after this: the in-process limit is measured with the scorer's
# BLAS setting (single-threaded, see recflow.streaming.__main__).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "recflow-bench-streaming"
#: A rate is sustained when the answers keep up with it: answered rate >= this share of the offered rate.
KEEP_UP = 0.98
#: Where the p99 accrues (see ``legs``), as extra columns of the table.
LEGS = ("p99_request_leg_ms", "p99_scorer_ms", "p99_answer_leg_ms", "p99_batch")
LEG_HEADS = ("p99 request leg", "p99 in scorer", "p99 answer leg", "p99 batch")
FIELDS = ("engine", "offered_rps", "sustained_rps", "p50_ms", "p99_ms", "sent", "answered", "dlq", "lost")
#: Each row's sustained rate as a share of the in-process answer path (one process, same run, same model).
RATIO = "ratio_to_in_process"


def in_process_limit(folder: Path, users: list[str], n: int = 20_000, batch: int = 1000) -> dict[str, float]:
    from recflow.models.artifact import load_recommender
    from recflow.streaming.answers import score_requests
    from recflow.streaming.protocol import Request, encode_answer, parse_request

    model = load_recommender(folder)
    rng = __import__("numpy").random.default_rng(0)
    picks = rng.choice(users, size=n)
    raw = [json.dumps({"request_id": f"r{i}", "user_id": str(u), "k": 10}).encode() for i, u in enumerate(picks)]
    parsed = [parse_request(v, None, partition=0, offset=i, timestamp_ms=0) for i, v in enumerate(raw)]
    requests = [p for p in parsed if isinstance(p, Request)]
    from recflow.scoring.core import UserBatch, score_batch

    codes = model.index.user_codes([str(u) for u in picks])
    score_requests(model, requests[:batch])  # warm up
    began = time.perf_counter()
    for start in range(0, n, batch):
        chunk_codes = codes[start : start + batch]
        score_batch(model, UserBatch(codes=chunk_codes, seen=model.seen.ragged(chunk_codes)), k=10)
    model_s = time.perf_counter() - began
    # the fields the engine adds to every answer, so the encoded answers are as long as the real ones
    timing = {"received_at_ms": 1, "scoring_ms": 0.5, "batch_size": batch, "answered_at_ms": 2}
    began = time.perf_counter()
    for start in range(0, n, batch):
        chunk = [
            parse_request(v, None, partition=0, offset=i, timestamp_ms=0)
            for i, v in enumerate(raw[start : start + batch])
        ]
        reqs = [p for p in chunk if isinstance(p, Request)]
        for r, body in zip(reqs, score_requests(model, reqs), strict=True):
            encode_answer(r, items=body.items, scores=body.scores, source=body.source, model_version="v", timing=timing)
    path_s = time.perf_counter() - began
    return {"model_rps": round(n / model_s), "answer_path_rps": round(n / path_s), "batch": batch, "requests": n}


def quiet_gc() -> None:
    """What a latency-sensitive Python caller does once set up: collect, then freeze what is alive.

    Why: the load generator and the listener share this process with boto3, NumPy and the registry
    (~10^5 long-lived objects); each oldest-generation collection walked them all and paused sending
    and receiving 40-100 ms (measured), which the client then counted as the scorer's latency.
    """
    gc.collect()
    gc.freeze()


def legs(sent: dict[bytes, float], listener: Any) -> dict[str, float | None]:
    """p99 of where the time went, from the answers' timing fields (wall-clock ms, one machine).

    request leg = client produce -> scorer read (client linger, broker, scorer fetch);
    scorer = scorer read -> answer produced (parse, score, encode, queueing inside the batch);
    answer leg = the rest (scorer linger, broker, client fetch).
    """
    import numpy as np

    rows = []
    for key, t0 in sent.items():
        answers = listener.answers(key)
        timing = answers[0].doc.get("timing") if answers else None
        if not timing or timing.get("record_timestamp_ms") is None:
            continue
        total = (answers[0].received - t0) * 1000
        request = timing["received_at_ms"] - timing["record_timestamp_ms"]
        scorer = timing["answered_at_ms"] - timing["received_at_ms"]
        rows.append((request, scorer, total - request - scorer, timing["batch_size"]))
    if not rows:
        return {}
    p99 = np.percentile(np.asarray(rows, dtype=float), 99, axis=0)
    return {
        "p99_request_leg_ms": round(float(p99[0]), 1),
        "p99_scorer_ms": round(float(p99[1]), 1),
        "p99_answer_leg_ms": round(float(p99[2]), 1),
        "p99_batch": int(p99[3]),
    }


def run_rate(settings: Any, engine: str, users: list[str], rate: float | None, n: int) -> dict[str, Any]:
    from recflow.streaming.client import AnswerListener, report, send_requests

    listener = AnswerListener(settings.kafka)
    quiet_gc()
    try:
        sent = send_requests(settings.kafka, users, n=n, rate=rate, seed=int(rate or 0))
        listener.wait_for(set(sent), max(60.0, n / 2000))
        result = report(sent, listener, offered_rps=rate)
        where = legs(sent, listener)
    finally:
        listener.close()
    row = {
        "engine": engine,
        "asked_rps": rate if rate is not None else "flood",
        # sends over the seconds from the first to the last (the producer's warm-up is not sending)
        "offered_rps": round((n - 1) / max(max(sent.values()) - min(sent.values()), 1e-9), 1),
        "sustained_rps": round(result.sustained_rps, 1),
        "p50_ms": None if result.p50_ms is None else round(result.p50_ms, 1),
        "p99_ms": None if result.p99_ms is None else round(result.p99_ms, 1),
        "max_ms": None if result.max_ms is None else round(result.max_ms, 1),
        "sent": result.sent,
        "answered": result.answered,
        "dlq": result.errors,
        "lost": result.lost,
        "duplicates": result.duplicates,
        **where,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def swap_pause(
    settings: Any, registry: Any, versions: list[str], scorers: list[Any], users: list[str], rate: float
) -> dict[str, Any]:
    """A run at ``rate`` during which the champion goes A -> B -> A; worst latency right after each swap.

    With several replicas each follows the champion on its own; a swap counts as done when all have.
    """
    import threading

    from recflow.streaming.client import AnswerListener, report, send_requests

    listener = AnswerListener(settings.kafka)
    quiet_gc()
    out: dict[str, Any] = {}
    swaps: list[float] = []
    thread = threading.Thread(
        target=lambda: out.update(sent=send_requests(settings.kafka, users, n=int(rate * 14), rate=rate))
    )
    thread.start()
    when = datetime.now(UTC)
    for i, version in enumerate((versions[1], versions[0])):
        time.sleep(4)
        promote(settings, registry, version, when + timedelta(seconds=i + 1))
        for scorer in scorers:
            scorer.wait_version(version, 60)
        swaps.append(time.perf_counter())
    thread.join()
    sent = out["sent"]
    listener.wait_for(set(sent), 60)
    result = report(sent, listener, offered_rps=rate)
    worst = 0.0
    for key, t0 in sent.items():
        answers = listener.answers(key)
        if answers and any(s - 1.0 <= t0 <= s + 1.0 for s in swaps):
            worst = max(worst, (answers[0].received - t0) * 1000)
    listener.close()
    statuses = [scorer.status() or {} for scorer in scorers]
    return {
        "engine": f"consumer x{len(scorers)}",
        "rate": rate,
        "swaps": [st.get("swaps") for st in statuses],
        "loop_pause_ms_max": max((st.get("max_swap_pause_ms") or 0.0) for st in statuses),
        "worst_latency_near_swap_ms": round(worst, 1),
        "p99_ms": result.p99_ms and round(result.p99_ms, 1),
        "max_ms": result.max_ms and round(result.max_ms, 1),
        "errors": result.errors,
        "lost": result.lost,
        "versions": result.model_versions,
    }


def spark_engine(
    settings: Any, users: list[str], rates: list[float], duration: float, tmp: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from recflow.services import spark_kafka_jars
    from recflow.services.process import group_members, start_detached, stop_group
    from recflow.spark.session import pyspark_home

    jars = ",".join(str(j) for j in spark_kafka_jars())
    base = [
        str(pyspark_home() / "bin" / "spark-submit"),
        "--master",
        "local[2]",
        "--jars",
        jars,
        "--conf",
        "spark.ui.enabled=false",
        str(ROOT / "bench" / "spark_candidate.py"),
    ]
    env = {**os.environ, "RECFLOW_MODELS_BUCKET": BUCKET, "PYSPARK_PYTHON": sys.executable}
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    rows = []
    ready = tmp / "spark.ready"
    rec = start_detached(
        [*base, "--checkpoint", str(tmp / "ckpt"), "--ready-file", str(ready)],
        cwd=ROOT,
        log_path=tmp / "spark.log",
        pid_path=tmp / "spark.pid",
        env=env,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and time.monotonic() < deadline and group_members(rec.pid):
            time.sleep(0.5)
        if not ready.exists():
            raise RuntimeError(f"the Spark candidate did not start; log: {tmp / 'spark.log'}")
        time.sleep(3)
        for rate in rates:
            rows.append(run_rate(settings, "spark-microbatch", users, rate, int(rate * duration)))
    finally:
        stop_group(rec.pid)
    probe_out, ready_probe = tmp / "rtm.json", tmp / "rtm.ready"
    rec = start_detached(
        [
            *base,
            "--checkpoint",
            str(tmp / "ckpt-rtm"),
            "--ready-file",
            str(ready_probe),
            "--probe-real-time",
            "--probe-out",
            str(probe_out),
        ],
        cwd=ROOT,
        log_path=tmp / "rtm.log",
        pid_path=tmp / "rtm.pid",
        env=env,
    )
    try:
        deadline = time.monotonic() + 300
        while not ready_probe.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        stop_group(rec.pid)
    probe = (
        json.loads(probe_out.read_text())
        if probe_out.exists()
        else {"error": f"no probe result; log {tmp / 'rtm.log'}"}
    )
    return rows, probe


def consumer_engines(doc: dict[str, Any]) -> list[str]:
    """The consumer-group configurations measured (``consumer x1``, ``consumer x2``, ...), in run order."""
    return list(dict.fromkeys(r["engine"] for r in doc["rows"] if r["engine"].startswith("consumer")))


def _goals(doc: dict[str, Any], engine: str) -> list[tuple[str, str, bool | None]]:
    """The latency and throughput goals, for one consumer configuration."""
    rows = [r for r in doc["rows"] if r["engine"] == engine]

    def at(rate: float) -> dict[str, Any] | None:
        return next((r for r in rows if r["asked_rps"] == rate), None)

    # The limit the goal compares with is the answer path: what one scorer process does per request,
    # in process (the scoring call alone is reported beside it, and the ratio to it too).
    limit = doc["in_process"]["answer_path_rps"]
    model_only = doc["in_process"]["model_rps"]
    # A rate counts as sustained only if the answers kept up with it (>= 98% of the offered rate):
    # a run that falls behind still has a low p99 over a short window while its backlog grows.
    best = max(
        (
            r
            for r in rows
            if r["asked_rps"] != "flood"
            and r["p99_ms"] is not None
            and r["p99_ms"] <= 500
            and r["sustained_rps"] >= KEEP_UP * r["offered_rps"]
        ),
        key=lambda r: r["sustained_rps"],
        default=None,
    )
    r1000, r100 = at(1000), at(100)
    return [
        (
            "p99 <= 50 ms at 1,000 req/s",
            f"{r1000['p99_ms']} ms" if r1000 else "not run",
            bool(r1000 and r1000["p99_ms"] <= 50),
        ),
        (
            "p50 <= 10 ms at 100 req/s",
            f"{r100['p50_ms']} ms" if r100 else "not run",
            bool(r100 and r100["p50_ms"] <= 10),
        ),
        (
            ">= 20,000 req/s sustained with p99 <= 500 ms, within 2x of the in-process limit",
            f"{best['sustained_rps']:.0f} req/s at p99 {best['p99_ms']} ms; in-process answer path {limit} req/s "
            f"({limit / best['sustained_rps']:.1f}x); scoring call alone {model_only} req/s "
            f"({model_only / best['sustained_rps']:.0f}x)"
            if best
            else "none with p99 <= 500 ms",
            bool(best and best["sustained_rps"] >= 20_000 and best["sustained_rps"] * 2 >= limit),
        ),
    ]


def _run_goals(doc: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The goals over every consumer run: nothing lost, and the swap (on the configuration it ran on)."""
    all_consumer = [r for r in doc["rows"] if r["engine"].startswith("consumer")]
    swap = doc.get("swap") or {}
    return [
        (
            "all",
            "0 lost (all consumer runs, reconciliation)",
            f"{sum(r['lost'] for r in all_consumer)} lost; reconciliation {doc['reconciliation'].get('lost')}",
            sum(r["lost"] for r in all_consumer) == 0 and doc["reconciliation"].get("lost") == 0,
        ),
        (
            swap.get("engine", "-"),
            "swap pause <= 100 ms",
            f"loop pause {swap.get('loop_pause_ms_max')} ms; "
            f"worst latency near a swap {swap.get('worst_latency_near_swap_ms')} ms",
            None if not swap else bool((swap.get("worst_latency_near_swap_ms") or 1e9) <= 100),
        ),
    ]


def _markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"# Streaming scorer: engines on the real local broker, {doc['model']['users']:,} users x "
        f"{doc['model']['items']:,} items",
        "",
        provenance_line(doc["run"]) if "run" in doc else "",
        "",
        f"{m['cpus']} CPUs, load average at start {m['load_avg'][0]:.1f} / end {doc['load_avg_end'][0]:.1f} "
        f"(the machine is shared: every figure below competes with it), Python {m['python']}, commit {m['commit']}, "
        f"{m['date']}. Model: random ALS, {doc['model']['users']} users x {doc['model']['items']} items, rank "
        f"{doc['model']['rank']}, k = 10. Definitions: `bench/streaming.py` docstring. `consumer xN` = N scorer "
        f"processes in one consumer group on a request topic of {doc.get('partitions')} partitions; the load "
        "generator and the answer listener run in the benchmark process, on the same 2 cores.",
        "",
        "| " + " | ".join(("engine", "asked", *FIELDS[1:], "max_ms", "dup", *LEG_HEADS, "load", RATIO)) + " |",
        "|" + "---|" * (len(FIELDS) + 5 + len(LEGS)),
    ]
    for r in doc["rows"]:
        cells = [
            r["engine"],
            r["asked_rps"],
            *(r[f] for f in FIELDS[1:]),
            r["max_ms"],
            r["duplicates"],
            *(r.get(f) for f in LEGS),
            r["load_avg_1m"],
            r.get(RATIO),
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    ip = doc["in_process"]
    lines += [
        "",
        f"In-process limit (same run, same model, batches of {ip['batch']}): scoring call {ip['model_rps']} req/s, "
        f"answer path (parse + score + encode) {ip['answer_path_rps']} req/s.",
        "",
        f"Reconciliation of the consumer engine's runs: `{json.dumps(doc['reconciliation'])}`.",
        "",
        f"Swap A -> B -> A under load: `{json.dumps(doc.get('swap'))}`.",
        "",
        "Spark 4 Real-Time Mode (`trigger(realTime=...)`, present in pyspark "
        f"{m['versions']['pyspark']}), probed with our scoring: `{json.dumps(doc.get('real_time_probe'))}`.",
        "",
        "## Goals",
        "",
        "| engine | goal | measured | met |",
        "|---|---|---|---|",
    ]
    goals = [(engine, *g) for engine in consumer_engines(doc) for g in _goals(doc, engine)] + _run_goals(doc)
    for engine, goal, measured, met in goals:
        lines.append(f"| {engine} | {goal} | {measured} | {'-' if met is None else ('yes' if met else 'no')} |")
    return "\n".join(lines) + "\n"


def _plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for engine in sorted({r["engine"] for r in doc["rows"]}):
        rs = sorted(
            (r for r in doc["rows"] if r["engine"] == engine and r["p99_ms"] is not None),
            key=lambda r: r["offered_rps"],
        )
        ax.plot([r["offered_rps"] for r in rs], [r["p99_ms"] for r in rs], marker="o", label=f"{engine} p99")
        ax.plot(
            [r["offered_rps"] for r in rs], [r["p50_ms"] for r in rs], marker="x", linestyle=":", label=f"{engine} p50"
        )
    ax.axhline(50, color="grey", linestyle="--", label="p99 goal at 1k req/s (50 ms)")
    ax.axhline(500, color="grey", linestyle="-.", label="p99 bound at >= 20k req/s (500 ms)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered req/s")
    ax.set_ylabel("latency, produce to answer consumed (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def start_replicas(count: int) -> list[Any]:
    """``count`` scorer processes in one new consumer group, each owning its share of the partitions."""
    from recflow.streaming.launcher import start_scorer

    group = f"recflow-bench-{uuid.uuid4().hex[:6]}"
    scorers = [
        start_scorer({"RECFLOW_MODELS_BUCKET": BUCKET}, name=f"scorer-bench-{i}", extra_args=["--group", group])
        for i in range(count)
    ]
    try:
        for scorer in scorers:
            scorer.wait_ready(120)
        # every member owns partitions only once the group has settled (a late joiner rebalances it)
        deadline = time.monotonic() + 60
        while sum(len((sc.status() or {}).get("assigned_partitions") or []) for sc in scorers) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {count} scorers did not settle into one group")
            time.sleep(0.2)
        time.sleep(1)
    except BaseException:
        for scorer in scorers:
            scorer.stop()
        raise
    return scorers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[100, 1000, 5000, 10000, 20000, 30000, 40000, 50000, 60000, 70000]
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    parser.add_argument("--flood", type=int, default=150_000, help="requests sent as fast as possible (0: skip)")
    parser.add_argument("--spark-rates", type=float, nargs="*", default=[100, 1000])
    parser.add_argument("--spark-duration", type=float, default=15.0)
    parser.add_argument("--swap-rate", type=float, default=1000.0, help="req/s during the swap (0: no swap)")
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2],
        help="scorer processes in one consumer group, one configuration after the other (the swap runs on the last)",
    )
    # The demo's champion shape (1,500 users, 150 items): the setup the issue measured the old scorer on.
    parser.add_argument("--users", type=int, default=1_500)
    parser.add_argument("--items", type=int, default=150)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    run = start_run()
    from recflow.config.settings import load_settings
    from recflow.services import shared_services
    from recflow.services.kafka import ensure_partitions
    from recflow.streaming.reconcile import reconcile

    machine = machine_info(("confluent-kafka", "numpy", "pyspark", "prometheus-client"))
    doc: dict[str, Any] = {"machine": machine, "model": {"users": args.users, "items": args.items, "rank": args.rank}}
    with shared_services(load_settings()) as settings, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench = bench_world(settings, BUCKET, tmp, users=args.users, items=args.items, rank=args.rank,
                            models=2 if args.swap_rate else 1)  # fmt: skip
        registry, versions, users, folder_a = bench.registry, bench.versions, bench.users, bench.folder_a
        doc["in_process"] = in_process_limit(folder_a, users)
        print(json.dumps(doc["in_process"]), file=sys.stderr)
        doc["partitions"] = ensure_partitions(
            settings.kafka.bootstrap_servers,
            settings.kafka.score_requests_topic,
            max(args.replicas),
            security=settings.kafka.security,
        )
        rows: list[dict[str, Any]] = []
        since = int(time.time() * 1000)
        for count in args.replicas:
            engine = f"consumer x{count}"
            scorers = start_replicas(count)
            try:
                # warm-up, not recorded (as bench/serving.py does): the first seconds after a start pay for
                # the broker's and the clients' first requests, not for serving at a rate
                run_rate(settings, f"{engine} warm-up", users, 1000.0, 3000)
                for rate in args.rates:
                    rows.append(run_rate(settings, engine, users, rate, int(rate * args.duration)))
                if args.flood:
                    rows.append(run_rate(settings, engine, users, None, args.flood))
                if count == args.replicas[-1] and args.swap_rate:
                    doc["swap"] = swap_pause(settings, registry, versions, scorers, users, args.swap_rate)
            finally:
                for scorer in scorers:
                    scorer.stop()
        time.sleep(2)
        doc["reconciliation"] = reconcile(settings.kafka, since_ms=since).to_dict()
        if args.spark_rates:
            spark_rows, doc["real_time_probe"] = spark_engine(
                settings, users, args.spark_rates, args.spark_duration, tmp
            )
            rows += spark_rows
        for row in rows:
            row[RATIO] = round(row["sustained_rps"] / doc["in_process"]["answer_path_rps"], 3)
        doc["rows"] = rows
    doc["load_avg_end"] = os.getloadavg()
    doc["run"] = finish_run(run)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streaming.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (args.out / "streaming.md").write_text(_markdown(doc))
    _plot(doc, args.out / "streaming.png")
    print(_markdown(doc))


if __name__ == "__main__":
    main()
