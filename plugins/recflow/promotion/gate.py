"""The promotion gate: promote a blessed version, or roll back, through the canary and the chain's compare-and-swap.

A version serves only when it has a passing model blessing for its digest (written by the compare step)
and passes a canary in a fresh process (:mod:`recflow.promotion.canary`), recorded as a canary blessing;
the registry then swaps the champion against the one the decision saw."""

from __future__ import annotations

from datetime import datetime

from recflow.promotion.canary import run_in_fresh_process
from recflow.registry.blessing import Blessing, NotBlessed, bless, require_model_blessing
from recflow.registry.core import ModelRegistry
from recflow.registry.records import ChampionMoved, ModelVersion, PromotionRecord


def run_canary(registry: ModelRegistry, model: ModelVersion) -> Blessing:
    """Run the canary in a fresh process and record its verdict as a ``canary`` blessing."""
    verdict = run_in_fresh_process(model.version, model.digest, prefix=registry.prefix, bucket=registry.bucket)
    details = {k: v for k, v in verdict.items() if k not in {"passed", "reasons"}}
    return bless(
        registry,
        model,
        kind="canary",
        passed=bool(verdict["passed"]),
        reasons=[str(r) for r in verdict["reasons"]],
        details=details,
    )


def promote_blessed(
    registry: ModelRegistry,
    version: str,
    *,
    expected_champion: str | None,
    reason: str,
    actor: str,
    kind: str = "promote",
    interval_end: datetime | None = None,
    decision_id: str | None = None,
) -> PromotionRecord:
    """Check the model blessing, run the canary, then compare-and-swap the champion.

    Raises :class:`NotBlessed` (no passing blessing for this digest, no metrics, or the canary failed)
    or :class:`recflow.registry.ChampionMoved`; the champion is unchanged in both cases.
    """
    model = registry.get(version)
    require_model_blessing(registry, model)
    tip = registry.champion_record()
    if (None if tip is None else tip.version) != expected_champion and not (
        tip is not None and decision_id is not None and tip.decision_id == decision_id
    ):  # fail fast, before the canary; registry.chain.swap() checks again, atomically
        raise ChampionMoved(
            f"champion moved: {version!r} was to replace {expected_champion!r}, but the registry serves "
            f"{None if tip is None else tip.version!r}; decide again"
        )
    canary = run_canary(registry, model)
    if not canary.passed:
        raise NotBlessed(f"{version}: canary failed, promotion refused: {'; '.join(canary.reasons[:3])}")
    return registry.chain.swap(
        version,
        expected_champion=expected_champion,
        reason=reason,
        actor=actor,
        kind=kind,
        interval_end=interval_end,
        decision_id=decision_id,
    )


def rollback(registry: ModelRegistry, *, reason: str, actor: str, to: str | None = None) -> PromotionRecord:
    """A new promotion of an earlier blessed version (default: the previous champion), canaried again."""
    tip = registry.champion_record()
    if tip is None:
        raise NotBlessed("nothing to roll back: there is no champion")
    target = to or tip.previous
    if target is None:
        raise NotBlessed(f"{tip.version} is the first champion ever; name a version with --to")
    if target == tip.version:
        raise NotBlessed(f"{target} is already the champion")
    if target not in {r.version for r in registry.history()}:
        raise NotBlessed(f"{target} never served as champion; rollback only returns to an earlier champion")
    return promote_blessed(registry, target, expected_champion=tip.version, reason=reason, actor=actor, kind="rollback")
