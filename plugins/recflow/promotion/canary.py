"""The canary run: load a registered version in a fresh process and reproduce its recorded top-K.

Run: ``python -m recflow.promotion.canary --version V --digest D [--prefix registry] [--bucket B]``; prints one
JSON object ``{"passed", "reasons", ...}`` on stdout. Exit code 0 whenever a verdict was reached (pass or
fail); 2 with one line on stderr when it could not even load the version (that is a failed canary too).
The gate (:mod:`recflow.promotion.gate`) starts it and stores the verdict as a canary blessing; the registry
only keeps blessings, it never runs checks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from recflow.config.settings import load_settings
from recflow.evaluation.canary import CANARY_FILE, check_canary
from recflow.registry import ModelRegistry, RegistryError, resolve_serving_version


def run_in_fresh_process(
    version: str, digest: str, *, prefix: str, bucket: str, timeout: float = 600
) -> dict[str, Any]:
    """Run the canary in a new interpreter; a crash or timeout is a failed verdict with its reason."""
    argv = [sys.executable, "-m", "recflow.promotion.canary", "--version", version, "--digest", digest]
    argv += ["--prefix", prefix, "--bucket", bucket]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        return {"passed": False, "reasons": [f"canary did not finish in {timeout:.0f} s"]}
    if done.returncode == 0:
        verdict: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return verdict
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return {"passed": False, "reasons": [f"canary could not load {version}: {last}"]}


def main(argv: list[str] | None = None) -> int:
    # deferred: pandas/numpy load only in the canary's own process; the gate imports this module to start it
    from recflow.models.artifact import load_recommender

    parser = argparse.ArgumentParser(prog="python -m recflow.promotion.canary", description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--digest", required=True, help="sha256 of the manifest the canary must load")
    parser.add_argument("--prefix", default="registry")
    parser.add_argument("--bucket", default=None, help="models bucket (default: RECFLOW_MODELS_BUCKET)")
    args = parser.parse_args(argv)
    s3 = load_settings().s3
    if args.bucket:
        s3 = replace(s3, models_bucket=args.bucket)
    registry = ModelRegistry.from_settings(s3, prefix=args.prefix)
    try:
        serving = resolve_serving_version(registry, pinned=args.version, digest=args.digest)
        with tempfile.TemporaryDirectory(prefix="recflow-canary-") as tmp:
            folder = registry.fetch(serving.model, tmp)
            expected_file = folder / CANARY_FILE
            if not expected_file.is_file():
                raise RegistryError(f"{serving.uri} has no {CANARY_FILE}: it was not recorded at training time")
            expected = json.loads(expected_file.read_text())
            verdict = check_canary(load_recommender(Path(folder)), expected)
    except Exception as exc:  # any failure to load is the verdict; one line, no traceback
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(verdict, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
