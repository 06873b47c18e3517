"""Ingestion benchmark: landing-file read and end-to-end validation rows/s and peak RSS at 10^6 and 10^7 rows.

Launch (``make bench-data`` runs this; ~6 min on 2 cores, most of it generating the 10^7-row file once):
    .venv/bin/python bench/data.py --sizes 1000000 10000000 --out bench/results

Definitions (each measurement runs in a fresh interpreter, so ``ru_maxrss`` is that run's peak):

* input: one day of synthetic purchase-card events (``recflow.data.synthetic.write_day``, seed fixed),
  as gzip CSV, the usual landing format; generated once into ``$RECFLOW_STATE/bench-data`` and reused.
  Rows = the lines the validator reports as landed (the weekday factor makes them differ from the
  requested size).
* ``read``: ``iter_landing`` + ``coerce_chunk`` over the whole file (decompress, parse, cast), no rules.
* ``ingest``: ``validate_partition`` end to end on the local lake: read, row rules on every row, GX on its
  sample (``gx_sample_rows``, default 100 000), duplicate checks, Parquet lake partition and quarantine
  written and published, JSON/HTML reports and GX Data Docs built. Nothing lazy: the files exist when
  the clock stops.
* rows/s = rows / wall seconds of that step in the child (imports and file generation excluded);
  ``cpu_seconds`` = user + system CPU time of that step (all threads): the cost that does not depend on
  how busy the shared machine is.
* peak RSS = ``ru_maxrss`` of the child; ``baseline`` is the RSS after imports, before the step.
  Goal: the ``ingest`` peak at the largest size within 10 % of the peak at the smallest (memory flat
  with file size: bounded chunks, hashes of seen ids spilled to disk, JSON lines parsed by pyarrow).
* load = the 1-minute load average just before each measurement (the machine is shared: read the
  throughput against it; peak memory does not depend on it).
* goals, read as worded: ``ingest`` rows/s >= 0.5x ``read`` rows/s of the same file, at every size;
  ``ingest`` >= 200 000 rows/s at every size; the ``ingest`` peak at the largest size within 10 % of
  the peak at the smallest. Each is written to ``data.json`` with its value and ``met``.
* ``profile`` (on unless ``--no-profile``): ``validate_partition`` once more at each size under
  cProfile, one profiler per Python thread (read-ahead, main, write-behind; pyarrow's own C++ threads
  are not seen); the CPU seconds of each thread, the seconds inside each stage (:data:`PHASES`) and
  the functions with the most cumulative and own time go into ``data.json``
  (``profile``, by requested size), so where the time goes is recorded beside the rate.

Writes ``data.json`` (everything, with the run's provenance, machine info and versions), ``data.md``
(the table) and ``data.png`` (rows/s and peak RSS against size) to ``--out``; with the default
``--out``, the README's row too (``bench/readme_rows.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from machine import finish_run, machine_info, provenance_line, start_run  # bench/machine.py (on sys.path)
from readme_rows import sync_readme

DAY = date(2026, 11, 3)  # a Tuesday (weekday factor close to 1)

ROOT = Path(__file__).resolve().parents[1]


def _landing_file(rows: int) -> Path:
    """Generate (once) and return the gzip CSV landing file for ``rows`` requested events."""
    from recflow.config.settings import state_dir
    from recflow.data import synthetic

    out = state_dir() / "bench-data" / f"rows={rows}"
    path = synthetic.landing_file(out, DAY, "csv", gzip=True)
    if not path.is_file():
        t0 = time.perf_counter()
        synthetic.write_day(DAY, out, gzip=True, events_per_day=rows, chunk_rows=250_000)
        print(f"generated {path} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return path


def _child(mode: str, path: str, gx_sample_rows: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import logging

    logging.disable(logging.INFO)
    from recflow.data.landing import coerce_chunk, iter_landing
    from recflow.validation import LandingDayRequest, validate_partition

    start = resource.getrusage(resource.RUSAGE_SELF)
    baseline = start.ru_maxrss
    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    try:
        t0 = time.perf_counter()
        if mode == "read":
            rows = 0
            for chunk in iter_landing(path):
                coerce_chunk(chunk.frame.reset_index(drop=True))
                rows += chunk.rows
            extra: dict[str, Any] = {}
        else:
            result = validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, gx_sample_rows=gx_sample_rows))
            rows = result.landed
            extra = {"accepted": result.accepted, "quarantined": result.quarantined}
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    end = resource.getrusage(resource.RUSAGE_SELF)
    peak = end.ru_maxrss
    cpu = (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime)
    return {
        "mode": mode,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "cpu_seconds": round(cpu, 2),
        "baseline_rss_mib": round(baseline / 1024),
        "peak_rss_mib": round(peak / 1024),
        "gx_sample_rows": gx_sample_rows if mode == "ingest" else None,
        **extra,
    }


#: The stages of ingestion the profile reports (cumulative CPU seconds over every thread): (label, module,
#: function). They nest (the judge calls the hashing, the rules, the lookups; the cast runs inside the
#: judge when it was not read ahead), so they do not add up to the total.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("read and parse the landing file", "recflow.data.landing", "iter_landing"),
    ("cast to the contract dtypes", "recflow.data.casting", "coerce_chunk"),
    ("judge each chunk (RowJudge.take)", "recflow.validation.row_judge", "RowJudge.take"),
    ("hash the event ids", "recflow.validation.hashing", "hash_values"),
    ("row rules (row_masks)", "recflow.validation.rules", "row_masks"),
    ("duplicate lookups, within the file and across days", "recflow.validation.hashing", "_SeenHashes.contains"),
    ("recording the ids seen", "recflow.validation.hashing", "_SeenHashes.add"),
    ("GX sample", "recflow.validation.hashing", "HashSample.add"),
    ("Arrow tables of accepted rows", "recflow.validation.output", "accepted_table"),
    ("Parquet encoding and writing", "recflow.validation.output", "LazyWriter._write"),
    ("GX on the sample, Data Docs", "recflow.validation.landing_day_gx", "run_gx_once"),
    ("reports and publishing", "recflow.validation.landing_day", "_publish"),
)


def _phase_keys() -> dict[str, tuple[str, int, str]]:
    """The profiler's key (file, first line, name) of each stage's function."""
    import importlib
    import inspect

    out = {}
    for label, module, qualname in PHASES:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        code = inspect.unwrap(obj).__code__
        out[label] = (code.co_filename, code.co_firstlineno, code.co_name)
    return out


def _profile(path: str, gx_sample_rows: int, top: int = 25) -> dict[str, Any]:
    """``validate_partition`` under cProfile in every thread: stages, threads, top functions.

    Ingestion runs in three threads (the read-ahead reads and casts, the main thread judges, the
    write-behind encodes Parquet), so one profiler per thread (``threading.Thread.run`` wrapped); the
    stages of :data:`PHASES` are summed over the threads. cProfile's own clock (wall time inside each
    function) is kept: ``time.thread_time`` as its clock is a system call per function entry and exit,
    which inflated GX's Python-heavy validation ten times. Each thread's CPU seconds are measured
    apart (``time.thread_time`` at its start and end), so waits can be told from work.
    """
    import cProfile
    import logging
    import pstats
    import threading

    logging.disable(logging.INFO)
    from recflow.validation import LandingDayRequest, validate_partition

    profilers: dict[str, cProfile.Profile] = {}
    thread_cpu: dict[str, float] = {}
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profiler = profilers.setdefault(self.name, cProfile.Profile())
        cpu = time.thread_time()
        profiler.enable()
        try:
            thread_run(self)
        finally:
            profiler.disable()
            thread_cpu[self.name] = thread_cpu.get(self.name, 0.0) + time.thread_time() - cpu

    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    main = profilers.setdefault("main", cProfile.Profile())
    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    try:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        main.enable()
        validate_partition(LandingDayRequest(path, day=DAY, lake_root=lake, gx_sample_rows=gx_sample_rows))
        main.disable()
        seconds = time.perf_counter() - t0
        thread_cpu["main"] = time.thread_time() - cpu0
    finally:
        threading.Thread.run = thread_run  # type: ignore[method-assign]
        shutil.rmtree(lake, ignore_errors=True)
    merged = pstats.Stats(profilers["main"])
    for name, p in profilers.items():
        if name != "main":
            merged.add(p)
    entries = merged.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

    def rows(key: int) -> list[dict[str, Any]]:
        ranked = sorted(entries.items(), key=lambda kv: kv[1][key], reverse=True)[:top]
        return [
            {
                "function": f"{Path(f).name}:{line}({name})",
                "calls": nc,
                "own_s": round(tt, 3),
                "cumulative_s": round(ct, 3),
            }
            for (f, line, name), (_cc, nc, tt, ct, _callers) in ranked
        ]

    phases = {label: round(entries.get(key, (0, 0, 0, 0.0))[3], 3) for label, key in _phase_keys().items()}
    return {
        "seconds_profiled": round(seconds, 2),
        "clock": "stages and functions: seconds inside them (cProfile's clock), summed over threads",
        "thread_cpu_s": {name: round(cpu, 2) for name, cpu in thread_cpu.items() if cpu >= 0.005},
        "phases_s": phases,
        "by_cumulative": rows(3),
        "by_own_time": rows(2),
    }


def _measure(mode: str, path: Path, gx_sample_rows: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--path", str(path), "--gx-sample-rows", str(gx_sample_rows)]
    load = os.getloadavg()[0]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    record: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    record["file_mib"] = round(path.stat().st_size / 2**20, 1)
    record["load_avg_1m"] = round(load, 2)
    print(json.dumps(record), file=sys.stderr)
    return record


def goals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal as worded, with its value and whether it is met (what ``data.json`` and the README say)."""
    out: list[dict[str, Any]] = []
    by = {(r["mode"], r["requested"]): r for r in records}
    for (mode, size), r in sorted(by.items(), key=lambda kv: kv[0][1]):
        if mode != "ingest":
            continue
        out.append({"goal": f"ingest >= 200 000 rows/s at {r['rows']:,} rows", "value": r["rows_per_s"],
                    "met": r["rows_per_s"] >= 200_000})  # fmt: skip
        read = by.get(("read", size))
        if read:
            ratio = r["rows_per_s"] / read["rows_per_s"]
            out.append({"goal": f"ingest >= 0.5x read rows/s at {r['rows']:,} rows", "value": round(ratio, 2),
                        "met": ratio >= 0.5})  # fmt: skip
    ingest = sorted((r for r in records if r["mode"] == "ingest"), key=lambda r: r["rows"])
    if len(ingest) >= 2:
        ratio = ingest[-1]["peak_rss_mib"] / ingest[0]["peak_rss_mib"]
        text = f"ingest peak RSS at {ingest[-1]['rows']:,} rows <= 1.10x the peak at {ingest[0]['rows']:,}"
        out.append({"goal": text,
                    "value": round(ratio, 3), "met": ratio <= 1.10})  # fmt: skip
    return out


def _markdown(
    records: list[dict[str, Any]], machine: dict[str, Any], run: dict[str, Any], profile: dict[str, Any]
) -> str:
    lines = [
        "# Ingestion benchmark (`make bench-data`)",
        "",
        f"{machine['cpus']} CPUs, Python {machine['python']}. Definitions: `bench/data.py` docstring.",
        provenance_line(run),
        "",
        "| mode | rows | gzip MiB | seconds | CPU s | rows/s | load (1 min) | baseline RSS MiB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['mode']} | {r['rows']:,} | {r['file_mib']} | {r['seconds']} | {r.get('cpu_seconds', 'n/a')} | "
            f"{r['rows_per_s']:,} | "
            f"{r.get('load_avg_1m', 'n/a')} | {r['baseline_rss_mib']} | {r['peak_rss_mib']} |"
        )
    lines += ["", "| goal | value | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['value']} | {'met' if g['met'] else 'NOT met'} |" for g in goals(records)]
    for size, prof in profile.items():
        threads = ", ".join(f"{name} {cpu} s" for name, cpu in prof.get("thread_cpu_s", {}).items())
        lines += ["", f"Where the time goes: `ingest` of the {int(size):,}-row file under cProfile in every "
                  f"thread ({prof['seconds_profiled']} s wall profiled; CPU seconds per thread: {threads}). "
                  "Stages (seconds inside each, summed over the threads; they nest, so they do not add up):",
                  "", "| stage | seconds |", "|---|---:|"]  # fmt: skip
        lines += [f"| {label} | {sec} |" for label, sec in prof.get("phases_s", {}).items()]
        lines += ["", "Top 15 functions by cumulative time (own time and the full lists are in `data.json`):",
                  "", "| function | calls | own s | cumulative s |", "|---|---:|---:|---:|"]  # fmt: skip
        lines += [f"| `{p['function']}` | {p['calls']} | {p['own_s']} | {p['cumulative_s']} |"
                  for p in prof["by_cumulative"][:15]]  # fmt: skip
    return "\n".join(lines) + "\n"


def _plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in sorted({r["mode"] for r in records}):
        rs = [r for r in records if r["mode"] == mode]
        ax1.plot([r["rows"] for r in rs], [r["rows_per_s"] for r in rs], marker="o", label=mode)
        ax2.plot([r["rows"] for r in rs], [r["peak_rss_mib"] for r in rs], marker="o", label=mode)
    ax1.axhline(200_000, color="grey", linestyle="--", label="goal")
    for ax, title in ((ax1, "rows/s"), (ax2, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("rows")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--modes", nargs="+", default=["read", "ingest"], choices=["read", "ingest"])
    parser.add_argument("--gx-sample-rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the cProfile run")
    parser.add_argument("--child", choices=["read", "ingest", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "profile":
        print(json.dumps(_profile(args.path, args.gx_sample_rows)))
        return
    if args.child:
        print(json.dumps(_child(args.child, args.path, args.gx_sample_rows)))
        return
    run = start_run()
    records = []
    for size in args.sizes:
        path = _landing_file(size)
        for mode in args.modes:
            records.append({"requested": size, **_measure(mode, path, args.gx_sample_rows)})
    profile: dict[str, Any] = {}
    for size in args.sizes if args.profile else []:
        cmd = [sys.executable, __file__, "--child", "profile", "--path", str(_landing_file(size)),
               "--gx-sample-rows", str(args.gx_sample_rows)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        profile[str(size)] = json.loads(out.splitlines()[-1])
    run = finish_run(run)
    machine = machine_info(("pandas", "pyarrow", "numpy", "great_expectations"))
    doc = {"run": run, "machine": machine, "results": records, "goals": goals(records), "profile": profile}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "data.md").write_text(_markdown(records, machine, run, profile))
    _plot(records, args.out / "data.png")
    if args.out.resolve() == (ROOT / "bench" / "results").resolve():
        sync_readme()
    print(_markdown(records, machine, run, profile))


if __name__ == "__main__":
    main()
