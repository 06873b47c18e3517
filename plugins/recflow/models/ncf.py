"""NeuMF (He et al. 2017): a GMF branch and an MLP branch fused by a final sigmoid layer, in Keras.

Spark builds the dense codes, writes the id maps and seen items as Parquet tables
(:mod:`recflow.models.tables`) and prepares the training set (positives plus sampled negatives, one
Parquet folder per epoch, rows in random order). TensorFlow trains on the driver from a ``tf.data``
pipeline that reads those files in Arrow batches (:func:`epoch_dataset`), so the driver never holds a
frame of training pairs: its memory is bounded by one shuffle chunk, not by an epoch.

To scale past one machine, shard the Parquet files by epoch and user
hash and train with ``tf.distribute.MultiWorkerMirroredStrategy`` on executors (e.g. Spark's
``TorchDistributor`` analogue, or barrier-mode tasks); the data contract does not change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recflow.models.base import read_model_json, write_model_json
from recflow.models.index import COL_U, IdIndex, SeenItems, read_items
from recflow.models.params import Rule, parse_params
from recflow.models.tables import TableBackedRecommender, coded_pairs, write_pair_tables

if TYPE_CHECKING:
    import keras
    from pyspark.sql import DataFrame, SparkSession

    from recflow.scoring.core import UserBatch

MODEL_FILE = "model.keras"
_PREDICT_CHUNK = 65536
#: Rows read (and permuted) at a time by the training input pipeline.
SHUFFLE_ROWS = 65536


@dataclass(frozen=True)
class NcfParams:
    """Architecture and training settings (GMF size, MLP tower, negatives per positive, epochs)."""

    gmf_dim: int = 32
    mlp_layers: tuple[int, ...] = field(default=(64, 32, 16))
    negatives: int = 4
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 0.001
    l2: float = 0.0
    #: He et al. 2017, section 3.4.1: train GMF and MLP alone for this many epochs each (Adam), then
    #: start NeuMF from their weights and fine-tune with plain SGD at ``finetune_learning_rate`` (Adam's
    #: moment estimates do not carry over). 0 trains NeuMF from scratch with Adam, as before.
    pretrain_epochs: int = 0
    finetune_learning_rate: float = 0.001
    seed: int = 42

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NcfParams:
        return parse_params(cls, raw, "NCF", convert=_layers_as_tuple)

    def rules(self) -> Iterator[Rule]:
        yield (
            self.gmf_dim < 1 or not self.mlp_layers or min(self.mlp_layers) < 1,
            f"NCF layer sizes must be >= 1: {self}",
        )
        yield (
            self.negatives < 1 or self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0,
            f"NCF training settings out of range: {self}",
        )
        yield (
            self.pretrain_epochs < 0 or self.finetune_learning_rate <= 0,
            f"NCF pretraining settings out of range: {self}",
        )


def _layers_as_tuple(raw: dict[str, Any]) -> dict[str, Any]:
    """``mlp_layers`` as a tuple of ints (a spec or the UI gives a JSON list)."""
    values = dict(raw)
    if "mlp_layers" in values:
        values["mlp_layers"] = tuple(int(x) for x in values["mlp_layers"])
    return values


def build_neumf(n_users: int, n_items: int, params: NcfParams) -> keras.Model:
    """The NeuMF graph with stock Keras layers only, so the saved file loads with ``safe_mode=True``."""
    return build_models(n_users, n_items, params)["neumf"]


def build_models(n_users: int, n_items: int, params: NcfParams) -> dict[str, keras.Model]:
    """NeuMF plus its two halves, GMF and MLP, each with its own output layer, sharing NeuMF's layers.

    Why shared layers: pretraining GMF or MLP then trains NeuMF's own embeddings and tower in place;
    only the fused output layer needs initialising by hand (:func:`_fuse_output`). Every model is
    compiled with Adam; NeuMF is recompiled with SGD when it is fine-tuned after pretraining.
    """
    import keras
    from keras import layers

    reg = keras.regularizers.l2(params.l2) if params.l2 else None
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    init = keras.initializers.RandomNormal(stddev=0.01, seed=params.seed)
    gmf_u = layers.Embedding(n_users, params.gmf_dim, embeddings_initializer=init, embeddings_regularizer=reg)(user)
    gmf_i = layers.Embedding(n_items, params.gmf_dim, embeddings_initializer=init, embeddings_regularizer=reg)(item)
    gmf = layers.Multiply()([gmf_u, gmf_i])
    half = params.mlp_layers[0] // 2 or 1
    mlp_u = layers.Embedding(n_users, half, embeddings_initializer=init, embeddings_regularizer=reg)(user)
    mlp_i = layers.Embedding(n_items, half, embeddings_initializer=init, embeddings_regularizer=reg)(item)
    mlp = layers.Concatenate()([mlp_u, mlp_i])
    for width in params.mlp_layers[1:]:
        mlp = layers.Dense(width, activation="relu", kernel_regularizer=reg)(mlp)
    out = layers.Dense(1, activation="sigmoid", name="propensity")(layers.Concatenate()([gmf, mlp]))
    inputs = {"user": user, "item": item}
    models = {
        "neumf": keras.Model(inputs=inputs, outputs=out, name="neumf"),
        "gmf": keras.Model(inputs=inputs, outputs=layers.Dense(1, activation="sigmoid", name="gmf_out")(gmf)),
        "mlp": keras.Model(inputs=inputs, outputs=layers.Dense(1, activation="sigmoid", name="mlp_out")(mlp)),
    }
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="binary_crossentropy")
    return models


def _fuse_output(models: dict[str, keras.Model], alpha: float = 0.5) -> None:
    """NeuMF's output layer from the pretrained halves: ``[alpha * h_gmf, (1 - alpha) * h_mlp]``.

    The concatenation in NeuMF puts the GMF vector first, so the kernel rows follow that order; the
    bias is the same mix of the two biases (He et al. 2017, equation 13).
    """
    gmf_kernel, gmf_bias = models["gmf"].get_layer("gmf_out").get_weights()
    mlp_kernel, mlp_bias = models["mlp"].get_layer("mlp_out").get_weights()
    models["neumf"].get_layer("propensity").set_weights(
        [
            np.concatenate([alpha * gmf_kernel, (1 - alpha) * mlp_kernel]),
            alpha * gmf_bias + (1 - alpha) * mlp_bias,
        ]
    )


def sample_negatives(positives: pd.DataFrame, n_items: int, ratio: int, epochs: int, seed: int) -> pd.DataFrame:
    """Training rows for one user group: its positives once per epoch, plus ``ratio`` negatives each.

    Negatives are drawn uniformly from ``[0, n_items)`` (the dense item range), never a known positive
    of that user, with a generator seeded by (seed, user) so the result does not depend on partitioning.
    A user who has seen every item gets no negatives.
    """
    frames = []
    for u, group in positives.groupby("u", sort=True):
        pos = np.unique(group["i"].to_numpy())
        candidates = np.setdiff1d(np.arange(n_items), pos, assume_unique=True)
        rng = np.random.default_rng([seed, int(u)])
        n_neg = len(pos) * ratio if len(candidates) else 0
        for epoch in range(epochs):
            neg = rng.choice(candidates, size=n_neg, replace=n_neg > len(candidates)) if n_neg else pos[:0]
            frames.append(
                pd.DataFrame(
                    {
                        "u": np.int32(u),
                        "i": np.concatenate([pos, neg]).astype(np.int32),
                        "label": np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype(np.float32),
                        "epoch": np.int32(epoch),
                    }
                )
            )
    if not frames:
        return pd.DataFrame({"u": [], "i": [], "label": [], "epoch": []}).astype(
            {"u": "int32", "i": "int32", "label": "float32", "epoch": "int32"}
        )
    return pd.concat(frames, ignore_index=True)


def prepare_training_set(spark: SparkSession, pairs: DataFrame, n_items: int, params: NcfParams, out_dir: Path) -> Path:
    """Write positives + sampled negatives of the distinct ``(u, i)`` code pairs as Parquet under
    ``out_dir``, partitioned by epoch, each partition's rows sorted by a seeded random key (so a reader
    that goes through the files in any order already sees shuffled rows, not one user after another)."""
    from pyspark.sql import functions as F

    ratio, seed = params.negatives, params.seed
    epochs = max(params.epochs, params.pretrain_epochs)  # the pretraining epochs reuse the same files
    rows = pairs.groupBy(COL_U).applyInPandas(
        lambda pdf: sample_negatives(pdf, n_items, ratio, epochs, seed),
        schema="u int, i int, label float, epoch int",
    )
    path = out_dir / "ncf_training_set"
    shuffled = rows.withColumn("_key", F.rand(seed)).sortWithinPartitions("epoch", "_key").drop("_key")
    shuffled.write.mode("overwrite").partitionBy("epoch").parquet(str(path))
    return path


def epoch_batches(
    path: Path, epoch: int, batch_size: int, seed: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """One epoch's ``(features, labels)`` batches, read from Parquet one Arrow chunk at a time.

    Files are visited in a seeded random order and each chunk is permuted again before it is cut into
    batches, so the order differs per epoch and is repeatable per seed; at most one chunk
    (``SHUFFLE_ROWS``) plus one partial batch is in memory.
    """
    import pyarrow.dataset as ds

    files = sorted(ds.dataset(str(path / f"epoch={epoch}"), format="parquet").files)
    rng = np.random.default_rng([seed, epoch])
    pending = {
        name: np.zeros(0, dtype=dtype) for name, dtype in (("u", np.int32), ("i", np.int32), ("label", np.float32))
    }
    for j in rng.permutation(len(files)):
        for chunk in ds.dataset(files[j], format="parquet").to_batches(
            columns=["u", "i", "label"], batch_size=SHUFFLE_ROWS
        ):
            order = rng.permutation(chunk.num_rows)
            for name in pending:
                pending[name] = np.concatenate([pending[name], chunk.column(name).to_numpy()[order]])
            full = len(pending["label"]) // batch_size * batch_size
            for start in range(0, full, batch_size):
                stop = start + batch_size
                yield {"user": pending["u"][start:stop], "item": pending["i"][start:stop]}, pending["label"][start:stop]
            pending = {name: values[full:] for name, values in pending.items()}
    if len(pending["label"]):
        yield {"user": pending["u"], "item": pending["i"]}, pending["label"]


def epoch_dataset(path: Path, epoch: int, batch_size: int, seed: int) -> Any:
    """:func:`epoch_batches` as a ``tf.data`` pipeline with a fixed signature, prefetched for Keras."""
    import tensorflow as tf

    signature = (
        {"user": tf.TensorSpec([None], tf.int32), "item": tf.TensorSpec([None], tf.int32)},
        tf.TensorSpec([None], tf.float32),
    )
    import pyarrow.dataset as ds

    # the row count is in the files' footers; a known length lets Keras end the epoch cleanly
    rows = ds.dataset(str(path / f"epoch={epoch}"), format="parquet").count_rows()
    dataset = tf.data.Dataset.from_generator(
        lambda: epoch_batches(path, epoch, batch_size, seed), output_signature=signature
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size))).prefetch(tf.data.AUTOTUNE)


class NcfRecommender(TableBackedRecommender):
    """Scores (user, item) pairs with one forward pass; batch scoring re-ranks candidates.

    A forward pass per pair costs far more than a dot product, so the scoring core re-ranks the
    ``candidate_pool`` most popular items (or candidates a caller gives, e.g. an ALS top-200) rather
    than the whole catalog; evaluation ranks the full catalog (``n_candidates=0``).
    """

    family = "ncf"
    candidate_pool = 200
    user_factors_in_table = False

    def __init__(
        self,
        index: IdIndex,
        seen: SeenItems,
        model: keras.Model,
        params: NcfParams,
        *,
        popularity: np.ndarray | None = None,
        tables: Path | None = None,
    ) -> None:
        super().__init__(index, seen, popularity=popularity, tables=tables)
        self.model = model
        self.params = params

    @classmethod
    def fit(
        cls, spark: SparkSession, train: DataFrame, params: NcfParams, work_dir: Path, verbose: int = 0
    ) -> NcfRecommender:
        """Codes, tables and the training set in Spark; Keras on the driver from ``tf.data``. Returns
        the item side (plus the network); :meth:`with_user_side` reads the user side from the tables."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        keras.utils.set_random_seed(params.seed)
        users, items, pairs = coded_pairs(train)
        try:
            write_pair_tables(work_dir, users, items, pairs)
            item = read_items(work_dir)
            n_users = users.count()
            data_path = prepare_training_set(spark, pairs, len(item.items), params, work_dir)
        finally:
            pairs.unpersist()
        models = build_models(n_users, len(item.items), params)

        def train_epochs(model: keras.Model, epochs: int) -> None:
            for epoch in range(epochs):
                # shuffle=False: epoch_dataset already shuffled the epoch with a fixed seed; Keras
                # ignores (and warns about) its own shuffle for a tf.data input.
                dataset = epoch_dataset(data_path, epoch, params.batch_size, params.seed)
                model.fit(dataset, epochs=1, shuffle=False, verbose=verbose)

        model = models["neumf"]
        if params.pretrain_epochs:
            train_epochs(models["gmf"], params.pretrain_epochs)
            train_epochs(models["mlp"], params.pretrain_epochs)
            _fuse_output(models)
            model.compile(optimizer=keras.optimizers.SGD(params.finetune_learning_rate), loss="binary_crossentropy")
        train_epochs(model, params.epochs)
        return cls._item_side(item, work_dir, model=model, params=params)

    def _fields(self, user_factors: np.ndarray | None) -> dict[str, Any]:
        return {"model": self.model, "params": self.params}  # the user embeddings are in the network

    def score(self, user_codes: np.ndarray) -> np.ndarray:
        n_items = self.index.n_items
        items = np.broadcast_to(np.arange(n_items, dtype=np.int32), (len(user_codes), n_items))
        return self._predict(user_codes, items)

    def score_candidates(self, batch: UserBatch, candidates: np.ndarray) -> np.ndarray:
        return self._predict(batch.codes, candidates)

    def _predict(self, user_codes: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Propensities (n x c) for each user's row of item codes.

        Calls the model directly in fixed-size chunks: ``model.predict`` builds a tf.data pipeline and
        a progress loop per call, which costs more than the forward pass at re-ranking batch sizes.
        """
        n, c = items.shape
        users = np.repeat(np.asarray(user_codes, dtype=np.int32), c)
        flat = np.ascontiguousarray(items, dtype=np.int32).reshape(-1)
        out = np.empty(n * c, dtype=np.float32)
        for start in range(0, n * c, _PREDICT_CHUNK):
            stop = min(start + _PREDICT_CHUNK, n * c)
            pred = self.model({"user": users[start:stop], "item": flat[start:stop]}, training=False)
            out[start:stop] = np.asarray(pred, dtype=np.float32).reshape(-1)
        return out.reshape(n, c)

    def for_workers(self) -> NcfRecommender:
        return self.item_side_copy()

    def save(self, folder: Path) -> None:
        self._save_tables(folder)
        self.model.save(folder / MODEL_FILE)
        write_model_json(folder, type(self), params=asdict(self.params))

    @classmethod
    def load(cls, folder: Path) -> NcfRecommender:
        return cls.load_item_side(folder).with_user_side()

    @classmethod
    def load_item_side(cls, folder: Path) -> NcfRecommender:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        model = keras.models.load_model(folder / MODEL_FILE, safe_mode=True, compile=False)
        params = NcfParams.from_dict(read_model_json(folder)["params"])
        if (folder / "users.json").exists():  # schema 1: JSON ids, NumPy seen index
            return cls(IdIndex.load(folder), SeenItems.load(folder), model, params)
        return cls._item_side(read_items(folder), folder, model=model, params=params)
