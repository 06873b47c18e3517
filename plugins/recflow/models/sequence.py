"""Sequence-aware recommender: recency-weighted item-to-item transitions, blended with EASE.

Why: asked "what will this user take next?" (each user's latest events held out), the order of a
user's events carries what a bag of items cannot. On MovieLens-100K with each user's last 20% held out,
ALS and the ALS+EASE hybrid reach about 0.21 nDCG@10; this model about 0.26 (``bench/results/quality.md``).

Transitions. Each user's training events are ordered by time (ties by item id). For every event at
position ``p`` and each of the next ``window`` events at ``p + d`` (``d = 1..window``), the pair
(item at ``p`` -> item at ``p + d``) gains ``step_decay ** (d - 1)``, summed over all users into an
item x item matrix ``F`` (an item never follows itself: such pairs are skipped). The model uses
``T = F + backward_weight * F^T``, so an item also suggests what usually comes just before it.

History. A user's scores are ``h_u T``, where ``h_u`` puts ``history_decay ** (j - 1)`` on the item of
the user's ``j``-th most recent event, for ``j = 1..history`` (repeats add up): recent items count most.

Blend. As in the hybrid, both parts are standardised per user over the catalog and mixed:
``(1 - ease_weight) * z(h_u T) + ease_weight * z(x_u B)``, with ``B`` EASE's item-item weights
(:func:`recflow.models.hybrid.ease_weights`). ``ease_weight = 0`` is the transition model alone.

Spark counts the transitions (an explode of the ``window`` offsets and an equi-join on user and
position, so the work is ``events * window`` rows, never the per-user square) and picks each user's
recent events; the driver receives only the aggregated item pairs (at most ``n_items^2``) and
``n_users * history`` recent events. The dense matrices take ``4 * n_items^2`` bytes each, so the
family refuses catalogs above :data:`recflow.models.hybrid.MAX_EASE_ITEMS`, as EASE does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.models import hybrid
from recflow.models.base import Recommender, read_model_json, write_model_json
from recflow.models.hybrid import ease_weights, standardise
from recflow.models.index import IdIndex, SeenItems, write_user_table
from recflow.models.params import Rule, parse_params

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class SequenceParams:
    """Transition window and decays, history length and decay, and the EASE blend."""

    #: How many following events of the same user each event is paired with.
    window: int = 10
    #: Weight of the pair with the d-th following event: step_decay ** (d - 1), in (0, 1].
    step_decay: float = 0.8
    #: Weight of the reversed direction (item b suggests item a when a usually precedes b), >= 0.
    backward_weight: float = 1.0
    #: How many of the user's most recent events the scores are built from.
    history: int = 5
    #: Weight of the j-th most recent event: history_decay ** (j - 1), in (0, 1].
    history_decay: float = 0.7
    #: EASE's L2 penalty (only used when ease_weight > 0).
    ease_lambda: float = 200.0
    #: Weight of the standardised EASE scores in [0, 1]; the transitions get the rest.
    ease_weight: float = 0.5

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SequenceParams:
        return parse_params(cls, raw, "sequence")

    def rules(self) -> Iterator[Rule]:
        yield self.window < 1 or self.history < 1, f"window and history must be >= 1, got {self.window}, {self.history}"
        yield (
            not (0.0 < self.step_decay <= 1.0 and 0.0 < self.history_decay <= 1.0),
            f"step_decay and history_decay must be in (0, 1]: {self}",
        )
        yield self.backward_weight < 0, f"backward_weight must be >= 0, got {self.backward_weight}"
        yield self.ease_lambda <= 0, f"ease_lambda must be > 0 (it keeps X^T X invertible), got {self.ease_lambda}"
        yield not 0.0 <= self.ease_weight <= 1.0, f"ease_weight must be in [0, 1], got {self.ease_weight}"


@dataclass(frozen=True)
class RecentItems:
    """Each user's weighted recent items as CSR arrays (indptr over users, item indices, weights)."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_frame(cls, recent: pd.DataFrame, n_users: int) -> RecentItems:
        """From rows ``(u, i, weight)`` of dense codes; repeated (u, i) rows add up."""
        summed = recent.groupby(["u", "i"], as_index=False)["weight"].sum().sort_values(["u", "i"])
        counts = np.bincount(summed["u"].to_numpy(), minlength=n_users)
        return cls(
            indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            indices=summed["i"].to_numpy(dtype=np.int32),
            weights=summed["weight"].to_numpy(dtype=np.float32),
        )

    def matrix(self, user_codes: np.ndarray, n_items: int) -> np.ndarray:
        """Dense weights (len(user_codes) x n_items); zero rows for users without events."""
        out = np.zeros((len(user_codes), n_items), dtype=np.float32)
        for row, code in enumerate(user_codes):
            span = slice(self.indptr[code], self.indptr[code + 1])
            out[row, self.indices[span]] = self.weights[span]
        return out

    def save(self, folder: Path) -> None:
        np.savez_compressed(folder / "recent.npz", indptr=self.indptr, indices=self.indices, weights=self.weights)

    @classmethod
    def load(cls, folder: Path) -> RecentItems:
        with np.load(folder / "recent.npz") as data:
            return cls(indptr=data["indptr"], indices=data["indices"], weights=data["weights"])


def transition_matrix(pairs: pd.DataFrame, n_items: int, backward_weight: float) -> np.ndarray:
    """``T = F + backward_weight * F^T`` (float32) from rows ``(a, b, weight)`` of the forward counts F."""
    forward = np.zeros((n_items, n_items), dtype=np.float64)
    np.add.at(forward, (pairs["a"].to_numpy(), pairs["b"].to_numpy()), pairs["weight"].to_numpy())
    return (forward + backward_weight * forward.T).astype(np.float32)


def _coded_events(spark: SparkSession, train: DataFrame, index: IdIndex) -> DataFrame:
    """``(u, i, ts)`` with the artifact's dense codes (so ties on time order by item id, as codes do)."""
    from pyspark.sql import functions as F

    users = spark.createDataFrame(pd.DataFrame({COL_USER: index.users, "u": np.arange(index.n_users, dtype=np.int32)}))
    items = spark.createDataFrame(pd.DataFrame({COL_ITEM: index.items, "i": np.arange(index.n_items, dtype=np.int32)}))
    return (
        train.join(users.hint("broadcast"), COL_USER)
        .join(items.hint("broadcast"), COL_ITEM)
        .select("u", "i", F.col(COL_TS).alias("ts"))
    )


def transition_pairs(events: DataFrame, params: SequenceParams) -> pd.DataFrame:
    """Forward transition weights ``(a, b, weight)`` summed over users (see the module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    positioned = events.select(
        "u", "i", F.row_number().over(Window.partitionBy("u").orderBy("ts", "i")).alias("pos")
    ).cache()
    steps = positioned.select(
        "u",
        F.col("i").alias("a"),
        "pos",
        F.explode(F.sequence(F.lit(1), F.lit(params.window))).alias("d"),
    ).select("u", "a", "d", (F.col("pos") + F.col("d")).alias("pos_b"))
    later = positioned.select("u", F.col("i").alias("b"), F.col("pos").alias("pos_b"))
    pairs = (
        steps.join(later, ["u", "pos_b"])
        .where(F.col("a") != F.col("b"))
        .groupBy("a", "b")
        .agg(F.sum(F.pow(F.lit(params.step_decay), F.col("d") - 1)).alias("weight"))
        .toPandas()
    )
    positioned.unpersist()
    return pairs


def recent_items(events: DataFrame, params: SequenceParams) -> pd.DataFrame:
    """Each user's ``history`` latest events as ``(u, i, weight)``, weight ``history_decay ** (j - 1)``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    latest_first = Window.partitionBy("u").orderBy(F.desc("ts"), F.desc("i"))
    return (
        events.select("u", "i", F.row_number().over(latest_first).alias("j"))
        .where(F.col("j") <= params.history)
        .select("u", "i", F.pow(F.lit(params.history_decay), F.col("j") - 1).alias("weight"))
        .toPandas()
    )


class SequenceRecommender(Recommender):
    """Scores ``h_u T`` (recent items times transitions), optionally blended with EASE."""

    family = "sequence"

    def __init__(
        self,
        index: IdIndex,
        seen: SeenItems,
        recent: RecentItems,
        transitions: np.ndarray,
        ease: np.ndarray | None,
        params: SequenceParams,
    ) -> None:
        super().__init__(index, seen)
        if (ease is None) != (params.ease_weight == 0):
            raise ValueError("EASE weights are needed exactly when ease_weight > 0")
        self.recent = recent
        self.transitions = transitions
        self.ease = ease
        self.params = params

    @classmethod
    def fit(cls, spark: SparkSession, train: DataFrame, params: SequenceParams) -> SequenceRecommender:
        """Count transitions and recent items with Spark, then (if blended) EASE on the driver."""
        pairs = train.select(COL_USER, COL_ITEM).distinct().toPandas()
        index = IdIndex.from_frame(pairs)
        if index.n_items > hybrid.MAX_EASE_ITEMS:
            raise ValueError(
                f"the sequence family keeps {index.n_items} x {index.n_items} matrices on the driver and "
                f"accepts at most {hybrid.MAX_EASE_ITEMS} items: use the als family for this catalog"
            )
        seen = SeenItems.from_frame(pairs, index)
        events = _coded_events(spark, train, index).cache()
        try:
            transitions = transition_matrix(transition_pairs(events, params), index.n_items, params.backward_weight)
            recent = RecentItems.from_frame(recent_items(events, params), index.n_users)
        finally:
            events.unpersist()
        ease = ease_weights(seen, index.n_users, index.n_items, params.ease_lambda) if params.ease_weight else None
        return cls(index, seen, recent, transitions, ease, params)

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        sequential = self.recent.matrix(user_codes, self.index.n_items) @ self.transitions
        if self.ease is None:
            return sequential
        ease = self.seen.mask(user_codes, self.index.n_items).astype(np.float32) @ self.ease
        w = np.float32(self.params.ease_weight)
        return (1 - w) * standardise(sequential) + w * standardise(ease)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.index.save(folder)
        self.seen.save(folder)
        self.recent.save(folder)
        np.save(folder / "transitions.npy", self.transitions)
        if self.ease is not None:
            np.save(folder / "ease_weights.npy", self.ease)
        write_user_table(folder, self.index)  # the batch job joins users to codes from it
        write_model_json(folder, type(self), params=asdict(self.params))

    @classmethod
    def load(cls, folder: Path) -> SequenceRecommender:
        params = SequenceParams.from_dict(read_model_json(folder)["params"])
        return cls(
            IdIndex.load(folder),
            SeenItems.load(folder),
            RecentItems.load(folder),
            np.load(folder / "transitions.npy"),
            np.load(folder / "ease_weights.npy") if params.ease_weight else None,
            params,
        )
