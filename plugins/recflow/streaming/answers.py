"""Turn one poll's valid requests into answers with one call into the scoring core per request kind.

Why here and not in the engine: the engine owns Kafka (offsets, deliveries, retries); this module owns
"requests in, (items, scores, propensities, source) out" and nothing else, so it can be measured in-process without a
broker (the benchmark's in-process limit runs exactly this function).

Seen items: online, the only record of what a user has seen is the artifact's training interactions
(``model.seen``); they are removed as the batch job removes the lake's. Requests with ``item_ids``
re-rank only those candidates (ids the model does not know are dropped); the others rank the catalog.

Exploration: with the artifact's explorer, the catalog requests get the same exploration slots the batch
job gives (:meth:`recflow.scoring.explore.Explorer.apply`), seeded by the user and the UTC day of the
request record's timestamp, for each group of requests with one day and one ``k`` (the slots are
positions of a ``k``-long list). The draw is against the user's training items, the artifact's
``model.seen``, as in the batch job, whose lake seen items may hold more. An explored item outside the
model's catalog has no score: ``null`` in ``scores`` and ``propensities``. Re-ranked ``item_ids`` are the
caller's choice and never explore.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import numpy as np

from recflow.constants import COL_ITEM, COL_LOGGING_PROPENSITY, COL_PROPENSITY
from recflow.data.offers import COL_OFFER, COL_REWARD, COL_THRESHOLD, ENV_PATH, OfferCatalog, is_eligible
from recflow.models.base import Recommender
from recflow.scoring.core import SOURCE_FALLBACK, SOURCE_MODEL, TopK, UserBatch, score_batch
from recflow.scoring.explore import Explorer, Slate
from recflow.streaming.protocol import Request

#: Decimals kept in answers: float32 scores carry about 7 significant digits.
SCORE_DECIMALS = 6


class Scored(NamedTuple):
    """One request's answer body (a named tuple: one is built per request, see ``Request``)."""

    items: list[str]
    #: None: an explored item outside the model's catalog, which has no model score.
    scores: list[float | None]
    source: str
    #: Calibrated P(interaction) per item, unrounded so it equals the batch table's value for the pair
    #: (None: unknown, a fallback answer or a model without calibration).
    propensities: list[float | None]
    #: The exploration slots of the answer (rank, item_id, logging_propensity), None when there is none.
    explore: list[dict[str, Any]] | None = None


def request_day(request: Request) -> date:
    """The day exploration is seeded by: the UTC date of the request record's timestamp."""
    return datetime.fromtimestamp(request.timestamp_ms / 1000, tz=UTC).date()


def score_requests(model: Recommender, requests: Sequence[Request], explorer: Explorer | None = None) -> list[Scored]:
    """Top-k (or the re-ranked ``item_ids``) for every request, in request order, seen items removed;
    with ``explorer``, the catalog answers carry their exploration slots."""
    if not requests:
        return []
    codes = model.index.user_codes([r.user_id for r in requests])
    seen = model.seen.ragged(codes)
    out: list[Scored | None] = [None] * len(requests)
    plain = np.asarray([i for i, r in enumerate(requests) if r.item_ids is None], dtype=np.int64)
    rerank = np.asarray([i for i, r in enumerate(requests) if r.item_ids is not None], dtype=np.int64)
    if len(plain) and explorer is not None:
        groups: dict[tuple[date, int], list[int]] = {}
        for i in plain.tolist():
            groups.setdefault((request_day(requests[i]), requests[i].k), []).append(i)
        for (day, k), members in groups.items():
            rows = np.asarray(members, dtype=np.int64)
            batch = UserBatch(codes=codes[rows], seen=seen.take(rows))
            top = score_batch(model, batch, k=k, n_candidates=None)
            ids = np.asarray([requests[i].user_id for i in members], dtype=object)
            slate = explorer.apply(model, top, batch, ids, day)  # batch.seen: the training items, as in batch
            _fill(out, requests, rows, top, explorer.history.item_ids(model.index.item_array), slate)
    elif len(plain):
        k = max(requests[i].k for i in plain)
        top = score_batch(model, UserBatch(codes=codes[plain], seen=seen.take(plain)), k=k, n_candidates=None)
        _fill(out, requests, plain, top, model.index.item_array)
    if len(rerank):
        lists = [model.index.item_codes(list(requests[i].item_ids or ())) for i in rerank]
        width = max(len(c) for c in lists)
        candidates = np.full((len(rerank), width), -1, dtype=np.int32)
        for row, item_codes in enumerate(lists):
            known = item_codes[item_codes >= 0]
            candidates[row, : len(known)] = known
        k = max(requests[i].k for i in rerank)
        batch = UserBatch(codes=codes[rerank], seen=seen.take(rerank))
        _fill(out, requests, rerank, score_batch(model, batch, k=k, candidates=candidates), model.index.item_array)
    return [s for s in out if s is not None]


def _fill(
    out: list[Scored | None],
    requests: Sequence[Request],
    rows: np.ndarray,
    top: TopK,
    item_ids: np.ndarray,
    slate: Slate | None = None,
) -> None:
    """Per-request answer lists from the batch's matrices (converted to Python lists once, then sliced);
    with a ``slate``, its lists and exploration slots instead of ``top``'s. ``item_ids``: the id of each
    item code."""
    if slate is not None:
        top = slate.top
    names = item_ids[np.maximum(top.items, 0)].tolist()
    rounded = np.round(top.scores.astype(np.float64), SCORE_DECIMALS).astype(object)
    rounded[np.isnan(top.scores)] = None  # padding (sliced off below) or an explored item without a score
    scores = rounded.tolist()
    raw = top.propensity.astype(object)
    raw[np.isnan(top.propensity)] = None
    propensities = raw.tolist()
    counts = top.counts.tolist()
    sources = [SOURCE_FALLBACK if f else SOURCE_MODEL for f in top.fallback.tolist()]
    width = top.items.shape[1] if top.items.ndim == 2 else 0
    for j, i in enumerate(rows.tolist()):
        n = min(counts[j], requests[i].k)
        if n == width:  # the common case: the whole row, no slice copies
            out[i] = Scored(names[j], scores[j], sources[j], propensities[j])
        else:
            out[i] = Scored(names[j][:n], scores[j][:n], sources[j], propensities[j][:n])
        if slate is not None and slate.explore[j, :n].any():
            slots = np.flatnonzero(slate.explore[j, :n]).tolist()
            explore = [
                {"rank": p + 1, "item_id": names[j][p], COL_LOGGING_PROPENSITY: float(slate.propensity[j, p])}
                for p in slots
            ]
            out[i] = out[i]._replace(explore=explore)


def eligible_offers(body: Scored, catalog: OfferCatalog) -> list[dict[str, Any]]:
    """The answer's items that are eligible for their offer (the batch job's rule,
    :func:`recflow.data.offers.is_eligible`), in rank order, with offer, reward and threshold."""
    found = [(item, p, catalog.by_item[item]) for item, p in zip(body.items, body.propensities, strict=True)
             if item in catalog.by_item]  # fmt: skip
    if not found:
        return []
    propensity = np.asarray([np.nan if p is None else p for _, p, _ in found], dtype=np.float64)
    eligible = is_eligible(propensity, np.asarray([o.threshold for _, _, o in found], dtype=np.float64))
    return [
        {COL_ITEM: item, COL_PROPENSITY: p, COL_OFFER: o.offer, COL_REWARD: o.reward, COL_THRESHOLD: o.threshold}
        for (item, p, o), ok in zip(found, eligible.tolist(), strict=True)
        if ok
    ]


def catalog_from_env() -> OfferCatalog | None:
    """The validated offer catalog named by ``RECFLOW_OFFERS``, or None (answers then carry no offers)."""
    # deferred: great_expectations (the catalog's suite), paid only by a scorer that serves offers
    from recflow.validation.offers import load_catalog

    path = os.environ.get(ENV_PATH)
    return load_catalog(path) if path else None
