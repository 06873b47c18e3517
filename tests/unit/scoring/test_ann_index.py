"""The item index of large catalogs: stored as plain files checked by digest, close to exact, used by the
scoring core only above its catalog-size threshold and only when the caller lets the model choose."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.artifact import load_recommender, save_candidate_index
from recflow.models.base import Recommender
from recflow.models.index import ArtifactError
from recflow.models.popularity import PopularityRecommender
from recflow.models.synthetic import random_als
from recflow.scoring.ann import ANN_INDEX_FILE, ANN_META_FILE, AnnError, AnnParams, CandidateIndex
from recflow.scoring.core import UserBatch, score_batch

N_ITEMS = 3000


def _factors(n: int = N_ITEMS, rank: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, rank)).astype(np.float32)


@pytest.mark.parametrize(
    "params", [AnnParams(), AnnParams(factory="HNSW32"), AnnParams(factory="IVF16,Flat", search_depth=16)]
)
def test_index_round_trips_through_its_files_and_pickle(tmp_path: Path, params: AnnParams) -> None:
    factors = _factors()
    built = CandidateIndex.build(factors, params, threads=1)
    built.save(tmp_path)
    loaded = CandidateIndex.load(tmp_path, factors)
    assert loaded is not None and loaded.params == params
    queries = _factors(20, seed=2)
    expected = built.candidates(queries, 50)
    np.testing.assert_array_equal(loaded.candidates(queries, 50), expected)
    shipped = pickle.loads(pickle.dumps(loaded))  # how Spark sends the model to its workers
    np.testing.assert_array_equal(shipped.candidates(queries, 50), expected)


def test_a_changed_index_file_or_other_factors_are_refused(tmp_path: Path) -> None:
    factors = _factors()
    CandidateIndex.build(factors, threads=1).save(tmp_path)
    other = factors.copy()
    other[7, 3] += 1.0
    with pytest.raises(AnnError, match="other item factors"):
        CandidateIndex.load(tmp_path, other)
    with pytest.raises(AnnError, match="other item factors"):
        CandidateIndex.load(tmp_path, factors[:-1])
    raw = bytearray((tmp_path / ANN_INDEX_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / ANN_INDEX_FILE).write_bytes(bytes(raw))
    with pytest.raises(AnnError, match=r"differs from ann\.json"):
        CandidateIndex.load(tmp_path, factors)
    (tmp_path / ANN_INDEX_FILE).unlink()
    with pytest.raises(AnnError, match="is missing"):
        CandidateIndex.load(tmp_path, factors)
    (tmp_path / ANN_META_FILE).write_text('{"schema_version": 99}')
    with pytest.raises(AnnError, match="schema_version 99"):
        CandidateIndex.load(tmp_path, factors)


def test_no_index_file_means_no_index(tmp_path: Path) -> None:
    assert CandidateIndex.load(tmp_path, _factors()) is None


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(AnnError, match="at least 16 items"):
        CandidateIndex.build(_factors(15), threads=1)
    with pytest.raises(AnnError, match="HNSW, IVF or PQ"):
        AnnParams(factory="Flat")
    with pytest.raises(AnnError, match=">= 1"):
        AnnParams(pool=0)


def _model(tmp_path: Path) -> tuple[Recommender, UserBatch]:
    random_als(tmp_path, n_users=300, n_items=N_ITEMS, rank=16, seen_per_user=20, seed=5, ann=AnnParams())
    model = load_recommender(tmp_path)
    codes = np.arange(300)
    return model, UserBatch(codes=codes, seen=model.seen.ragged(codes))


def test_the_loader_attaches_the_artifact_s_index_and_its_answers_are_close_to_exact(tmp_path: Path) -> None:
    model, batch = _model(tmp_path)
    assert model.candidate_index is not None
    exact = score_batch(model, batch, k=10, n_candidates=0)
    approx = score_batch(model, batch, k=10, ann_min_items=N_ITEMS)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.items, exact.items, strict=True)])
    assert recall >= 0.95
    assert (approx.counts == 10).all()
    seen = model.seen.mask(batch.codes, N_ITEMS)
    assert not seen[np.arange(300)[:, None], approx.items].any()  # seen items removed, as exact scoring does
    # every returned score is the model's exact score of that pair
    exact_scores = np.take_along_axis(model.score(batch.codes), approx.items, axis=1)
    np.testing.assert_allclose(approx.scores, exact_scores, rtol=1e-5)


def test_the_core_uses_the_index_only_above_the_threshold_and_when_the_model_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, batch = _model(tmp_path)
    asked: list[int] = []
    original = CandidateIndex.candidates

    def counting(self: CandidateIndex, queries: np.ndarray, n: int) -> np.ndarray:
        asked.append(len(queries))
        return original(self, queries, n)

    monkeypatch.setattr(CandidateIndex, "candidates", counting)
    exact = score_batch(model, batch, k=10, n_candidates=0)
    below = score_batch(model, batch, k=10, ann_min_items=N_ITEMS + 1)
    assert asked == [] and np.array_equal(below.items, exact.items)
    score_batch(model, batch, k=10, ann_min_items=N_ITEMS, n_candidates=0)  # metrics: the full catalog
    assert asked == []
    score_batch(model, batch, k=10, ann_min_items=N_ITEMS)
    assert sum(asked) == 300


def test_training_builds_an_index_only_for_a_large_catalog(tmp_path: Path) -> None:
    model = random_als(tmp_path / "small", n_users=10, n_items=200, rank=8)
    assert save_candidate_index(model, tmp_path / "small", min_items=201) is None
    assert not (tmp_path / "small" / ANN_META_FILE).exists()
    assert save_candidate_index(model, tmp_path / "small", min_items=200) is not None
    assert load_recommender(tmp_path / "small").candidate_index is not None


def test_an_index_beside_a_model_without_item_vectors_is_refused(tmp_path: Path) -> None:
    PopularityRecommender.fit(pd.DataFrame({COL_USER: ["a"], COL_ITEM: ["x"]})).save(tmp_path)
    CandidateIndex.build(_factors(1, 4), AnnParams(factory="HNSW32"), threads=1).save(tmp_path)
    with pytest.raises(ArtifactError, match="no item vectors"):
        load_recommender(tmp_path)


def test_retuning_changes_the_search_not_the_build() -> None:
    index = CandidateIndex.build(_factors(), AnnParams(search_depth=16, pool=20), threads=1)
    index.retune(search_depth=300, pool=250)
    assert index.params == AnnParams(search_depth=300, pool=250)
    assert (index.candidates(_factors(3, seed=4), 250) >= 0).all()  # a graph search returns up to efSearch


def _recall(index: CandidateIndex, factors: np.ndarray, queries: np.ndarray) -> float:
    exact = np.argsort(-(queries @ factors.T), axis=1)[:, :10]
    found = index.candidates(queries, index.params.pool)
    return float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))


def test_training_tunes_the_search_depth_to_the_target_recall_and_records_it(tmp_path: Path) -> None:
    factors, queries = _factors(20_000, rank=32), _factors(300, rank=32, seed=3)
    # IVF: 64 cells, a pool of 30; one probed cell recalls far less than the target
    params = AnnParams(factory="IVF64,Flat", search_depth=1, pool=30, target_recall=0.97)
    index = CandidateIndex.build(factors, params, threads=1)
    shallow = _recall(index, factors, queries)
    tuning = index.tune(factors, queries)
    assert tuning is not None and tuning.reached and tuning.users == 300
    assert shallow < 0.97 <= tuning.recall_at_10
    assert index.params.search_depth == tuning.search_depth > 1
    assert _recall(index, factors, queries) == pytest.approx(tuning.recall_at_10, abs=1e-3)  # what it measured
    index.retune(search_depth=tuning.search_depth // 2, pool=30)
    assert _recall(index, factors, queries) < 0.97  # the depth chosen is the shallowest that reaches it
    index.retune(search_depth=tuning.search_depth, pool=30)
    index.save(tmp_path)
    loaded = CandidateIndex.load(tmp_path, factors)
    assert loaded is not None and loaded.tuning == tuning and loaded.params.search_depth == tuning.search_depth


def test_a_target_the_deepest_search_misses_is_recorded_as_not_reached() -> None:
    factors = _factors(2000)
    queries = _factors(50, seed=6)
    # a pool of 5 can never hold all 10 exact items: recall <= 0.5 at every depth
    index = CandidateIndex.build(factors, AnnParams(factory="IVF8,Flat", search_depth=1, pool=5), threads=1)
    tuning = index.tune(factors, queries)
    assert tuning is not None and not tuning.reached and tuning.recall_at_10 <= 0.5
    assert tuning.search_depth == 8  # every cell probed
    assert CandidateIndex.build(factors, AnnParams(target_recall=None), threads=1).tune(factors, queries) is None


def test_save_candidate_index_tunes_on_the_model_s_own_users(tmp_path: Path) -> None:
    model = random_als(tmp_path, n_users=400, n_items=N_ITEMS, rank=16, seen_per_user=5, seed=2)
    index = save_candidate_index(model, tmp_path, min_items=0)
    assert index is not None and index.tuning is not None and index.tuning.users == 300
    assert index.tuning.reached and index.tuning.recall_at_10 >= 0.95
    meta = json.loads((tmp_path / ANN_META_FILE).read_text())
    assert meta["tuning"]["recall_at_10"] == index.tuning.recall_at_10
    assert meta["params"]["search_depth"] == index.tuning.search_depth
