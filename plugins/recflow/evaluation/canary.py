"""The canary: before a version serves, a fresh process loads it from S3 and must reproduce its own
top-K for a fixed set of users, as recorded at training time.

Why a fresh process (TFX's InfraValidator): the training process had the model in memory; only a new
interpreter that downloads the registered bytes, verifies the manifest digest and every file, and
rebuilds the recommender from them proves that what serves is what was evaluated. The canary users are
fixed per artifact (the ``CANARY_USERS`` training users with the smallest sha256 of their id), so the
check needs no data access. It passes when, for every canary user, the top-K items overlap the
recorded ones by at least ``min_overlap`` and the scores of shared items differ by at most
``score_tolerance`` (floating-point libraries may reorder near-ties; a wrong model does not come close).

This module holds the record and the check; :mod:`recflow.promotion.canary` runs the check in a fresh
process (``python -m recflow.promotion.canary``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER

if TYPE_CHECKING:
    import pandas as pd

    from recflow.models.base import Recommender


CANARY_FILE = "canary.json"
CANARY_USERS = 20
CANARY_K = 10
MIN_OVERLAP = 0.9
SCORE_TOLERANCE = 1e-4


def canary_users(users: Sequence[str], n: int = CANARY_USERS) -> list[str]:
    """A fixed, data-independent choice: the ``n`` ids with the smallest sha256 (stable across runs)."""
    return sorted(users, key=lambda u: hashlib.sha256(str(u).encode()).hexdigest())[:n]


def build_canary_record(users: list[str], recs: pd.DataFrame, k: int = CANARY_K) -> dict[str, Any]:
    """``canary.json`` from top-``k`` rows scored elsewhere (in Spark, for a model whose user side is
    not in the driver's memory); ``users`` must be :func:`canary_users` of the training users."""
    return {"k": k, "users": users, "top_k": top_k_answers(recs, users)}


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
    got = scored_top_k(recommender, users, int(expected["k"]))
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


def scored_top_k(recommender: Recommender, users: list[str], k: int) -> dict[str, dict[str, list[Any]]]:
    return top_k_answers(recommender.recommend(users, k=k, exclude_seen=True), users)
