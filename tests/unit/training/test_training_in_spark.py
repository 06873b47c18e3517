"""ALS, NCF and popularity train without collecting to the driver (issue 9, build item 8), on real Spark.

The run goes through ``run_training`` (fit, hold-out, canary, artifact) while every way a DataFrame
reaches the driver (``toPandas``, ``collect``, ``take``, ``toLocalIterator``) refuses a frame of more
than ``LIMIT`` rows, and the driver-side readers of the user tables refuse to run at all. The data has
far more training pairs (3,000) and users (1,000) than ``LIMIT``; what may come back is bounded by the
hold-out (40 pairs, 40 users x K rows) and by the catalog (30 items).

Then, outside the guard, the artifact is loaded as a scorer would load it and must reproduce the
run's numbers in process: the canary recorded from Spark passes, and the in-process hold-out metrics
equal the Spark-side ones, so scoring in Spark changed where the work happens, not the answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_flow import WINDOW, events, fit_popularity, train, write_lake

from recflow.constants import COL_ITEM, COL_TS, COL_USER
from recflow.evaluation.canary import CANARY_FILE, check_canary
from recflow.evaluation.python_holdout import judgeable_pairs, score_holdout
from recflow.models.artifact import load_recommender
from recflow.models.index import IdIndex, SeenItems

LIMIT = 600
N_USERS, N_ITEMS, PER_USER, HOLDOUT_USERS = 1000, 30, 3, 40
K = 10


@pytest.fixture(scope="module")
def spark(local_spark: Any) -> Iterator[Any]:
    with local_spark("test-training-in-spark", cores=2, shuffle_partitions=4) as session:
        yield session


def interactions() -> pd.DataFrame:
    """Users in 3 taste groups (so the models learn something); 40 of them buy one more item later."""
    rng = np.random.default_rng(7)
    rows = []
    for u in range(N_USERS):
        group = u % 3
        liked = rng.choice(np.arange(group * 10, group * 10 + 10), size=PER_USER + 1, replace=False)
        for j, item in enumerate(liked[:PER_USER]):
            rows.append((f"u{u:04d}", f"i{item:02d}", WINDOW.start + timedelta(days=j % 3)))
        if u < HOLDOUT_USERS:
            rows.append((f"u{u:04d}", f"i{liked[PER_USER]:02d}", WINDOW.holdout_start))
    return events(rows)


class DriverGuard:
    """Fails any collection of more than ``LIMIT`` rows, and any driver-side read of the user tables."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pyspark.sql.classic.dataframe import DataFrame  # the class a local session's frames have

        self.largest = 0
        for name in ("toPandas", "collect", "toLocalIterator"):
            original = getattr(DataFrame, name)
            monkeypatch.setattr(DataFrame, name, self._bounded(name, original))
        import recflow.models.index

        # every reader of the user side (TableBackedRecommender, IdIndex.load, SeenItems.load) calls these
        for reader in ("read_users", "read_seen"):
            monkeypatch.setattr(recflow.models.index, reader, self._forbidden(reader))

    def _bounded(self, name: str, original: Any) -> Any:
        guard = self

        def call(frame: Any, *args: Any, **kwargs: Any) -> Any:
            rows = frame.count()
            guard.largest = max(guard.largest, rows)
            if rows > LIMIT:
                raise AssertionError(f"DataFrame.{name} of {rows} rows reached the driver: {frame.columns}")
            return original(frame, *args, **kwargs)

        return call

    @staticmethod
    def _forbidden(reader: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"{reader} read the user side onto the training driver")

        return call


def fit_als(spark: Any, train: Any, params: Any, work_dir: Path) -> Any:
    from recflow.models.als import AlsParams, AlsRecommender

    return AlsRecommender.fit(spark, train, AlsParams.from_dict(dict(params)), work_dir)


def fit_ncf(spark: Any, train: Any, params: Any, work_dir: Path) -> Any:
    from recflow.models.ncf import NcfParams, NcfRecommender

    return NcfRecommender.fit(spark, train, NcfParams.from_dict(dict(params)), work_dir)


def train_guarded(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str, fit: Any, params: Any):
    lake = write_lake(tmp_path / "lake", interactions())
    out = tmp_path / "runs" / family
    with monkeypatch.context() as patch:
        guard = DriverGuard(patch)
        result = train(spark, lake, out, fit, family=family, params=params, k=K)
    assert 0 < guard.largest <= LIMIT, "the guard saw no collection at all: it would not notice one"
    return result, out


def check_artifact_reproduces_the_run(result: Any, out: Path) -> None:
    artifact = out / "artifact"
    assert {"users.parquet", "items.parquet", "seen.parquet"} <= {p.name for p in artifact.iterdir()}
    assert not list(artifact.rglob("*.crc")) and not (artifact / "users.json").exists()
    model = load_recommender(artifact)  # as the streaming scorer and the compare step load it
    assert model.index.n_users == N_USERS and model.index.n_items == N_ITEMS
    assert model.index.users == tuple(sorted(model.index.users)), "codes follow sorted ids, as before"
    assert len(model.seen.indices) == N_USERS * PER_USER
    verdict = check_canary(model, json.loads((artifact / CANARY_FILE).read_text()))
    assert verdict["passed"], verdict["reasons"]
    frame = interactions()
    held_out = frame[frame[COL_TS] >= pd.Timestamp(WINDOW.holdout_start, tz="UTC")]
    truth = judgeable_pairs(held_out[[COL_USER, COL_ITEM]], model)
    assert len(truth) == HOLDOUT_USERS
    in_process = score_holdout(model, truth, K)
    assert in_process == pytest.approx(result.metrics, abs=1e-9)


def test_als_trains_and_evaluates_without_collecting_pairs_or_user_factors(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"rank": 8, "max_iter": 5, "seed": 3}
    result, out = train_guarded(spark, tmp_path, monkeypatch, "als", fit_als, params)
    check_artifact_reproduces_the_run(result, out)
    assert result.metrics[f"ndcg@{K}"] > 0.2, "three taste groups of 10 items: ALS must find them"


def test_popularity_counts_in_spark_without_collecting_pairs(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, out = train_guarded(spark, tmp_path, monkeypatch, "popularity", fit_popularity, {})
    check_artifact_reproduces_the_run(result, out)


@pytest.mark.slow
def test_ncf_streams_its_training_set_and_evaluates_in_spark(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"gmf_dim": 8, "mlp_layers": [16, 8], "epochs": 2, "negatives": 2, "batch_size": 256, "seed": 3}
    result, out = train_guarded(spark, tmp_path, monkeypatch, "ncf", fit_ncf, params)
    check_artifact_reproduces_the_run(result, out)


def test_the_guard_refuses_collecting_the_training_pairs(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard is what the two tests above rely on: collecting the pairs must trip it."""
    lake = write_lake(tmp_path / "lake", interactions())
    pairs = spark.read.parquet(str(lake / "interactions")).select(COL_USER, COL_ITEM)
    with monkeypatch.context() as patch:
        DriverGuard(patch)
        with pytest.raises(AssertionError, match="rows reached the driver"):
            pairs.toPandas()
        with pytest.raises(AssertionError, match="rows reached the driver"):
            pairs.take(LIMIT + 1)


def test_dense_codes_are_sorted_dense_and_independent_of_partitioning(spark: Any) -> None:
    from recflow.models.tables import dense_codes

    ids = [f"id{n}" for n in np.random.default_rng(1).permutation(500)] + ["é", "Z", "a"]
    frame = spark.createDataFrame(pd.DataFrame({"x": ids + ids[:50]})).repartition(5)
    for partitions in (1, 3, 7):
        coded = dense_codes(frame, "x", "c", partitions=partitions).toPandas().sort_values("c")
        assert coded["c"].tolist() == list(range(len(ids)))
        assert coded["x"].tolist() == sorted(ids), "Spark's string order is Python's (code points)"


def test_tables_written_from_memory_load_back(tmp_path: Path) -> None:
    """A model held in memory (e.g. loaded from a schema-1 artifact) saves the same Parquet layout."""
    from recflow.models.als import AlsParams, AlsRecommender

    index = IdIndex(users=("a", "b", "c"), items=("x", "y"))
    seen = SeenItems(indptr=np.array([0, 2, 2, 3]), indices=np.array([0, 1, 1], dtype=np.int32))
    users = np.arange(6, dtype=np.float32).reshape(3, 2)
    items = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    AlsRecommender(index, seen, users, items, AlsParams(rank=2)).save(tmp_path / "m")
    loaded = load_recommender(tmp_path / "m")
    assert isinstance(loaded, AlsRecommender) and loaded.index == index
    assert loaded.seen.indptr.tolist() == [0, 2, 2, 3] and loaded.seen.indices.tolist() == [0, 1, 1]
    assert np.array_equal(loaded.user_factors, users) and np.array_equal(loaded.item_factors, items)
    assert loaded.fallback_scores().tolist() == [0.5, 1.0]
    assert loaded.for_workers().fallback_scores().tolist() == [0.5, 1.0]


def test_schema_1_als_artifact_still_loads(tmp_path: Path) -> None:
    """Artifacts registered before the Parquet tables (JSON ids, NumPy factors and seen index) serve on."""
    import json as json_module

    from recflow.models.als import AlsParams, AlsRecommender

    index = IdIndex(users=("a", "b"), items=("x", "y", "z"))
    seen = SeenItems(indptr=np.array([0, 1, 3]), indices=np.array([2, 0, 1], dtype=np.int32))
    folder = tmp_path / "v1"
    folder.mkdir()
    index.save(folder)
    seen.save(folder)
    np.save(folder / "user_factors.npy", np.ones((2, 2), dtype=np.float32))
    np.save(folder / "item_factors.npy", np.eye(3, 2, dtype=np.float32))
    meta = {"family": "als", "recommender": "recflow.models.als.AlsRecommender", "schema_version": 1}
    (folder / "model.json").write_text(json_module.dumps({**meta, "params": {"rank": 2}}))
    model = load_recommender(folder)
    assert isinstance(model, AlsRecommender) and model.params == AlsParams(rank=2)
    assert model.index == index and model.seen.indices.tolist() == [2, 0, 1]
    recs = model.recommend(["a"], k=2)
    assert recs[COL_ITEM].tolist() == ["x", "y"]  # z is seen; x and y both score 1, lower code first
