"""The scoring core on Spark: top-K rows per user from each partition's Arrow batches (``mapInArrow``).

Batch scoring and the hold-out evaluation of models kept in Parquet tables both score this way, so the
Spark side lives with the core and not in either caller. The model shipped to the Python workers holds its
item side only (``for_workers``) and is unpickled once per worker; the output columns are gathered with
Arrow ``take`` from the batch's own ids, with no Python object per output row."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np

from recflow.constants import (
    COL_ITEM,
    COL_LOGGING_PROPENSITY,
    COL_PROPENSITY,
    COL_RANK,
    COL_SCORE,
    COL_SOURCE,
    COL_USER,
    COL_VERSION,
)
from recflow.scoring.core import SOURCE_FALLBACK, SOURCE_MODEL, Ragged, ScorableModel, UserBatch, score_batch
from recflow.scoring.explore import SOURCE_EXPLORE, Explorer
from recflow.scoring.seen import COL_SEEN

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame


class _ItemIds(Protocol):
    @property
    def n_items(self) -> int: ...

    @property
    def item_array(self) -> np.ndarray: ...


class ShippableModel(ScorableModel, Protocol):
    """A model the Spark side can ship to its workers (:class:`recflow.models.base.Recommender` is one)."""

    @property
    def index(self) -> _ItemIds: ...

    def for_workers(self) -> ShippableModel: ...


COL_CODE: Final = "u"


COL_FACTORS: Final = "features"
#: Each user's training items (the artifact's ``seen``, by item code): what exploration draws against, as
#: the streaming scorer does (:meth:`recflow.scoring.explore.Explorer.apply`); absent without exploration.
COL_TRAIN_SEEN: Final = "train_seen"


SCORES_SCHEMA: Final = (
    f"{COL_USER} string, {COL_RANK} int, {COL_ITEM} string, {COL_SCORE} double, "
    f"{COL_VERSION} string, {COL_SOURCE} string, {COL_PROPENSITY} double, {COL_LOGGING_PROPENSITY} double"
)


_worker_models: dict[str, ShippableModel] = {}


def _ragged(column: pa.ListArray) -> Ragged:
    offsets = np.asarray(column.offsets, dtype=np.int64)
    return Ragged(offsets - offsets[0], np.asarray(column.flatten(), dtype=np.int32))


def _factor_rows(column: pa.ListArray, n: int) -> np.ndarray:
    """(n x rank) float32; rows of users without factors (unknown: scored by the fallback) are zeros."""
    valid = np.asarray(column.is_valid(), dtype=bool)
    values = np.asarray(column.flatten(), dtype=np.float32)
    rank = len(values) // max(int(valid.sum()), 1)
    out = np.zeros((n, rank), dtype=np.float32)
    out[valid] = values.reshape(-1, rank) if len(values) else out[valid]
    return out


def shipped_model(model: ShippableModel, version: str) -> tuple[str, bytes]:
    """What a scoring job ships to its Python workers: the item-side model, pickled, and its cache key."""
    payload = pickle.dumps(model.for_workers())
    return f"{version}:{len(payload)}", payload


def worker_model(key: str, payload: bytes) -> ShippableModel:
    """The model for ``key``, unpickled once per Python worker process (Spark reuses workers)."""
    if key not in _worker_models:
        _worker_models.clear()  # one version at a time per worker
        _worker_models[key] = pickle.loads(payload)
    return _worker_models[key]


class ArrowScorer:
    """Scores one input Arrow batch into output rows, in a Python worker: the scoring core, then the
    output columns gathered by Arrow ``take`` from the batch's own ids and a per-worker item-id array (no
    Python string object per output row). With an ``explorer``, the lists of ``day`` get their
    exploration slots (:mod:`recflow.scoring.explore`)."""

    def __init__(
        self,
        model: ShippableModel,
        *,
        version: str,
        k: int,
        n_candidates: int | None,
        explorer: Explorer | None = None,
        day: date | None = None,
    ) -> None:
        import pyarrow as pa

        if explorer is not None and day is None:
            raise ValueError("exploration is seeded by the scored day: pass day with explorer")
        self.model = model
        self.k = k
        self.n_candidates = n_candidates
        self.explorer = explorer
        self.day = day
        ids = model.index.item_array if explorer is None else explorer.history.item_ids(model.index.item_array)
        #: Item id by code: the model's catalog, then the explorer's items outside it.
        self.items = pa.array(ids, type=pa.string())
        self._labels = pa.array([version, SOURCE_MODEL, SOURCE_FALLBACK, SOURCE_EXPLORE], type=pa.string())
        self.schema = pa.schema(
            [
                (COL_USER, pa.string()),
                (COL_RANK, pa.int32()),
                (COL_ITEM, pa.string()),
                (COL_SCORE, pa.float64()),
                (COL_VERSION, pa.string()),
                (COL_SOURCE, pa.string()),
                (COL_PROPENSITY, pa.float64()),
                (COL_LOGGING_PROPENSITY, pa.float64()),
            ]
        )

    def __call__(self, rb: pa.RecordBatch) -> pa.RecordBatch:
        """The batch's output rows."""
        import pyarrow as pa

        n = rb.num_rows
        codes = np.asarray(rb.column(COL_CODE).fill_null(-1), dtype=np.int64)
        factors = _factor_rows(rb.column(COL_FACTORS), n) if COL_FACTORS in rb.schema.names else None
        batch = UserBatch(codes=codes, seen=_ragged(rb.column(COL_SEEN)), factors=factors)
        top = score_batch(self.model, batch, k=self.k, n_candidates=self.n_candidates)
        if self.explorer is not None and self.day is not None:
            users = rb.column(COL_USER).to_numpy(zero_copy_only=False)
            if COL_TRAIN_SEEN not in rb.schema.names:
                raise ValueError(f"exploration draws against each user's training items: no {COL_TRAIN_SEEN} column")
            trained = UserBatch(codes=codes, seen=_ragged(rb.column(COL_TRAIN_SEEN)), factors=factors)
            slate = self.explorer.apply(self.model, top, trained, users, self.day)
            rows, ranks, item_codes, scores, fallback, explore, logging = slate.long()
            calibrated = slate.top.long_propensity()
        else:
            rows, ranks, item_codes, scores, fallback = top.long()
            explore, logging = np.zeros(len(rows), dtype=bool), np.full(len(rows), np.nan)
            calibrated = top.long_propensity()
        return pa.RecordBatch.from_arrays(
            [
                rb.column(COL_USER).take(pa.array(rows)),
                pa.array(ranks, type=pa.int32()),
                self.items.take(pa.array(item_codes)),
                pa.array(scores.astype(np.float64), from_pandas=True),  # NaN -> null: an explored item without a score
                self._labels.take(pa.array(np.zeros(len(rows), dtype=np.int8))),
                self._labels.take(pa.array(np.where(explore, 3, 1 + fallback.astype(np.int8)))),
                pa.array(calibrated, from_pandas=True),  # NaN -> null: no propensity known
                pa.array(np.where(explore, logging, np.nan), type=pa.float64(), from_pandas=True),
            ],
            schema=self.schema,
        )


def by_user(inputs: DataFrame, partitions: int) -> DataFrame:
    """The scorer's input columns, hash-partitioned by user and sorted by user within each partition."""
    optional = [c for c in (COL_FACTORS, COL_TRAIN_SEEN) if c in inputs.columns]
    columns = [COL_USER, COL_CODE, COL_SEEN, *optional]
    return inputs.select(*columns).repartition(partitions, COL_USER).sortWithinPartitions(COL_USER)


def score_users(
    inputs: DataFrame,
    model: ShippableModel,
    *,
    version: str,
    k: int,
    partitions: int,
    n_candidates: int | None = None,
) -> DataFrame:
    """Top-``k`` rows per user, by the scoring core on each partition's Arrow batches.

    ``n_candidates`` goes to :func:`recflow.scoring.core.score_batch` (None: the model's own candidate pool;
    0: the full catalog, as hold-out evaluation requires)."""
    key, payload = shipped_model(model, version)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = ArrowScorer(worker_model(key, payload), version=version, k=k, n_candidates=n_candidates)
        for rb in batches:
            yield scorer(rb)

    return by_user(inputs, partitions).mapInArrow(score, schema=SCORES_SCHEMA)
