"""The scoring core against a brute-force reference: same top-K, seen removed, fallback and exhaustion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_USER
from recflow.models.als import AlsParams, AlsRecommender
from recflow.models.index import IdIndex, SeenItems
from recflow.models.popularity import PopularityRecommender
from recflow.scoring.core import Ragged, UserBatch, score_batch, select_top_k


def _reference(scores: np.ndarray, k: int) -> list[list[int]]:
    """Brute force: a full stable sort of each row, finite entries only (ties: lower column first)."""
    out = []
    for row in scores:
        order = sorted((c for c in range(len(row)) if np.isfinite(row[c])), key=lambda c: (-row[c], c))
        out.append(order[:k])
    return out


@pytest.mark.parametrize(("n", "m", "k"), [(50, 1000, 10), (7, 130, 5), (30, 1003, 200), (5, 12, 20)])
def test_select_top_k_matches_a_full_sort(n: int, m: int, k: int) -> None:
    rng = np.random.default_rng(n * m + k)
    scores = rng.standard_normal((n, m)).astype(np.float32)
    scores[rng.random((n, m)) < 0.05] = -np.inf  # masked entries
    scores[0, :] = -np.inf  # an exhausted row
    scores[1, : m - 2] = -np.inf  # fewer than k left
    scores[2, :] = np.float32(0.5)  # all tied
    cols, vals, counts = select_top_k(scores.copy(), k)
    expected = _reference(scores, k)
    for row in range(n):
        assert cols[row, : counts[row]].tolist() == expected[row]
        assert np.all(cols[row, counts[row] :] == -1) and np.all(np.isnan(vals[row, counts[row] :]))
        np.testing.assert_array_equal(vals[row, : counts[row]], scores[row, expected[row]])
    assert counts[0] == 0 and counts[1] == min(k, 2)


def test_nan_scores_are_never_selected() -> None:
    scores = np.array([[np.nan, 1.0, 2.0, np.nan]], dtype=np.float32)
    cols, _, counts = select_top_k(scores, 3)
    assert counts.tolist() == [2] and cols[0, :2].tolist() == [2, 1]


def test_nan_scores_do_not_let_masked_items_back() -> None:
    """A NaN anywhere in the matrix must not turn the seen items' -inf into a selectable number."""
    scores = np.array([[np.nan, 1.0, -np.inf, -np.inf], [np.nan, np.nan, np.nan, np.nan]], dtype=np.float32)
    cols, _, counts = select_top_k(scores, 3)
    assert counts.tolist() == [1, 0] and cols[0].tolist() == [1, -1, -1] and cols[1].tolist() == [-1, -1, -1]


def _als() -> AlsRecommender:
    pairs = pd.DataFrame({COL_USER: ["a", "a", "b", "c", "c", "c"], COL_ITEM: ["x", "y", "y", "x", "y", "z"]})
    index = IdIndex.from_frame(pairs)
    rng = np.random.default_rng(3)
    return AlsRecommender(
        index,
        SeenItems.from_frame(pairs, index),
        rng.standard_normal((index.n_users, 4)).astype(np.float32),
        rng.standard_normal((index.n_items, 4)).astype(np.float32),
        AlsParams(rank=4),
    )


def test_score_batch_removes_the_given_seen_items_not_the_training_ones() -> None:
    model = _als()
    codes = model.index.user_codes(["a", "b", "zz-new"])
    # "b" has since bought x and z (after training): only y is left; the new user bought x.
    seen = Ragged.from_lists([[], [0, 2], [0]])
    top = score_batch(model, UserBatch(codes=codes, seen=seen), k=3)
    assert top.counts.tolist() == [3, 1, 2]
    assert top.items[1, 0] == 1
    assert 0 not in top.items[2].tolist()
    assert top.fallback.tolist() == [False, False, True]
    full = model.score(codes[:1])[0]
    assert top.items[0].tolist() == np.argsort(-full, kind="stable").tolist()
    np.testing.assert_allclose(top.scores[2, :2], model.fallback_scores()[top.items[2, :2]])
    assert np.all((model.fallback_scores() >= 0) & (model.fallback_scores() <= 1))


def test_shipped_factor_rows_win_over_the_model_s_own() -> None:
    model = _als()
    codes = model.index.user_codes(["a"])
    factors = -model.user_factors[codes]  # what the caller joined; the scorer must use it
    top = score_batch(model, UserBatch(codes=codes, seen=Ragged.empty(1), factors=factors), k=3)
    assert top.items[0].tolist() == np.argsort(model.score(codes)[0], kind="stable").tolist()


def test_user_who_saw_everything_is_exhausted_not_an_error() -> None:
    model = _als()
    codes = model.index.user_codes(["c", "a"])
    top = score_batch(model, UserBatch(codes=codes, seen=Ragged.from_lists([[0, 1, 2], [1]])), k=2)
    assert top.exhausted == 1 and top.counts.tolist() == [0, 2]


def test_candidates_are_re_ranked_and_seen_candidates_dropped() -> None:
    model = _als()
    codes = model.index.user_codes(["a", "b"])
    candidates = np.array([[2, 1, -1], [0, 1, 2]], dtype=np.int32)
    top = score_batch(model, UserBatch(codes=codes, seen=Ragged.from_lists([[1], []])), k=5, candidates=candidates)
    assert top.counts.tolist() == [1, 3] and top.items[0, 0] == 2
    full = model.score(codes[1:])[0]
    assert top.items[1].tolist() == np.argsort(-full, kind="stable").tolist()


def test_popularity_scores_are_normalised_and_recommend_marks_sources() -> None:
    pairs = pd.DataFrame({COL_USER: ["a", "b", "b", "c"], COL_ITEM: ["x", "x", "y", "x"]})
    model = PopularityRecommender.fit(pairs)
    recs = model.recommend(["b", "new"], k=2)
    assert recs.loc[recs[COL_USER] == "new", "source"].tolist() == ["fallback", "fallback"]
    assert recs.loc[recs[COL_USER] == "b"].empty  # b has seen both items
    assert recs["score"].max() == 1.0
