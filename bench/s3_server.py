"""What the multi-identity S3 server (versitygw) costs the local set-up, beside S3Proxy (the default).

Launch: ``make bench-s3-server`` (``python bench/s3_server.py``). Writes ``s3_server.json`` and
``s3_server.md`` to ``--out`` (default ``bench/results``).

Definitions:
- **build**: ``recflow.services.versitygw.ensure_binary`` into an empty state folder, with an empty Go
  build cache (``GOCACHE``) and, with ``--cold-modules``, an empty module cache (``GOMODCACHE``: the
  modules are downloaded from the Go proxy, as on a clean CI machine). Wall seconds; CPU seconds and the
  peak RSS are those of the build's child processes (``getrusage(RUSAGE_CHILDREN)``: the largest single
  process, in practice the Go linker or compiler). The binary is then copied into the state folder's
  cache when that has none, so the least-privilege test does not build again;
- **start**: wall seconds from launching the server (binary or jar already there) until a signed
  ListBuckets succeeds and the buckets (and, for versitygw, the policies, versioning and Object Lock) are
  provisioned: ``manager.ensure_services_up``;
- **memory**: the server process's RSS (``VmRSS``) after provisioning and 5 s idle.

Goal, from issue 21's brief: "Keep CI's total under 60 min (today ~27 min)": met when 27.1 min (the
clean-clone CI run at 311a372) plus the cold build stays under 60 min (an estimate: it adds the build to
the last measured total; the test's own seconds are a few more).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import ROOT, finish_run, machine_info, provenance_line, start_run

from recflow.config.identities import role_identities
from recflow.config.settings import load_settings, state_dir
from recflow.services import manager
from recflow.services.process import LOCALHOST, read_live_pid
from recflow.services.s3 import S3ProxyService
from recflow.services.versitygw import VERSION, VersityService, binary_path, ensure_binary

CI_MINUTES_AT_311A372 = 27.1
CI_LIMIT_MINUTES = 60.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def measure_build(cold_modules: bool) -> dict[str, Any]:
    """A versitygw build into a fresh state folder with a fresh Go build cache (see the module docstring)."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-s3-build-"))
    saved = {k: os.environ.get(k) for k in ("GOCACHE", "GOMODCACHE")}
    os.environ["GOCACHE"] = str(scratch / "gocache")
    if cold_modules:
        os.environ["GOMODCACHE"] = str(scratch / "gomodcache")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        binary = ensure_binary(scratch / "state")
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        size = binary.stat().st_size
        cached = binary_path(state_dir())
        if not cached.exists():  # keep the build: the state folder's cache, as a first start would fill it
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(binary, cached)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for folder in scratch.rglob("*"):  # the module cache is written read-only
            if folder.is_dir():
                folder.chmod(0o755)
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 0),  # ru_maxrss is in KiB on Linux
        "binary_mb": round(size / 2**20, 1),
        "cold_modules": cold_modules,
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure_start(kind: str) -> dict[str, Any]:
    """Start ``kind`` (``versitygw`` or ``s3proxy``) in a scratch state; wall seconds to provisioned, idle RSS."""
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-s3-{kind}-"))
    settings = load_settings()
    port = _free_port()
    s3 = dataclasses.replace(settings.s3, endpoint_url=f"http://{LOCALHOST}:{port}")
    own = dataclasses.replace(settings, s3=s3, state=scratch)
    if kind == "versitygw":
        target = binary_path(scratch)
        target.parent.mkdir(parents=True)
        target.symlink_to(ensure_binary(state_dir()))
        service: Any = VersityService(s3, scratch, port, role_identities(scratch), name=f"bench-{kind}")
    else:
        (scratch / "jars").symlink_to(state_dir() / "jars")  # the resolved jar, as after a first start
        service = S3ProxyService(s3, scratch, port, name=f"bench-{kind}")
    started = time.perf_counter()
    try:
        manager.ensure_services_up(own, services=[service], timeout=180)
        wall = time.perf_counter() - started
        time.sleep(5)
        rec = read_live_pid(manager.pid_file(scratch, service))
        assert rec is not None, f"{kind} is not running"
        rss = _rss_mb(rec.pid)
    finally:
        manager.services_down(own, services=[service])
        shutil.rmtree(scratch, ignore_errors=True)
    return {"start_s": round(wall, 1), "rss_mb": rss}


def markdown(doc: dict[str, Any]) -> str:
    b, v, p = doc["build"], doc["start"]["versitygw"], doc["start"]["s3proxy"]
    goal = doc["goals"][0]
    return "\n".join(
        [
            "# The multi-identity S3 server's cost (`make bench-s3-server`)",
            "",
            provenance_line(doc["run"]),
            "Definitions: `bench/s3_server.py` docstring.",
            "",
            f"| | versitygw {VERSION} | S3Proxy |",
            "|---|---:|---:|",
            f"| one-time build, wall s ({'modules downloaded' if b['cold_modules'] else 'modules cached'}) "
            f"| {b['wall_s']} | none |",
            f"| build CPU s | {b['cpu_s']} | |",
            f"| build peak RSS, MB (largest process) | {b['peak_rss_mb']:.0f} | |",
            f"| binary, MB | {b['binary_mb']} | 93.8 (jar) |",
            f"| start to provisioned, s | {v['start_s']} | {p['start_s']} |",
            f"| RSS idle, MB | {v['rss_mb']} | {p['rss_mb']} |",
            "",
            f"Goal: {goal['goal']}: **{'met' if goal['met'] else 'not met'}** ({goal['how']}).",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--cold-modules", action="store_true", help="an empty Go module cache (downloads)")
    args = parser.parse_args()
    run = start_run()
    build = measure_build(args.cold_modules)
    start = {kind: measure_start(kind) for kind in ("versitygw", "s3proxy")}
    total = CI_MINUTES_AT_311A372 + build["wall_s"] / 60
    goals = [{"goal": "Keep CI's total under 60 min (today ~27 min)", "met": total < CI_LIMIT_MINUTES,
              "how": f"{CI_MINUTES_AT_311A372} min + {build['wall_s'] / 60:.1f} min build = {total:.1f} min, "
                     "an estimate"}]  # fmt: skip
    doc = {"run": finish_run(run), "machine": machine_info(["boto3"]), "build": build, "start": start,
           "goals": goals}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "s3_server.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "s3_server.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
