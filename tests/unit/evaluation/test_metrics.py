"""Unit tests for recflow.evaluation.metrics: every metric against hand-computed values.

Expected values are literal fractions with the arithmetic in comments, or come from a deliberately
naive per-user reference written here; none is computed by calling the code under test.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from recflow.constants import COL_ITEM, COL_SCORE, COL_USER
from recflow.evaluation.metrics import (
    METRICS,
    DuplicatePredictionError,
    EmptyTruthError,
    EvaluationInputError,
    InvalidKError,
    MissingColumnsError,
    UnknownMetricError,
    catalog_coverage,
    evaluate,
    hit_rate_at_k,
    map_at_k,
    metrics_table,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# --------------------------------------------------------------------------------------------------
# The hand-worked example used throughout (catalog: items 1..10)
#
#   user | relevant (truth)     | recommendations, score       | ranked list
#   -----+----------------------+------------------------------+---------------------------
#     1  | {1, 2, 3}   (3 rel.) | 3:0.1, 1:0.9, 2:0.7, 7:0.8   | [1, 7, 2, 3]  hits at 1, 3, 4
#     2  | {4}         (1 rel.) | 8:0.9, 4:0.5                 | [8, 4]        hit at 2 (short list)
#     3  | {5, 6}      (2 rel.) | none                         | []            counts as 0
#     9  | not in truth         | 1:0.5                        | ignored by user-averaged metrics
#
# Users averaged over: 1, 2 and 3 (the users in the truth).
# --------------------------------------------------------------------------------------------------
LOG2_3 = math.log2(3)


@pytest.fixture
def truth() -> pd.DataFrame:
    return pd.DataFrame({COL_USER: [1, 1, 1, 2, 3, 3], COL_ITEM: [1, 2, 3, 4, 5, 6]})


@pytest.fixture
def pred() -> pd.DataFrame:
    # Deliberately not sorted by score: the metrics must rank by score themselves.
    return pd.DataFrame(
        {
            COL_USER: [1, 1, 1, 1, 2, 2, 9],
            COL_ITEM: [3, 1, 2, 7, 8, 4, 1],
            COL_SCORE: [0.1, 0.9, 0.7, 0.8, 0.9, 0.5, 0.5],
        }
    )


# ---- precision ------------------------------------------------------------------------------------
def test_precision_at_3(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # u1 top3 [1,7,2]: 2 hits -> 2/3; u2 [8,4]: 1 hit -> 1/3 (denominator k, not list length); u3: 0
    assert precision_at_k(truth, pred, k=3) == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)


def test_precision_k_larger_than_lists(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # k=100: u1 hits 1,2,3 -> 3/100; u2 -> 1/100; u3 -> 0
    assert precision_at_k(truth, pred, k=100) == pytest.approx((3 / 100 + 1 / 100 + 0) / 3)


# ---- recall ---------------------------------------------------------------------------------------
def test_recall_at_3(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # u1: 2 of 3 relevant; u2: 1 of 1; u3: 0 of 2
    assert recall_at_k(truth, pred, k=3) == pytest.approx((2 / 3 + 1 / 1 + 0 / 2) / 3)


def test_recall_k_larger_than_lists(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # u1: 3 of 3; u2: 1 of 1; u3: 0
    assert recall_at_k(truth, pred, k=100) == pytest.approx((1 + 1 + 0) / 3)


# ---- nDCG -----------------------------------------------------------------------------------------
def test_ndcg_at_3(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # u1: DCG = 1/log2(1+1) + 1/log2(3+1) = 1 + 1/2; ideal with min(3,3)=3 hits = 1 + 1/log2(3) + 1/2
    # u2: DCG = 1/log2(2+1); ideal with min(1,3)=1 hit = 1
    # u3: 0
    u1 = (1 + 1 / 2) / (1 + 1 / LOG2_3 + 1 / 2)
    u2 = (1 / LOG2_3) / 1
    assert ndcg_at_k(truth, pred, k=3) == pytest.approx((u1 + u2 + 0) / 3)


def test_ndcg_ideal_uses_min_of_relevant_and_k(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # k=2: u1 top2 [1,7]: DCG = 1; ideal has min(3,2)=2 hits = 1 + 1/log2(3)
    #      u2 top2 [8,4]: DCG = 1/log2(3); ideal = 1;  u3: 0
    u1 = 1 / (1 + 1 / LOG2_3)
    assert ndcg_at_k(truth, pred, k=2) == pytest.approx((u1 + 1 / LOG2_3 + 0) / 3)


def test_ndcg_perfect_list_is_one() -> None:
    truth = pd.DataFrame({COL_USER: [1, 1], COL_ITEM: [10, 20]})
    pred = pd.DataFrame({COL_USER: [1, 1, 1], COL_ITEM: [10, 20, 30], COL_SCORE: [3.0, 2.0, 1.0]})
    assert ndcg_at_k(truth, pred, k=3) == pytest.approx(1.0)


# ---- MAP ------------------------------------------------------------------------------------------
def test_map_at_3_min_relevant_k(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # u1 hits at ranks 1 and 3: precision@1 = 1/1, precision@3 = 2/3; divided by min(3,3)=3
    # u2 hit at rank 2: precision@2 = 1/2; divided by min(1,3)=1;  u3: 0
    expected = ((1 / 1 + 2 / 3) / 3 + (1 / 2) / 1 + 0) / 3
    assert map_at_k(truth, pred, k=3) == pytest.approx(expected)


def test_map_at_2_two_normalizations_differ(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # k=2: u1 top2 [1,7], hit at rank 1: precision sum = 1/1
    #        min_relevant_k divides by min(3,2)=2, all_relevant by 3
    #      u2 top2 [8,4], hit at rank 2: 1/2, divided by 1 either way;  u3: 0
    assert map_at_k(truth, pred, k=2) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert map_at_k(truth, pred, k=2, normalization="all_relevant") == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)


def test_map_perfect_top_k_is_one_only_with_min_relevant_k() -> None:
    # one user, 4 relevant, top2 = two hits: precision sum = 1/1 + 2/2 = 2
    truth = pd.DataFrame({COL_USER: [1] * 4, COL_ITEM: [1, 2, 3, 4]})
    pred = pd.DataFrame({COL_USER: [1, 1], COL_ITEM: [1, 2], COL_SCORE: [2.0, 1.0]})
    assert map_at_k(truth, pred, k=2) == pytest.approx(2 / 2)
    assert map_at_k(truth, pred, k=2, normalization="all_relevant") == pytest.approx(2 / 4)


# ---- hit rate -------------------------------------------------------------------------------------
def test_hit_rate(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # k=3: u1 hit, u2 hit, u3 none -> 2/3;  k=1: u1 top1 [1] hit, u2 top1 [8] miss -> 1/3
    assert hit_rate_at_k(truth, pred, k=3) == pytest.approx(2 / 3)
    assert hit_rate_at_k(truth, pred, k=1) == pytest.approx(1 / 3)


# ---- coverage -------------------------------------------------------------------------------------
def test_catalog_coverage(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    catalog = range(1, 11)
    # k=3: u1 {1,7,2}, u2 {8,4}, u9 {1} (every recommended user counts) -> {1,2,4,7,8} = 5 of 10
    assert catalog_coverage(truth, pred, k=3, catalog=catalog) == pytest.approx(5 / 10)
    # k=1: u1 {1}, u2 {8}, u9 {1} -> {1,8} = 2 of 10
    assert catalog_coverage(truth, pred, k=1, catalog=catalog) == pytest.approx(2 / 10)


def test_coverage_ignores_items_outside_catalog(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    # catalog {1,2,3,4}: recommended at k=3 are {1,2,4,7,8}; 7 and 8 are outside -> 3 of 4
    assert catalog_coverage(truth, pred, k=3, catalog=[1, 2, 3, 4]) == pytest.approx(3 / 4)


# ---- edge cases -----------------------------------------------------------------------------------
def test_no_recommendations_at_all_scores_zero(truth: pd.DataFrame) -> None:
    empty = pd.DataFrame({COL_USER: pd.Series([], dtype="int64"), COL_ITEM: pd.Series([], dtype="int64")})
    empty[COL_SCORE] = pd.Series([], dtype="float64")
    for name in ("precision", "recall", "ndcg", "map", "hit_rate"):
        assert METRICS[name](truth, empty, k=3) == 0.0, name
    assert catalog_coverage(truth, empty, k=3, catalog=[1, 2]) == 0.0


def test_ties_keep_row_order() -> None:
    # items 10 and 20 tie at 0.5; only 20 is relevant. With k=1 the first row given wins the tie.
    truth = pd.DataFrame({COL_USER: [1], COL_ITEM: [20]})
    first_10 = pd.DataFrame({COL_USER: [1, 1], COL_ITEM: [10, 20], COL_SCORE: [0.5, 0.5]})
    first_20 = first_10.iloc[::-1]
    assert precision_at_k(truth, first_10, k=1) == 0.0
    assert precision_at_k(truth, first_20, k=1) == 1.0
    # at rank 2 the hit is discounted: nDCG = (1/log2(3)) / 1
    assert ndcg_at_k(truth, first_10, k=2) == pytest.approx(1 / LOG2_3)


def test_duplicate_truth_rows_count_once() -> None:
    # user 1 bought item 5 three times: still one relevant item, so recall@1 = 1/1
    truth = pd.DataFrame({COL_USER: [1, 1, 1], COL_ITEM: [5, 5, 5]})
    pred = pd.DataFrame({COL_USER: [1], COL_ITEM: [5], COL_SCORE: [1.0]})
    assert recall_at_k(truth, pred, k=1) == 1.0
    assert ndcg_at_k(truth, pred, k=1) == 1.0


def test_string_ids_and_custom_column_names() -> None:
    truth = pd.DataFrame({"u": ["a", "a", "b"], "i": ["x", "y", "x"]})
    pred = pd.DataFrame({"u": ["a", "a", "b"], "i": ["y", "z", "z"], "p": [0.9, 0.8, 0.1]})
    # k=2: a [y,z] 1 hit / 2; b [z] 0 hits -> (1/2 + 0)/2
    got = precision_at_k(truth, pred, col_user="u", col_item="i", col_prediction="p", k=2)
    assert got == pytest.approx((1 / 2 + 0) / 2)


# ---- evaluate and the table -----------------------------------------------------------------------
def test_evaluate_names_and_values(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    got = evaluate(truth, pred, k=3, catalog=range(1, 11))
    assert list(got) == ["precision@3", "recall@3", "ndcg@3", "map@3", "hit_rate@3", "coverage@3"]
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert got["map@3"] == pytest.approx(((1 + 2 / 3) / 3 + 1 / 2) / 3)
    assert got["hit_rate@3"] == pytest.approx(2 / 3)
    assert got["coverage@3"] == pytest.approx(5 / 10)


def test_evaluate_selected_metrics_without_catalog(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    got = evaluate(truth, pred, metrics=["map_all_relevant", "hit_rate"], k=2)
    assert got == pytest.approx({"map_all_relevant@2": (1 / 3 + 1 / 2) / 3, "hit_rate@2": 2 / 3})
    assert "coverage@10" not in evaluate(truth, pred)


def test_metrics_table() -> None:
    table = metrics_table({"als": {"ndcg@10": 0.5, "precision@10": 0.25}, "pop": {"ndcg@10": 1 / 3}})
    assert table == (
        "| model | ndcg@10 | precision@10 |\n|---|---:|---:|\n| als | 0.5000 | 0.2500 |\n| pop | 0.3333 | n/a |"
    )


# ---- input checks (one decorator, named errors) ---------------------------------------------------
def test_missing_column(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    with pytest.raises(MissingColumnsError, match=r"rating_pred is missing column\(s\) \['score'\]"):
        precision_at_k(truth, pred.drop(columns=[COL_SCORE]))
    with pytest.raises(MissingColumnsError, match="rating_true"):
        recall_at_k(truth.rename(columns={COL_ITEM: "sku"}), pred)


def test_duplicate_predictions(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    doubled = pd.concat([pred, pred.iloc[[0]]])
    with pytest.raises(DuplicatePredictionError, match=r"1 duplicate .*\[1, 3\]"):
        ndcg_at_k(truth, doubled)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "10"])
def test_invalid_k(truth: pd.DataFrame, pred: pd.DataFrame, k: object) -> None:
    with pytest.raises(InvalidKError, match="k must be an integer >= 1"):
        map_at_k(truth, pred, k=k)  # type: ignore[arg-type]


def test_empty_truth(pred: pd.DataFrame) -> None:
    with pytest.raises(EmptyTruthError):
        hit_rate_at_k(pd.DataFrame({COL_USER: [], COL_ITEM: []}), pred)


def test_other_input_errors(truth: pd.DataFrame, pred: pd.DataFrame) -> None:
    with pytest.raises(UnknownMetricError, match="auc"):
        evaluate(truth, pred, metrics=["ndcg", "auc"])
    with pytest.raises(EvaluationInputError, match="needs catalog"):
        evaluate(truth, pred, metrics=["coverage"])
    with pytest.raises(EvaluationInputError, match="null"):
        precision_at_k(truth, pred.assign(**{COL_SCORE: [np.nan] + [1.0] * 6}))
    with pytest.raises(EvaluationInputError, match="ids would never match"):
        precision_at_k(truth, pred.assign(**{COL_ITEM: pred[COL_ITEM].astype(str)}))
    with pytest.raises(EvaluationInputError, match="normalization"):
        map_at_k(truth, pred, normalization="everything")  # type: ignore[arg-type]
    with pytest.raises(EvaluationInputError, match="catalog is empty"):
        catalog_coverage(truth, pred, catalog=[])
    assert issubclass(MissingColumnsError, EvaluationInputError)
    assert issubclass(EvaluationInputError, ValueError)


# ---- cross-check against a naive per-user reference written here ----------------------------------
def _reference(truth: dict[int, set[int]], ranked: dict[int, list[int]], k: int) -> dict[str, float]:
    """Textbook per-user loops, independent of the vectorised implementation."""
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "hit_rate": 0.0}
    for user, relevant in truth.items():
        top = ranked.get(user, [])[:k]
        hits = [item in relevant for item in top]
        n_hit = sum(hits)
        sums["precision"] += n_hit / k
        sums["recall"] += n_hit / len(relevant)
        dcg = sum(1 / math.log2(r + 2) for r, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        sums["ndcg"] += dcg / idcg
        running, ap = 0, 0.0
        for r, hit in enumerate(hits, start=1):
            if hit:
                running += 1
                ap += running / r
        sums["map"] += ap / min(len(relevant), k)
        sums["hit_rate"] += n_hit > 0
    return {name: total / len(truth) for name, total in sums.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_data(seed: int) -> None:
    rnd = random.Random(seed)
    items = list(range(50))
    truth = {u: set(rnd.sample(items, rnd.randint(1, 15))) for u in range(40)}
    # distinct random scores per user, some users get no recommendations
    ranked = {u: rnd.sample(items, rnd.randint(0, 20)) for u in range(45) if rnd.random() > 0.1}
    truth_df = pd.DataFrame([(u, i) for u, rel in truth.items() for i in rel], columns=[COL_USER, COL_ITEM])
    pred_df = pd.DataFrame(
        [(u, i, 100.0 - r) for u, lst in ranked.items() for r, i in enumerate(lst)],
        columns=[COL_USER, COL_ITEM, COL_SCORE],
    ).sample(frac=1.0, random_state=seed)  # shuffled rows: ranking is by score
    expected = _reference(truth, ranked, k=10)
    got = evaluate(truth_df, pred_df, k=10)
    assert got == pytest.approx({f"{name}@10": value for name, value in expected.items()})
