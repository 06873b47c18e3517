"""Exploration slots: a new item shown in a fixed top-K position to a seeded share of users.

Why: an item nobody has bought has no factors and the lowest popularity, so it never reaches anyone's
top-K and stays invisible. Following the IBM AI Workflow course's answer (a "new releases" slot, and the
item's metadata to find who may like it), :meth:`Explorer.apply` replaces chosen positions of a user's
top-K with a new item and records the probability of that choice, so off-policy estimates can be made
later. Batch (:mod:`recflow.scoring.arrow`) and streaming (:mod:`recflow.streaming.answers`) call the
same function on the scoring core's :class:`~recflow.scoring.core.TopK`.

Definitions (all configurable in :class:`~recflow.scoring.explore_policy.ExplorePolicy`, a spec's
``exploration:`` mapping):

* **the pool**: every item the catalog knew when the model was trained, including items nobody
  interacted with yet (the lake's ``items/``; they are not in the model's catalog, so they get codes
  after its last, :attr:`ItemHistory.extra_ids`). **New**: first seen within ``new_within_days`` days
  before the scored day, or with fewer than ``min_interactions`` interactions. Items first seen after
  the scored day are not shown (a backfill of an earlier day must not show the future).
* **who explores**: a user explores on a day when a uniform draw seeded by (``seed``, day, user id) is
  below ``user_share``, and their list is full (``k`` items; a shorter list already holds every item
  they could get).
* **which item**: drawn among the new items the user did not take in the model's training data, with
  weight ``EPSILON + cosine(profile, item tags)`` where item metadata exists (MovieLens genres,
  purchase-card category groups; the profile sums the tags of those training items), else
  ``1 / (1 + age in days)`` (recency). ``EPSILON`` keeps every candidate's propensity above 0.
  The user's items are the artifact's training items in every path (batch ships them per user beside
  the lake's seen items, streaming has them in the model), so batch and streaming draw from the same
  weights; the model's own list does not enter the draw either. If the model already listed the drawn
  item, that entry leaves the list (the slot holds it once).
* **logging propensity** of an explore row: ``user_share * weight / total weight`` of the remaining
  candidates (for a second slot, given the first slot's choice).
* **score** of an explore row: the model's own score of that item (the fallback's for users the model
  does not know), so ``score`` keeps one meaning in every row; NaN (null in tables and answers) for an
  item outside the model's catalog, which the model has no score for. Its calibrated propensity comes
  from the core (:func:`recflow.scoring.core.with_propensity`): the map of that score, null without one.

Draws are SipHash values of the user id (pandas' ``hash_array`` with a key made of the purpose, seed and
day), so a re-run, a backfill and a streaming request on the same day choose the same item, in any
process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import numpy as np
import pandas as pd

from recflow.constants import (
    COL_ITEM,
    COL_LOGGING_PROPENSITY,
    COL_PROPENSITY,
    COL_RANK,
    COL_SCORE,
    COL_SOURCE,
    COL_USER,
)
from recflow.scoring.core import SOURCE_FALLBACK, SOURCE_MODEL, Ragged, ScorableModel, TopK, UserBatch, with_propensity
from recflow.scoring.explore_policy import ExplorePolicy

SOURCE_EXPLORE: Final = "explore"
#: The weight every candidate keeps beyond its similarity, so none has a propensity of 0.
EPSILON: Final = 0.05


@dataclass(frozen=True)
class ItemHistory:
    """Per item code: the day it was first seen (date ordinal), its interactions in the training window,
    and its metadata tags as a 0/1 matrix (None: no metadata; a row of zeros: none for that item).

    Codes below the model's catalog size are the model's items; ``extra_ids`` are the items after them
    (known to the catalog, not to the model: no interaction in its training data), in code order."""

    first_seen: np.ndarray
    interactions: np.ndarray
    tags: np.ndarray | None = None
    extra_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    def __post_init__(self) -> None:
        n = len(self.first_seen)
        if len(self.interactions) != n or (self.tags is not None and len(self.tags) != n):
            raise ValueError("first_seen, interactions and tags must have one row per item")
        if len(self.extra_ids) > n:
            raise ValueError(f"{len(self.extra_ids)} extra items for {n} items in all")

    @property
    def n_model_items(self) -> int:
        """Items of the model's catalog (codes ``0 .. n_model_items - 1``)."""
        return len(self.first_seen) - len(self.extra_ids)

    def item_ids(self, model_items: np.ndarray) -> np.ndarray:
        """Every code's item id: the model's catalog (``model_items``), then the extra items."""
        if len(model_items) != self.n_model_items:
            raise ValueError(f"the model has {len(model_items)} items; this history covers {self.n_model_items}")
        return np.concatenate([np.asarray(model_items, dtype=object), np.asarray(self.extra_ids, dtype=object)])


@dataclass(frozen=True)
class Slate:
    """A :class:`TopK` with explore rows: ``explore`` marks them, ``propensity`` is their logging
    propensity (NaN elsewhere)."""

    top: TopK
    explore: np.ndarray
    propensity: np.ndarray

    def long(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`TopK.long` plus each valid entry's explore flag and propensity, row-major."""
        rows, ranks, items, scores, fallback = self.top.long()
        valid = np.arange(self.top.items.shape[1])[None, :] < self.top.counts[:, None]
        return rows, ranks, items, scores, fallback, self.explore[valid], self.propensity[valid]


def _hash_key(purpose: str, seed: int, day: date) -> str:
    """The 16-character SipHash key of one kind of draw on one day."""
    return hashlib.sha256(f"{purpose}|{seed}|{day.isoformat()}".encode()).hexdigest()[:16]


def uniform_draws(user_ids: np.ndarray, purpose: str, seed: int, day: date) -> np.ndarray:
    """One uniform [0, 1) value per user id, a pure function of (purpose, seed, day, user id)."""
    hashes = pd.util.hash_array(np.asarray(user_ids, dtype=object), hash_key=_hash_key(purpose, seed, day))
    return (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class Explorer:
    """Applies an :class:`ExplorePolicy` to top-K lists over one model's catalog (see the module docstring)."""

    def __init__(self, policy: ExplorePolicy, history: ItemHistory) -> None:
        self.policy = policy
        self.history = history

    def new_items(self, day: date) -> np.ndarray:
        """Codes of the items that count as new on ``day`` (never one first seen after it)."""
        age = day.toordinal() - self.history.first_seen
        new = (age < self.policy.new_within_days) | (self.history.interactions < self.policy.min_interactions)
        return np.flatnonzero(new & (age >= 0)).astype(np.int32)

    def apply(self, model: ScorableModel, top: TopK, users: UserBatch, user_ids: np.ndarray, day: date) -> Slate:
        """``top`` with the policy's slots filled by new items for the users who explore on ``day``.

        ``users.seen`` must hold each user's training items (the artifact's, by model item code), not the
        seen items ``top`` was scored with: the draw depends on nothing else of the user, so every path
        with the same artifact draws the same item (see the module docstring)."""
        history = users.seen
        n, width = top.items.shape
        items, scores, counts = top.items.copy(), top.scores.copy(), top.counts
        explore = np.zeros((n, width), dtype=bool)
        propensity = np.full((n, width), np.nan, dtype=np.float64)
        pool = self.new_items(day)
        draws = uniform_draws(user_ids, "share", self.policy.seed, day)
        rows = np.flatnonzero((draws < self.policy.user_share) & (counts == width) & (width > 0))
        if len(pool) and len(rows):
            weights = self._weights(pool, history.take(rows), day)
            for slot in self.policy.slots:
                if slot > width:
                    continue
                total = weights.sum(axis=1)
                pick = np.flatnonzero(total > 0)
                if not len(pick):
                    break
                u = uniform_draws(user_ids[rows[pick]], f"slot{slot}", self.policy.seed, day)
                cumulative = np.cumsum(weights[pick], axis=1)
                choice = np.minimum((cumulative < (u * total[pick])[:, None]).sum(axis=1), len(pool) - 1)
                chosen_w = weights[pick, choice]
                weights[pick, choice] = 0.0
                target = rows[pick]
                chosen = pool[choice]
                item_scores = self._item_scores(model, users.take(target), chosen)
                order = _placed(items[target], explore[target], chosen, slot - 1)
                for matrix, value in ((items, chosen), (scores, item_scores), (explore, True)):
                    matrix[target] = _insert(matrix[target], order, value)
                p_values = self.policy.user_share * chosen_w / total[pick]
                propensity[target] = _insert(propensity[target], order, p_values)
        return Slate(with_propensity(model, items, scores, counts, top.fallback), explore, propensity)

    def _weights(self, pool: np.ndarray, history: Ragged, day: date) -> np.ndarray:
        """(users x pool) choice weights: similarity or recency, 0 for the users' training items."""
        n = history.n_rows
        age = (day.toordinal() - self.history.first_seen[pool]).astype(np.float64)
        weights = np.broadcast_to(1.0 / (1.0 + age), (n, len(pool))).copy()
        tags = self.history.tags
        if tags is not None and len(history.values):
            profile = np.zeros((n, tags.shape[1]), dtype=np.float64)
            np.add.at(profile, history.row_ids(), tags[history.values])
            pool_tags = tags[pool].astype(np.float64)
            norms = np.linalg.norm(profile, axis=1)[:, None] * np.linalg.norm(pool_tags, axis=1)[None, :]
            similarity = np.divide(profile @ pool_tags.T, norms, out=np.zeros_like(weights), where=norms > 0)
            has_profile = np.linalg.norm(profile, axis=1) > 0
            weights[has_profile] = EPSILON + similarity[has_profile]
        position = np.full(len(self.history.first_seen), -1, dtype=np.int64)
        position[pool] = np.arange(len(pool))
        cols = np.where(history.values >= 0, position[np.maximum(history.values, 0)], -1)
        keep = cols >= 0
        weights[history.row_ids()[keep], cols[keep]] = 0.0
        return weights

    def _item_scores(self, model: ScorableModel, users: UserBatch, item_codes: np.ndarray) -> np.ndarray:
        """The model's score of each user's explore item (the fallback's for users it does not know; a batch
        worker's users carry their factor rows); NaN for an item outside the model's catalog, which has no
        score."""
        out = np.full(len(item_codes), np.nan, dtype=np.float32)
        in_model = item_codes < self.history.n_model_items
        out[in_model] = model.fallback_scores()[item_codes[in_model]]
        known = np.flatnonzero((users.codes >= 0) & in_model)
        if len(known):
            block = model.score_candidates(users.take(known), item_codes[known, None].astype(np.int32))
            out[known] = np.asarray(block, dtype=np.float32)[:, 0]
        return out


def _placed(items: np.ndarray, explore: np.ndarray, chosen: np.ndarray, position: int) -> np.ndarray:
    """Per row, which column of ``[row | new entry]`` goes to each position once ``chosen`` takes
    ``position``: earlier explore slots stay where they are, the new entry (column ``width``) takes its
    slot, and the model's entries fill the other positions in their order, without the model's own
    entry of the chosen item (the list holds it once); what no longer fits drops off the end."""
    n, width = items.shape
    columns = np.broadcast_to(np.arange(width), (n, width))
    fixed = explore.copy()
    fixed[:, position] = True
    model_first = np.argsort(np.where(explore | (items == chosen[:, None]), np.inf, columns), axis=1, kind="stable")
    free_first = np.argsort(fixed, axis=1, kind="stable")  # the positions left to the model, in order
    order = columns.copy()
    order[:, position] = width
    rows, j = np.nonzero(columns < (width - fixed.sum(axis=1))[:, None])
    order[rows, free_first[rows, j]] = model_first[rows, j]
    return order


def _insert(matrix: np.ndarray, order: np.ndarray, value: np.ndarray | float | bool) -> np.ndarray:
    """``matrix``'s rows rearranged by :func:`_placed`'s ``order``, the new entry being ``value``."""
    new = np.broadcast_to(np.asarray(value, dtype=matrix.dtype), (len(matrix),))[:, None]
    return np.take_along_axis(np.concatenate([matrix, new], axis=1), order, axis=1)


def slate_frame(slate: Slate, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """The long (user, item, score, rank, source, propensity, logging_propensity) frame of a :class:`Slate`."""
    rows, ranks, items, scores, fallback, explore, propensity = slate.long()
    source = np.where(explore, SOURCE_EXPLORE, np.where(fallback, SOURCE_FALLBACK, SOURCE_MODEL))
    return pd.DataFrame(
        {
            COL_USER: user_ids[rows],
            COL_ITEM: item_ids[items],
            COL_SCORE: scores.astype(np.float64),
            COL_RANK: ranks,
            COL_SOURCE: source,
            COL_PROPENSITY: slate.top.long_propensity(),
            COL_LOGGING_PROPENSITY: np.where(explore, propensity, np.nan),
        }
    )
