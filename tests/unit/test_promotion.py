"""The promotion decision table: thresholds, baseline margin, champion, age waiver, ties, bad policy.

Expected outcomes are written by hand from the policy's numbers, never computed with the code under test.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from recflow.promotion import (
    KNOWN_METRIC_NAMES,
    Decision,
    Margin,
    PolicyError,
    PromotionPolicy,
    decide,
    load_policy,
    metric_names,
)

RAW: dict[str, Any] = {
    "schema_version": 1,
    "primary_metric": "ndcg@10",
    "thresholds": {"ndcg@10": 0.05, "precision@10": 0.01},
    "baseline": "popularity",
    "baseline_margin": {"kind": "relative", "value": 0.10},
    "champion": {"min_improvement": {"kind": "absolute", "value": 0.01}, "max_age_days": 30},
    "tie_breakers": ["map@10"],
}
POP = {"ndcg@10": 0.10, "precision@10": 0.05, "map@10": 0.04}


def policy(**overrides: Any) -> PromotionPolicy:
    raw = copy.deepcopy(RAW)
    raw.update(overrides)
    return PromotionPolicy.from_dict(raw, source="test.yaml")


def m(ndcg: float, precision: float = 0.05, map_: float = 0.05) -> dict[str, float]:
    return {"ndcg@10": ndcg, "precision@10": precision, "map@10": map_}


def verdict(d: Decision, name: str) -> Any:
    return next(v for v in d.verdicts if v.name == name)


# --------------------------------------------------------------------- the shipped policy
def test_shipped_policy_loads() -> None:
    p = load_policy(Path(__file__).parents[2] / "models" / "promotion.yaml")
    assert p.primary_metric == "ndcg@10"
    assert p.thresholds["ndcg@10"] == 0.05
    assert p.baseline == "popularity"
    assert metric_names(p)[0] == "map@10"


def test_known_metric_names_match_evaluation() -> None:
    """Kept as a literal so promotion does not import pandas; this pins it to the evaluation table."""
    evaluation = pytest.importorskip("recflow.evaluation")
    assert set(evaluation.METRICS) == KNOWN_METRIC_NAMES


# --------------------------------------------------------------------- thresholds
@pytest.mark.parametrize(
    ("metrics", "eligible", "fragment"),
    [
        (m(0.20), True, "ok threshold: ndcg@10 = 0.2 >= minimum 0.05"),
        (
            m(0.05 - 1e-6, precision=0.5),
            False,
            "FAIL threshold: ndcg@10 = 0.049999 is below the minimum 0.05",
        ),
        (
            m(0.20, precision=0.009),
            False,
            "FAIL threshold: precision@10 = 0.009 is below the minimum 0.01",
        ),
        ({"ndcg@10": 0.2}, False, "FAIL threshold: precision@10 is missing"),
        (m(float("nan")), False, "FAIL ndcg@10 is missing or not a finite number (nan)"),
    ],
    ids=["passes", "ndcg-below", "precision-below", "precision-missing", "ndcg-nan"],
)
def test_thresholds(metrics: dict[str, float], eligible: bool, fragment: str) -> None:
    d = decide({"als": metrics, "popularity": POP}, None, policy(baseline_margin={"kind": "absolute", "value": 0}))
    v = verdict(d, "als")
    assert v.eligible is eligible
    assert any(r.startswith(fragment) for r in v.reasons), v.reasons
    assert d.winner == ("als" if eligible else None)


def test_threshold_is_inclusive() -> None:
    d = decide({"als": m(0.2, precision=0.01)}, None, policy(baseline=None))
    assert d.winner == "als"


# --------------------------------------------------------------------- baseline margin
@pytest.mark.parametrize(
    ("ndcg", "kind", "value", "wins"),
    [
        (0.111, "relative", 0.10, True),  # needs >= 0.10 * 1.10 = 0.11
        (0.110, "relative", 0.10, True),  # exactly on the margin (float rounding tolerated)
        (0.109, "relative", 0.10, False),
        (0.121, "absolute", 0.02, True),  # needs >= 0.10 + 0.02 = 0.12
        (0.119, "absolute", 0.02, False),
        (0.100, "absolute", 0.0, False),  # a tie never beats, even with zero margin
    ],
)
def test_baseline_margin(ndcg: float, kind: str, value: float, wins: bool) -> None:
    p = policy(baseline_margin={"kind": kind, "value": value})
    d = decide({"als": m(ndcg), "popularity": POP}, None, p)
    assert d.winner == ("als" if wins else None)
    if not wins:
        (failure,) = verdict(d, "als").failures
        assert failure.startswith(f"baseline: ndcg@10 = {ndcg:g} vs baseline 'popularity' 0.1: gain ")


def test_baseline_is_never_promoted_even_when_best() -> None:
    d = decide({"popularity": m(0.9)}, None, policy(baseline_margin={"kind": "absolute", "value": 0}))
    assert d.winner is None
    assert verdict(d, "popularity").reasons[0].startswith("baseline: the yardstick")


def test_missing_baseline_fails_closed() -> None:
    d = decide({"als": m(0.5)}, None, policy())
    assert d.winner is None
    assert "baseline 'popularity' has no finite ndcg@10" in verdict(d, "als").failures[0]


# --------------------------------------------------------------------- champion
@pytest.mark.parametrize(
    ("ndcg", "champion_ndcg", "age_days", "wins", "fragment"),
    [
        (0.30, None, None, True, "ok champion: none yet"),
        (0.311, 0.30, 1, True, "ok champion: ndcg@10 = 0.311 vs champion 0.3: gain +0.011 absolute"),
        (
            0.305,
            0.30,
            1,
            False,
            "FAIL champion: ndcg@10 = 0.305 vs champion 0.3: gain +0.005 absolute, needs +0.01",
        ),
        (0.305, 0.30, None, False, "FAIL champion:"),  # unknown age: no waiver
        (0.250, 0.30, 31, True, "ok champion: 31.0 days old (> 30), improvement rule waived"),
        (0.250, 0.30, 30, False, "FAIL champion:"),  # exactly 30 days is not older than 30
    ],
)
def test_champion_comparison(
    ndcg: float, champion_ndcg: float | None, age_days: int | None, wins: bool, fragment: str
) -> None:
    champion = None if champion_ndcg is None else m(champion_ndcg)
    age = None if age_days is None else timedelta(days=age_days)
    d = decide({"als": m(ndcg), "popularity": POP}, champion, policy(), champion_age=age)
    assert d.winner == ("als" if wins else None)
    assert any(r.startswith(fragment) for r in verdict(d, "als").reasons), verdict(d, "als").reasons


def test_relative_min_improvement_is_named_and_applied() -> None:
    p = policy(champion={"min_improvement": {"kind": "relative", "value": 0.05}, "max_age_days": None})
    champion = m(0.20)  # needs >= 0.21
    assert decide({"als": m(0.211), "popularity": POP}, champion, p).winner == "als"
    d = decide({"als": m(0.209), "popularity": POP}, champion, p, champion_age=timedelta(days=999))
    assert d.winner is None  # max_age_days null: never waived
    assert "gain +4.5% relative, needs +5.0% relative (>= 0.21," in verdict(d, "als").failures[0]


def test_champion_without_primary_metric_fails_closed() -> None:
    d = decide({"als": m(0.5), "popularity": POP}, {"recall@10": 0.3}, policy())
    assert d.winner is None
    assert verdict(d, "als").failures == (
        "champion: champion has no finite ndcg@10 to compare with, so the rule cannot pass",
    )


def test_every_failed_rule_is_reported() -> None:
    d = decide({"als": m(0.01, precision=0.0), "popularity": POP}, m(0.3), policy())
    assert len(verdict(d, "als").failures) == 4  # two thresholds, baseline, champion


# --------------------------------------------------------------------- ranking and ties
def test_best_primary_wins_and_loser_says_why() -> None:
    d = decide({"als": m(0.30), "ncf": m(0.25), "popularity": POP}, None, policy())
    assert d.winner == "als"
    assert d.eligible == ["als", "ncf"]
    assert verdict(d, "als").reasons[0] == "winner: best ndcg@10 = 0.3 among 2 eligible"
    assert verdict(d, "ncf").reasons[0] == "eligible, not chosen: ndcg@10 0.25 < 0.3 of 'als'"


def test_tie_broken_by_tie_breaker_metric() -> None:
    d = decide({"als": m(0.3, map_=0.10), "ncf": m(0.3, map_=0.12), "popularity": POP}, None, policy())
    assert d.winner == "ncf"
    assert verdict(d, "als").reasons[0] == "eligible, not chosen: tied on ndcg@10, map@10 0.1 < 0.12 of 'ncf'"


def test_full_tie_broken_by_name_whatever_the_input_order() -> None:
    for cands in ({"ncf": m(0.3), "als": m(0.3)}, {"als": m(0.3), "ncf": m(0.3)}):
        d = decide({**cands, "popularity": POP}, None, policy())
        assert d.winner == "als"
        assert "name order decides" in verdict(d, "ncf").reasons[0]


def test_no_candidates() -> None:
    d = decide({}, None, policy())
    assert d.winner is None and d.verdicts == ()
    assert d.summary().startswith("promote nothing")


def test_to_dict_is_plain_data() -> None:
    d = decide({"als": m(0.3), "popularity": POP}, None, policy())
    out = d.to_dict()
    assert out["winner"] == "als"
    assert out["candidates"]["popularity"]["eligible"] is False
    assert out["candidates"]["als"]["failures"] == []


def test_margin_describe() -> None:
    assert Margin("relative", 0.05).describe() == "+5.0% relative"
    assert Margin("absolute", 0.01).describe() == "+0.01 absolute"
    assert Margin("relative", 0.1).describe_gain(0.5, 0.0) == "+inf relative"


# --------------------------------------------------------------------- bad policies
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"primary_metric": "ndcg@ten"}, "test.yaml: primary_metric: unknown metric 'ndcg@ten'"),
        ({"primary_metric": "ndgc@10"}, "test.yaml: primary_metric: unknown metric 'ndgc@10'"),
        ({"thresholds": {"auc@10": 0.5}}, "test.yaml: thresholds.auc@10: unknown metric 'auc@10'"),
        (
            {"thresholds": {"ndcg@10": 1.5}},
            "test.yaml: thresholds.ndcg@10: expected a number in [0, 1], got 1.5",
        ),
        ({"thresholds": {"ndcg@10": "high"}}, "thresholds.ndcg@10: expected a number in [0, 1], got 'high'"),
        ({"tie_breakers": ["map@10", "mrr@10"]}, "test.yaml: tie_breakers[1]: unknown metric 'mrr@10'"),
        (
            {"baseline_margin": {"kind": "percent", "value": 5}},
            "baseline_margin.kind: must be 'relative' or 'absolute'",
        ),
        ({"baseline_margin": {"kind": "relative"}}, "test.yaml: baseline_margin.value: missing required key"),
        (
            {"baseline_margin": {"kind": "relative", "value": -0.1}},
            "baseline_margin.value: must be a finite number >= 0",
        ),
        (
            {"champion": {"min_improvement": {"kind": "absolute", "value": 0}, "max_age_days": 0}},
            "champion.max_age_days: must be a positive",
        ),
        (
            {"champion": {"min_improvment": {"kind": "absolute", "value": 0}}},
            "champion: unknown key(s) ['min_improvment']",
        ),
        ({"schema_version": 2}, "test.yaml: schema_version: is 2, this code reads version 1"),
        ({"extra": 1}, "test.yaml: top level: unknown key(s) ['extra']"),
    ],
)
def test_bad_policy(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy(**change)
    assert message in str(err.value)


@pytest.mark.parametrize("key", ["schema_version", "primary_metric", "thresholds", "baseline_margin", "champion"])
def test_missing_key(key: str) -> None:
    raw = copy.deepcopy(RAW)
    del raw[key]
    with pytest.raises(PolicyError, match=f"test.yaml: {key}: missing required key"):
        PromotionPolicy.from_dict(raw, source="test.yaml")


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="promotion policy file not found"):
        load_policy(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("primary_metric: [ndcg@10\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(PolicyError, match="top level: expected a mapping, got list"):
        load_policy(bad)
