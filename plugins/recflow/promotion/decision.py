"""The promotion decision: which candidate, if any, beats the thresholds, the baseline and the champion.

Pure: metrics in, a :class:`recflow.promotion.records.Decision` out. The policy's shape and loading live in
:mod:`recflow.promotion.policy`; the compare step (:mod:`recflow.promotion.compare`) feeds it the hold-out
metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from recflow.promotion.policy import (
    ChangeThreshold,
    FamilyRules,
    PromotionPolicy,
    finite_or_none,
    fmt_num,
)
from recflow.promotion.records import CandidateVerdict, Decision


def decide(
    candidates: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
    *,
    families: Mapping[str, str] | None = None,
    stale: Mapping[str, str] | None = None,
) -> Decision:
    """Pick the champion-to-be among ``candidates`` (name to metrics on the shared hold-out), or none.

    ``champion`` holds the current champion's metrics re-scored on the SAME hold-out (``None`` on a
    cold start). ``families`` maps a candidate name to its family for the per-family rules (default:
    the name). ``stale`` maps names to a sentence saying why their training window is older than the
    champion's: those are rejected.
    """
    pm = policy.primary_metric
    stale = stale or {}
    base_metrics = candidates.get(policy.baseline, {}) if policy.baseline else {}
    verdicts: list[CandidateVerdict] = []
    for name in sorted(candidates):
        metrics = candidates[name]
        if name == policy.baseline:
            shown = fmt_num(metrics.get(pm))
            verdicts.append(
                CandidateVerdict(name, False, (f"baseline: the yardstick, never promoted ({pm} = {shown})",))
            )
            continue
        rules = policy.rules((families or {}).get(name, name))
        passed, failed = _check(metrics, champion, base_metrics, rules, pm)
        _slices(metrics, champion, policy, passed, failed)
        if name in stale:
            failed.append(f"window: {stale[name]}")
        reasons = tuple([f"FAIL {r}" for r in failed] + [f"ok {r}" for r in passed])
        verdicts.append(CandidateVerdict(name, not failed, reasons, tuple(failed)))

    eligible = [v.name for v in verdicts if v.eligible]
    ranked = sorted(eligible, key=lambda n: _rank_key(n, candidates[n], policy))
    winner = ranked[0] if ranked else None
    final: list[CandidateVerdict] = []
    for v in verdicts:
        if v.eligible and winner is not None:
            note = (
                f"winner: best {pm} = {fmt_num(candidates[v.name][pm])} among {len(eligible)} eligible"
                if v.name == winner
                else _lost_to(v.name, winner, candidates, policy)
            )
            v = CandidateVerdict(v.name, v.eligible, (note, *v.reasons), v.failures)
        final.append(v)
    return Decision(winner=winner, primary_metric=pm, verdicts=tuple(final), cold_start=champion is None)


def _check(
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float],
    rules: FamilyRules,
    pm: str,
) -> tuple[list[str], list[str]]:
    """(passed, failed) rule sentences for one candidate; every rule is checked, none short-circuits."""
    passed: list[str] = []
    failed: list[str] = []

    def record(ok: bool, text: str) -> None:
        (passed if ok else failed).append(text)

    if finite_or_none(metrics.get(pm)) is None:
        failed.append(f"{pm} is missing or not a finite number ({metrics.get(pm)!r})")
    for metric, threshold in sorted(rules.value_thresholds.items()):
        got = finite_or_none(metrics.get(metric))
        if got is None:
            failed.append(f"value: {metric} is missing or not a finite number ({metrics.get(metric)!r})")
        else:
            record(*threshold.check(metric, got))
    _against(metrics, baseline, rules.baseline_thresholds, "baseline", record, failed)
    if champion is None:
        passed.append("champion: none yet (cold start): only value thresholds and the baseline apply")
        return passed, failed
    _against(metrics, champion, rules.change_thresholds, "champion", record, failed)
    for metric, guard in sorted(rules.guardrails.items()):
        got, ref = finite_or_none(metrics.get(metric)), finite_or_none(champion.get(metric))
        if got is None or ref is None:
            failed.append(f"guardrail: {metric} missing for the candidate or the champion, so it cannot pass")
        else:
            record(*guard.check(metric, got, ref))
    return passed, failed


def _slices(
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
    passed: list[str],
    failed: list[str],
) -> None:
    """The per-slice rules (``slice_thresholds``) on every slice the candidate was measured on."""
    for metric, rule in sorted(policy.slice_thresholds.items()):
        for key in slice_keys(metrics, metric):
            got = finite_or_none(metrics.get(f"{metric}[{key}]"))
            size = finite_or_none(metrics.get(f"size[{key}]")) or 0.0
            ref = None if champion is None else finite_or_none(champion.get(f"{metric}[{key}]"))
            if got is None:
                failed.append(f"slice {key}: {metric} is not a finite number")
                continue
            for ok, text in rule.check(metric, key, got, size, ref):
                (passed if ok else failed).append(text)


def slice_keys(metrics: Mapping[str, float], metric: str) -> list[str]:
    """The slice keys (``"<slice>=<bucket>"``) for which ``metrics`` holds ``metric``."""
    prefix = f"{metric}["
    return sorted(name[len(prefix) : -1] for name in metrics if name.startswith(prefix) and name.endswith("]"))


def _against(
    metrics: Mapping[str, float],
    reference: Mapping[str, float],
    thresholds: Mapping[str, ChangeThreshold],
    who: str,
    record: Any,
    failed: list[str],
) -> None:
    for metric, threshold in sorted(thresholds.items()):
        got, ref = finite_or_none(metrics.get(metric)), finite_or_none(reference.get(metric))
        if got is None or ref is None:
            failed.append(f"{who}: {metric} missing for the candidate or the {who}, so the rule cannot pass")
        else:
            record(*threshold.check(who, metric, got, ref))


def _rank_key(name: str, metrics: Mapping[str, float], policy: PromotionPolicy) -> tuple[Any, ...]:
    """Sort key: best primary first, then each tie-breaker (missing sorts last), then the name."""
    values = [finite_or_none(metrics.get(m)) for m in (policy.primary_metric, *policy.tie_breakers)]
    return (*(-v if v is not None else math.inf for v in values), name)


def _lost_to(name: str, winner: str, candidates: Mapping[str, Mapping[str, float]], policy: PromotionPolicy) -> str:
    """Why an eligible candidate is not the winner: the first metric in ranking order that differs."""
    for metric in (policy.primary_metric, *policy.tie_breakers):
        mine, theirs = finite_or_none(candidates[name].get(metric)), finite_or_none(candidates[winner].get(metric))
        if mine != theirs:
            tied = "" if metric == policy.primary_metric else f"tied on {policy.primary_metric}, "
            return f"eligible, not chosen: {tied}{metric} {fmt_num(mine)} < {fmt_num(theirs)} of {winner!r}"
    return f"eligible, not chosen: tied with {winner!r} on every ranking metric, name order decides"
