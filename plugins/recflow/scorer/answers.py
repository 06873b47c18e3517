"""Turn one poll's valid requests into answers with one call into the scoring core.

Why here and not in the engine: the engine owns Kafka (offsets, deliveries, retries); this module owns
"requests in, (items, scores, source) out" and nothing else, so it can be measured in-process without a
broker (the benchmark's in-process limit runs exactly this function).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recflow.constants import COL_ITEM, COL_RANK, COL_SCORE, COL_USER
from recflow.models.artifact import Recommender
from recflow.scorer.protocol import Request

SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class Scored:
    """One request's answer body."""

    items: list[str]
    scores: list[float]
    source: str


def score_requests(model: Recommender, requests: Sequence[Request]) -> list[Scored]:
    """Top-k (or the re-ranked ``item_ids``) for every request, in request order, seen items removed."""
    if not requests:
        return []
    users = sorted({r.user_id for r in requests})
    known = set(np.asarray(users, dtype=object)[model.index.user_codes(users) >= 0].tolist())
    plain = [r for r in requests if r.item_ids is None]
    ranked: dict[str, tuple[list[str], list[float]]] = {}
    if plain:
        ranked = _ranked(model, sorted({r.user_id for r in plain}), max(r.k for r in plain))
    full: dict[str, tuple[list[str], list[float]]] = {}
    rerank = [r for r in requests if r.item_ids is not None]
    if rerank:
        full = _ranked(model, sorted({r.user_id for r in rerank}), model.index.n_items)
    out = []
    for r in requests:
        source = SOURCE_MODEL if r.user_id in known else SOURCE_FALLBACK
        if r.item_ids is None:
            items, scores = ranked.get(r.user_id, ([], []))
            out.append(Scored(items[: r.k], scores[: r.k], source))
        else:
            wanted = set(r.item_ids)
            items, scores = full.get(r.user_id, ([], []))
            pairs = [(i, s) for i, s in zip(items, scores, strict=True) if i in wanted][: r.k]
            out.append(Scored([i for i, _ in pairs], [s for _, s in pairs], source))
    return out


def _ranked(model: Recommender, users: list[str], k: int) -> dict[str, tuple[list[str], list[float]]]:
    recs = model.recommend(users, k=k, exclude_seen=True).sort_values([COL_USER, COL_RANK])
    out: dict[str, tuple[list[str], list[float]]] = {}
    for user, group in recs.groupby(COL_USER, sort=False):
        out[str(user)] = (group[COL_ITEM].tolist(), np.round(group[COL_SCORE].to_numpy(), 6).tolist())
    return out
