"""Per-slice promotion rules: a candidate better on average is refused when a slice drops too far.

Expected outcomes are written by hand from the policy's numbers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from recflow.promotion.decision import decide
from recflow.promotion.policy import PolicyError, PromotionPolicy, load_policy

RAW: dict[str, Any] = {
    "schema_version": 2,
    "primary_metric": "ndcg@10",
    "baseline": None,
    "default": {"change_thresholds": {"ndcg@10": {"direction": "higher_is_better", "absolute": 0.01}}},
    "slice_thresholds": {"recall@10": {"lower_bound": 0.05, "max_drop": 0.05, "min_size": 20}},
}
CHAMPION = {
    "ndcg@10": 0.20,
    "recall@10[item_popularity=tail]": 0.30,
    "size[item_popularity=tail]": 50.0,
    "recall@10[user_activity=light]": 0.30,
    "size[user_activity=light]": 5.0,
}


def _policy(**slice_rule: Any) -> PromotionPolicy:
    raw = copy.deepcopy(RAW)
    raw["slice_thresholds"]["recall@10"].update(slice_rule)
    return PromotionPolicy.from_dict(raw, source="test.yaml")


def _candidate(tail: float, light: float = 0.30) -> dict[str, float]:
    return {
        **CHAMPION,
        "ndcg@10": 0.25,
        "recall@10[item_popularity=tail]": tail,
        "recall@10[user_activity=light]": light,
    }


def test_a_better_average_with_a_slice_dropping_beyond_tolerance_is_refused() -> None:
    decision = decide({"als": _candidate(tail=0.24)}, CHAMPION, _policy())
    assert decision.winner is None
    (failure,) = decision.verdict("als").failures
    assert "slice item_popularity=tail" in failure and "drop 0.06 > max_drop 0.05" in failure


def test_a_drop_within_tolerance_passes() -> None:
    assert decide({"als": _candidate(tail=0.26)}, CHAMPION, _policy()).winner == "als"


def test_a_small_slice_is_reported_but_does_not_block() -> None:
    decision = decide({"als": _candidate(tail=0.30, light=0.0)}, CHAMPION, _policy())
    assert decision.winner == "als"
    assert any("user_activity=light" in r and "below min_size 20" in r for r in decision.verdict("als").reasons)


def test_the_floor_applies_on_a_cold_start_too() -> None:
    decision = decide({"als": _candidate(tail=0.04)}, None, _policy(max_drop=None))
    assert decision.winner is None
    assert any("< floor 0.05" in f for f in decision.verdict("als").failures)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"lower_bound": None, "max_drop": None}, "needs lower_bound and/or max_drop"),
        ({"max_drop": -0.1}, "max_drop: must be >= 0"),
        ({"min_size": -1}, "min_size: must be >= 0"),
        ({"tolerance": 1}, "unknown key"),
    ],
)
def test_bad_slice_rules_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        _policy(**rule)


def test_the_project_policy_has_slice_thresholds() -> None:
    rules = load_policy().slice_thresholds
    assert rules and all(r.max_drop is not None and r.min_size > 0 for r in rules.values())
