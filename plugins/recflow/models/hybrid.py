"""ALS + EASE hybrid: implicit ALS factors blended with a closed-form item-item model (Steck 2019).

Why a blend: the two models err differently. ALS ranks by a low-rank user taste; EASE ranks by which
items co-occur with the user's own items, with a learned (not heuristic) item-item weight matrix. On
MovieLens-100K validation splits each alone reached about the same nDCG@10, and their per-user
standardised blend beat both by 2-4% (see ``bench/results/quality.md``).

EASE: with ``X`` the binary user x item matrix of training interactions and ``G = X^T X + lambda I``,
the weights are ``B = I - P / diag(P)`` for ``P = G^-1`` (so ``diag(B) = 0``: an item never explains
itself); a user's scores are ``x_u B``. The Gram matrix is accumulated on the driver in user chunks
from the same seen-items index the artifact stores, so memory is ``n_items^2`` floats: the family
refuses catalogs above :data:`MAX_EASE_ITEMS` rather than exhausting the driver. To scale past that,
restrict EASE to the most popular items or compute ``G`` with a Spark self-join on users.

Blend: each model's scores for a user are standardised over the catalog (zero mean, unit variance),
then ``als_weight * z_als + (1 - als_weight) * z_ease``. Standardising makes the weight mean the same
thing whatever the scale of either model's raw scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.base import Recommender, read_model_json, write_model_json
from recflow.models.index import IdIndex, SeenItems, write_user_table
from recflow.models.params import Rule, parse_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from recflow.scoring.core import UserBatch

#: Largest catalog EASE accepts: its dense item x item matrices take 8 * n_items^2 bytes (3.2 GB here).
MAX_EASE_ITEMS: Final = 20_000
_CHUNK_USERS: Final = 4096


@dataclass(frozen=True)
class HybridParams(AlsParams):
    """The ALS parameters (inherited, same names and rules) plus EASE's L2 weight and the blend."""

    #: EASE's L2 penalty; larger shrinks item-item weights toward zero (more popularity-like).
    ease_lambda: float = 500.0
    #: Weight of the standardised ALS scores in [0, 1]; EASE gets the rest.
    als_weight: float = 0.5

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> HybridParams:
        return parse_params(cls, raw, "hybrid")

    def rules(self) -> Iterator[Rule]:
        self.als_params()  # validates the ALS part with ALS's own rules (and messages) first
        yield self.ease_lambda <= 0, f"ease_lambda must be > 0 (it keeps X^T X invertible), got {self.ease_lambda}"
        yield not 0.0 <= self.als_weight <= 1.0, f"als_weight must be in [0, 1], got {self.als_weight}"

    def als_params(self) -> AlsParams:
        als_fields = {f.name for f in fields(AlsParams)}
        return AlsParams.from_dict({k: v for k, v in asdict(self).items() if k in als_fields})


def ease_weights(seen: SeenItems, n_users: int, n_items: int, ease_lambda: float) -> np.ndarray:
    """EASE's item x item weight matrix (float32, zero diagonal) from the binary seen-items matrix."""
    if n_items > MAX_EASE_ITEMS:
        raise ValueError(
            f"EASE needs an {n_items} x {n_items} matrix on the driver; the hybrid family accepts at most "
            f"{MAX_EASE_ITEMS} items: use the als family for this catalog"
        )
    gram = np.zeros((n_items, n_items), dtype=np.float64)
    for start in range(0, n_users, _CHUNK_USERS):
        codes = np.arange(start, min(start + _CHUNK_USERS, n_users))
        x = seen.mask(codes, n_items).astype(np.float64)
        gram += x.T @ x
    gram[np.diag_indices_from(gram)] += ease_lambda
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per row: zero mean, unit variance (a constant row becomes all zeros)."""
    centred = scores - scores.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return centred / np.where(std > 0, std, 1.0)


class HybridRecommender(Recommender):
    """Standardised ALS scores blended with standardised EASE scores (see the module docstring)."""

    family = "hybrid"

    def __init__(self, als: AlsRecommender, ease: np.ndarray, params: HybridParams) -> None:
        super().__init__(als.index, als.seen)
        self.als = als
        self.ease = ease
        self.params = params

    @classmethod
    def fit(cls, spark: SparkSession, train: DataFrame, params: HybridParams) -> HybridRecommender:
        """Fit ALS with Spark, then EASE on the driver from the same id index and seen items.

        EASE needs every user's history in memory, so the hybrid reads ALS's tables back onto the driver
        (this family, unlike ALS and NCF, still trains there)."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="recflow-hybrid-als-") as tmp:
            als = AlsRecommender.fit(spark, train, params.als_params(), Path(tmp)).with_user_side()
        als.tables = None  # the folder is gone; save() writes this model from memory
        weights = ease_weights(als.seen, als.index.n_users, als.index.n_items, params.ease_lambda)
        return cls(als, weights, params)

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        als = self.als.score(user_codes)
        ease = self.seen.mask(user_codes, self.index.n_items).astype(np.float32) @ self.ease
        return self._blend(als, ease)

    def score_rows(self, batch: UserBatch) -> np.ndarray:
        """ALS from the shipped factor rows; EASE from the history the caller gave (the lake's, which
        is fresher than the training window's)."""
        history = np.zeros((len(batch), self.index.n_items), dtype=np.float32)
        history[batch.seen.row_ids(), batch.seen.values] = 1.0
        return self._blend(self.als.score_rows(batch), history @ self.ease)

    def for_workers(self) -> HybridRecommender:
        slim = self.item_side_copy()
        slim.als = self.als.for_workers()
        return slim

    def _blend(self, als: np.ndarray, ease: np.ndarray) -> np.ndarray:
        w = np.float32(self.params.als_weight)
        return w * standardise(als) + (1 - w) * standardise(ease)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        self.seen.save(folder)
        np.save(folder / "user_factors.npy", self.als.user_factors)
        np.save(folder / "item_factors.npy", self.als.item_factors)
        np.save(folder / "ease_weights.npy", self.ease)
        write_user_table(folder, self.index, self.als.user_factors)
        write_model_json(folder, type(self), params=asdict(self.params))

    @classmethod
    def load(cls, folder: Path) -> HybridRecommender:
        params = HybridParams.from_dict(read_model_json(folder)["params"])
        index, seen = IdIndex.load(folder), SeenItems.load(folder)
        als = AlsRecommender(
            index,
            seen,
            np.load(folder / "user_factors.npy"),
            np.load(folder / "item_factors.npy"),
            params.als_params(),
        )
        return cls(als, np.load(folder / "ease_weights.npy"), params)
