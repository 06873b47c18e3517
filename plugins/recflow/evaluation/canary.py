"""The canary: before a version serves, a fresh process loads it from S3 and must reproduce its own
top-K for a fixed set of users, as recorded at training time.

Why a fresh process (TFX's InfraValidator): the training process had the model in memory; only a new
interpreter that downloads the registered bytes, verifies the manifest digest and every file, and
rebuilds the recommender from them proves that what serves is what was evaluated. The canary users are
fixed per artifact (the ``CANARY_USERS`` training users with the smallest sha256 of their id), so the
check needs no data access. It passes when, for every canary user, the top-K items overlap the
recorded ones by at least ``min_overlap`` and the scores of shared items differ by at most
``score_tolerance`` (floating-point libraries may reorder near-ties; a wrong model does not come close).

Run: ``python -m recflow.evaluation.canary --version V --digest D [--prefix registry] [--bucket B]``; prints one JSON
object ``{"passed", "reasons", ...}`` on stdout. Exit code 0 whenever a verdict was reached (pass or
fail); 2 with one line on stderr when it could not even load the version (that is a failed canary too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER

if TYPE_CHECKING:
    import pandas as pd

    from recflow.models.artifact import Recommender

CANARY_FILE = "canary.json"
CANARY_USERS = 20
CANARY_K = 10
MIN_OVERLAP = 0.9
SCORE_TOLERANCE = 1e-4


def canary_users(users: Sequence[str], n: int = CANARY_USERS) -> list[str]:
    """A fixed, data-independent choice: the ``n`` ids with the smallest sha256 (stable across runs)."""
    return sorted(users, key=lambda u: hashlib.sha256(str(u).encode()).hexdigest())[:n]


def record_canary(recommender: Recommender, k: int = CANARY_K) -> dict[str, Any]:
    """The expected answers, written into the artifact as ``canary.json`` at training time."""
    users = canary_users(list(recommender.index.users))
    return {"k": k, "users": users, "top_k": _top_k(recommender, users, k)}


def canary_record(users: list[str], recs: pd.DataFrame, k: int = CANARY_K) -> dict[str, Any]:
    """``canary.json`` from top-``k`` rows scored elsewhere (in Spark, for a model whose user side is
    not in the driver's memory); ``users`` must be :func:`canary_users` of the training users."""
    return {"k": k, "users": users, "top_k": top_k_answers(recs, users)}


def _top_k(recommender: Recommender, users: list[str], k: int) -> dict[str, dict[str, list[Any]]]:
    return top_k_answers(recommender.recommend(users, k=k, exclude_seen=True), users)


def top_k_answers(recs: pd.DataFrame, users: list[str]) -> dict[str, dict[str, list[Any]]]:
    """Items and scores per user in rank order (an empty list for a user with no rows)."""
    recs = recs.sort_values([COL_USER, COL_RANK])
    out: dict[str, dict[str, list[Any]]] = {u: {"items": [], "scores": []} for u in users}
    for user, group in recs.groupby(COL_USER, sort=False):
        out[str(user)] = {"items": group[COL_ITEM].astype(str).tolist(), "scores": group[COL_SCORE].tolist()}
    return out


def check_canary(
    recommender: Recommender,
    expected: dict[str, Any],
    *,
    min_overlap: float = MIN_OVERLAP,
    score_tolerance: float = SCORE_TOLERANCE,
) -> dict[str, Any]:
    """Score the recorded users again; the verdict with the worst overlap and score difference seen."""
    users = [str(u) for u in expected["users"]]
    if not users:
        return {"passed": False, "reasons": [f"{CANARY_FILE} lists no canary users"]}
    got = _top_k(recommender, users, int(expected["k"]))
    worst_overlap, worst_diff, failures = 1.0, 0.0, []
    for user in users:
        want = dict(zip(expected["top_k"][user]["items"], expected["top_k"][user]["scores"], strict=True))
        have = dict(zip(got[user]["items"], got[user]["scores"], strict=True))
        overlap = len(want.keys() & have.keys()) / max(1, len(want))
        diff = max((abs(want[i] - have[i]) for i in want.keys() & have.keys()), default=0.0)
        worst_overlap, worst_diff = min(worst_overlap, overlap), max(worst_diff, diff)
        if overlap < min_overlap or diff > score_tolerance:
            failures.append(f"user {user}: top-{expected['k']} overlap {overlap:.2f}, max score diff {diff:.3g}")
    summary = (
        f"{len(users)} canary users: worst overlap {worst_overlap:.2f} (needs >= {min_overlap}), "
        f"worst score diff {worst_diff:.3g} (needs <= {score_tolerance})"
    )
    return {
        "passed": not failures,
        "reasons": [summary, *failures[:5]],
        "users": len(users),
        "worst_overlap": worst_overlap,
        "worst_score_diff": worst_diff,
    }


def run_in_fresh_process(
    version: str, digest: str, *, prefix: str, bucket: str, timeout: float = 600
) -> dict[str, Any]:
    """Run the canary in a new interpreter; a crash or timeout is a failed verdict with its reason."""
    argv = [sys.executable, "-m", "recflow.evaluation.canary", "--version", version, "--digest", digest]
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
    from dataclasses import replace

    from recflow.config.settings import load_settings
    from recflow.models.artifact import load_recommender
    from recflow.registry import ModelRegistry, RegistryError, resolve_serving_version

    parser = argparse.ArgumentParser(prog="python -m recflow.evaluation.canary", description=__doc__.splitlines()[0])
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
