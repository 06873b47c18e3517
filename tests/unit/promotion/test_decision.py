"""The promotion decision table: value thresholds, baseline and change thresholds (direction, absolute,
relative), guardrails, cold start, per-family rules, stale windows, ties, bad policies.

Expected outcomes are written by hand from the policy's numbers, never computed with the code under test.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from recflow.promotion.decision import decide
from recflow.promotion.policy import KNOWN_METRIC_NAMES, PolicyError, PromotionPolicy, load_policy, metric_names
from recflow.promotion.records import Decision

RAW: dict[str, Any] = {
    "schema_version": 2,
    "primary_metric": "ndcg@10",
    "baseline": "popularity",
    "tie_breakers": ["map@10"],
    "default": {
        "value_thresholds": {"ndcg@10": {"lower_bound": 0.05}, "precision@10": {"lower_bound": 0.01}},
        "baseline_thresholds": {"ndcg@10": {"direction": "higher_is_better", "relative": 0.10}},
        "change_thresholds": {"ndcg@10": {"direction": "higher_is_better", "absolute": 0.01}},
        "guardrails": {"coverage@10": {"direction": "higher_is_better", "absolute": 0.05}},
    },
}
POP = {"ndcg@10": 0.10, "precision@10": 0.05, "map@10": 0.04, "coverage@10": 0.2}


def policy(**default_overrides: Any) -> PromotionPolicy:
    raw = copy.deepcopy(RAW)
    families = default_overrides.pop("families", None)
    raw["default"].update(default_overrides)
    if families is not None:
        raw["families"] = families
    return PromotionPolicy.from_dict(raw, source="test.yaml")


def m(ndcg: float, precision: float = 0.05, map_: float = 0.05, coverage: float = 0.5) -> dict[str, float]:
    return {"ndcg@10": ndcg, "precision@10": precision, "map@10": map_, "coverage@10": coverage}


def verdict(d: Decision, name: str) -> Any:
    return d.verdict(name)


def test_shipped_policy_loads() -> None:
    p = load_policy(Path(__file__).parents[3] / "models" / "promotion.yaml")
    assert p.primary_metric == "ndcg@10" and p.baseline == "popularity"
    assert p.default.value_thresholds["ndcg@10"].lower_bound == 0.05
    assert p.rules("ncf").change_thresholds["ndcg@10"].relative == 0.02
    assert p.rules("ncf").guardrails == p.default.guardrails  # inherited
    assert p.rules("als") == p.default
    assert "coverage@10" in metric_names(p)


def test_known_metric_names_match_evaluation() -> None:
    """Kept as a literal so promotion does not import pandas; this pins it to the evaluation table."""
    from recflow.evaluation import metrics  # here only: the rest of this module must not need pandas

    assert set(metrics.METRICS) == KNOWN_METRIC_NAMES


# --------------------------------------------------------------------- value thresholds (floors)
@pytest.mark.parametrize(
    ("metrics", "eligible", "fragment"),
    [
        (m(0.20), True, "ok value: ndcg@10 = 0.2 >= 0.05"),
        (m(0.05 - 1e-6, precision=0.5), False, "FAIL value: ndcg@10 = 0.049999 is below the lower_bound 0.05"),
        (m(0.20, precision=0.009), False, "FAIL value: precision@10 = 0.009 is below the lower_bound 0.01"),
        ({"ndcg@10": 0.2}, False, "FAIL value: precision@10 is missing"),
        (m(float("nan")), False, "FAIL ndcg@10 is missing or not a finite number (nan)"),
    ],
    ids=["passes", "ndcg-below", "precision-below", "precision-missing", "ndcg-nan"],
)
def test_value_thresholds(metrics: dict[str, float], eligible: bool, fragment: str) -> None:
    d = decide({"als": metrics, "popularity": POP}, None, policy(baseline_thresholds={}))
    v = verdict(d, "als")
    assert v.eligible is eligible
    assert any(r.startswith(fragment) for r in v.reasons), v.reasons


def test_value_threshold_is_inclusive_and_upper_bound_applies() -> None:
    assert decide({"als": m(0.2, precision=0.01)}, None, policy(baseline_thresholds={})).winner == "als"
    p = policy(baseline_thresholds={}, value_thresholds={"coverage@10": {"upper_bound": 0.4}})
    d = decide({"als": m(0.2, coverage=0.41)}, None, p)
    assert d.winner is None and "is above the upper_bound 0.4" in verdict(d, "als").failures[0]


# --------------------------------------------------------------------- baseline (also on a cold start)
@pytest.mark.parametrize(
    ("ndcg", "size", "wins"),
    [
        (0.111, {"relative": 0.10}, True),  # needs >= 0.10 * 1.10 = 0.11
        (0.110, {"relative": 0.10}, True),  # exactly on the margin (float rounding tolerated)
        (0.109, {"relative": 0.10}, False),
        (0.121, {"absolute": 0.02}, True),  # needs >= 0.12
        (0.119, {"absolute": 0.02}, False),
        (0.100, {"absolute": 0.0}, False),  # a tie never beats, even with zero margin
        (0.125, {"absolute": 0.02, "relative": 0.30}, False),  # both sizes must hold
    ],
)
def test_baseline_threshold(ndcg: float, size: dict[str, float], wins: bool) -> None:
    p = policy(baseline_thresholds={"ndcg@10": {"direction": "higher_is_better", **size}})
    d = decide({"als": m(ndcg), "popularity": POP}, None, p)
    assert d.winner == ("als" if wins else None)
    assert d.cold_start
    if not wins:
        (failure,) = verdict(d, "als").failures
        assert failure.startswith(f"baseline: ndcg@10 = {ndcg:g} vs 0.1 (higher is better): change ")


def test_baseline_is_never_promoted_even_when_best() -> None:
    d = decide({"popularity": m(0.9)}, None, policy())
    assert d.winner is None
    assert verdict(d, "popularity").reasons[0].startswith("baseline: the yardstick")


def test_missing_baseline_fails_closed() -> None:
    d = decide({"als": m(0.5)}, None, policy())
    assert d.winner is None
    assert "missing for the candidate or the baseline" in verdict(d, "als").failures[0]


# --------------------------------------------------------------------- champion: change thresholds, guardrails
@pytest.mark.parametrize(
    ("ndcg", "champion_ndcg", "wins", "fragment"),
    [
        (0.30, None, True, "ok champion: none yet (cold start)"),
        (0.311, 0.30, True, "ok champion: ndcg@10 = 0.311 vs 0.3 (higher is better): change +0.011 absolute"),
        (0.305, 0.30, False, "FAIL champion: ndcg@10 = 0.305 vs 0.3 (higher is better): change +0.005 absolute"),
        (0.30, 0.30, False, "FAIL champion:"),
    ],
)
def test_change_threshold_against_the_champion(
    ndcg: float, champion_ndcg: float | None, wins: bool, fragment: str
) -> None:
    champion = None if champion_ndcg is None else m(champion_ndcg)
    d = decide({"als": m(ndcg), "popularity": POP}, champion, policy())
    assert d.winner == ("als" if wins else None)
    assert any(r.startswith(fragment) for r in verdict(d, "als").reasons), verdict(d, "als").reasons


def test_lower_is_better_direction_and_relative_size() -> None:
    """A lower-is-better metric (here pretend coverage should shrink) must drop by >= 10% relative."""
    p = policy(change_thresholds={"coverage@10": {"direction": "lower_is_better", "relative": 0.10}}, guardrails={})
    champion = m(0.3, coverage=0.50)
    assert decide({"als": m(0.3, coverage=0.44), "popularity": POP}, champion, p).winner == "als"
    d = decide({"als": m(0.3, coverage=0.46), "popularity": POP}, champion, p)
    assert (
        d.winner is None and "+8.0% relative; needs strictly better, relative >= +10.0%" in d.verdict("als").failures[0]
    )


@pytest.mark.parametrize(("coverage", "holds"), [(0.46, True), (0.45, True), (0.44, False), (0.9, True)])
def test_guardrail_may_not_regress_beyond_its_tolerance(coverage: float, holds: bool) -> None:
    champion = m(0.30, coverage=0.50)  # tolerance 0.05 absolute
    d = decide({"als": m(0.40, coverage=coverage), "popularity": POP}, champion, policy())
    assert d.winner == ("als" if holds else None)
    if not holds:
        assert (
            verdict(d, "als").failures[0].startswith("guardrail: coverage@10 = 0.44 vs champion 0.5: regression 0.06")
        )


def test_cold_start_ignores_change_thresholds_and_guardrails() -> None:
    d = decide({"als": m(0.2, coverage=0.0), "popularity": POP}, None, policy())
    assert d.winner == "als" and d.cold_start
    assert not any("guardrail" in r for r in verdict(d, "als").reasons)


def test_per_family_rules_override_the_default() -> None:
    p = policy(
        families={"ncf": {"change_thresholds": {"ndcg@10": {"direction": "higher_is_better", "absolute": 0.05}}}}
    )
    champion = m(0.30)
    d = decide({"als": m(0.32), "ncf": m(0.33), "popularity": POP}, champion, p, families={"als": "als", "ncf": "ncf"})
    assert verdict(d, "ncf").eligible is False and verdict(d, "als").eligible is True
    assert d.winner == "als"


def test_a_stale_candidate_is_rejected_with_the_reason() -> None:
    d = decide({"ncf": m(0.5), "popularity": POP}, m(0.2), policy(), stale={"ncf": "trained on older data"})
    assert d.winner is None and verdict(d, "ncf").failures == ("window: trained on older data",)


def test_every_failed_rule_is_reported() -> None:
    d = decide({"als": m(0.01, precision=0.0, coverage=0.0), "popularity": POP}, m(0.3), policy())
    assert len(verdict(d, "als").failures) == 5  # two floors, baseline, champion, guardrail


# --------------------------------------------------------------------- ranking and ties
def test_best_primary_wins_and_loser_says_why() -> None:
    d = decide({"als": m(0.30), "ncf": m(0.25), "popularity": POP}, None, policy())
    assert d.winner == "als" and d.eligible == ["als", "ncf"]
    assert verdict(d, "als").reasons[0] == "winner: best ndcg@10 = 0.3 among 2 eligible"
    assert verdict(d, "ncf").reasons[0] == "eligible, not chosen: ndcg@10 0.25 < 0.3 of 'als'"


def test_tie_broken_by_tie_breaker_metric_then_name() -> None:
    d = decide({"als": m(0.3, map_=0.10), "ncf": m(0.3, map_=0.12), "popularity": POP}, None, policy())
    assert d.winner == "ncf"
    for cands in ({"ncf": m(0.3), "als": m(0.3)}, {"als": m(0.3), "ncf": m(0.3)}):
        d = decide({**cands, "popularity": POP}, None, policy())
        assert d.winner == "als" and "name order decides" in verdict(d, "ncf").reasons[0]


def test_no_candidates_and_plain_dict() -> None:
    d = decide({}, None, policy())
    assert d.winner is None and d.summary().startswith("promote nothing")
    out = decide({"als": m(0.3), "popularity": POP}, None, policy()).to_dict()
    assert out["winner"] == "als" and out["cold_start"] is True
    assert out["candidates"]["popularity"]["eligible"] is False


# --------------------------------------------------------------------- bad policies
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"primary_metric": "ndcg@ten"}, "test.yaml: primary_metric: unknown metric 'ndcg@ten'"),
        ({"tie_breakers": ["map@10", "mrr@10"]}, "test.yaml: tie_breakers[1]: unknown metric 'mrr@10'"),
        ({"schema_version": 1}, "test.yaml: schema_version: is 1, this code reads version 2"),
        ({"extra": 1}, "test.yaml: top level: unknown key(s) ['extra']"),
        ({"default": {"value_thresholds": {"auc@10": {"lower_bound": 0.5}}}}, "default.value_thresholds.auc@10"),
        ({"default": {"value_thresholds": {"ndcg@10": {}}}}, "needs lower_bound and/or upper_bound"),
        ({"default": {"value_thresholds": {"ndcg@10": {"minimum": 1}}}}, "unknown key(s) ['minimum']"),
        (
            {"default": {"change_thresholds": {"ndcg@10": {"direction": "up", "absolute": 0.1}}}},
            "direction: must be one of ['higher_is_better', 'lower_is_better']",
        ),
        ({"default": {"change_thresholds": {"ndcg@10": {"absolute": 0.1}}}}, "direction: missing required key"),
        (
            {"default": {"change_thresholds": {"ndcg@10": {"direction": "higher_is_better", "relative": -1}}}},
            "relative: must be >= 0",
        ),
        ({"default": {"guardrails": {"coverage@10": {"direction": "higher_is_better"}}}}, "needs an absolute"),
        ({"default": {"floors": {}}}, "default: unknown key(s) ['floors']"),
        ({"families": {"ncf": {"thresholds": {}}}}, "families.ncf: unknown key(s) ['thresholds']"),
    ],
)
def test_bad_policy(change: dict[str, Any], message: str) -> None:
    raw = copy.deepcopy(RAW)
    raw.update(change)
    with pytest.raises(PolicyError) as err:
        PromotionPolicy.from_dict(raw, source="test.yaml")
    assert message in str(err.value)


@pytest.mark.parametrize("key", ["schema_version", "primary_metric", "default"])
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
