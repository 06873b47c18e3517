"""Blessings and the gate in front of every promotion (TFX Evaluator + InfraValidator + Pusher).

A *blessing* is a create-only record in the version's own prefix,
``versions/<version>/blessings/<kind>-<wall clock>-<nonce>.json``, holding the verdict, its reasons,
the digest it judged and the details (metrics on the shared hold-out, the champion compared with,
the canary's numbers). Two kinds:

- ``model``: the promotion policy's decision for this version in one training run (``recflow.promotion.compare``);
- ``canary``: a fresh process loaded the version from S3 and reproduced its recorded top-K
  (:mod:`recflow.evaluation.canary`).

:func:`promote_blessed` is the only way the pipeline, the CLI and a rollback change the champion: it
refuses a version whose newest model blessing did not pass or names another digest, whose manifest
lacks metrics, or whose canary (run again, now) fails; then it promotes with compare-and-swap.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recflow.registry.records import RegistryError, compact, dumps, iso, loads

if TYPE_CHECKING:
    from recflow.registry.core import ModelRegistry
    from recflow.registry.records import ModelVersion, PromotionRecord

BLESSING_SCHEMA_VERSION = 1
KINDS = ("model", "canary")


class NotBlessed(RegistryError):
    """The version has no passing blessing for its digest (or its canary failed): promotion refused."""


@dataclass(frozen=True)
class Blessing:
    kind: str
    version: str
    digest: str
    passed: bool
    reasons: tuple[str, ...]
    details: Mapping[str, Any]
    blessed_at: datetime
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": BLESSING_SCHEMA_VERSION,
            "kind": self.kind,
            "version": self.version,
            "digest": self.digest,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "details": dict(self.details),
            "blessed_at": iso(self.blessed_at),
            "key": self.key,
        }

    @classmethod
    def from_bytes(cls, body: bytes, where: str) -> Blessing:
        doc = loads(body, where)
        try:
            return cls(
                kind=str(doc["kind"]),
                version=str(doc["version"]),
                digest=str(doc["digest"]),
                passed=bool(doc["passed"]),
                reasons=tuple(str(r) for r in doc["reasons"]),
                details=dict(doc["details"]),
                blessed_at=datetime.fromisoformat(doc["blessed_at"]),
                key=str(doc["key"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: malformed blessing ({exc!r})") from exc


def bless(
    registry: ModelRegistry,
    model: ModelVersion,
    *,
    kind: str,
    passed: bool,
    reasons: list[str] | tuple[str, ...],
    details: Mapping[str, Any],
) -> Blessing:
    """Write a new blessing for ``model`` (create-only; earlier ones stay as history)."""
    if kind not in KINDS:
        raise ValueError(f"blessing kind must be one of {KINDS}, got {kind!r}")
    now = datetime.now(UTC)
    key = registry.version_key(model.version, "blessings", f"{kind}-{compact(now)}-{uuid.uuid4().hex[:8]}.json")
    blessing = Blessing(kind, model.version, model.digest, passed, tuple(reasons), dict(details), now, key)
    if not registry.store.create(key, dumps(blessing.to_dict()), content_type="application/json"):
        raise RegistryError(f"{registry.store.uri(key)} already exists; blessings are never overwritten")
    return blessing


def blessings(registry: ModelRegistry, version: str, kind: str | None = None) -> list[Blessing]:
    """Every blessing of ``version`` (of ``kind``), oldest first."""
    found = []
    for key in registry.store.keys(registry.version_key(version, "blessings") + "/"):
        body = registry.store.get(key)
        if body is not None:
            b = Blessing.from_bytes(body, registry.store.uri(key))
            if kind is None or b.kind == kind:
                found.append(b)
    return sorted(found, key=lambda b: (b.blessed_at, b.key))


def require_model_blessing(registry: ModelRegistry, model: ModelVersion) -> Blessing:
    """The newest model blessing, if it passed and names this digest; else :class:`NotBlessed` saying why."""
    if not model.metrics:
        raise NotBlessed(f"{model.version}: its manifest has no metrics; it was never evaluated and cannot serve")
    found = blessings(registry, model.version, "model")
    if not found:
        raise NotBlessed(f"{model.version} has no model blessing: no evaluation run judged it")
    newest = found[-1]
    if newest.digest != model.digest:
        raise NotBlessed(
            f"{model.version}: its newest blessing judged digest {newest.digest[:16]}..., the manifest is now "
            f"{model.digest[:16]}...; refusing bits nobody evaluated"
        )
    if not newest.passed:
        raise NotBlessed(f"{model.version} was not blessed: {'; '.join(newest.reasons[:3])}")
    return newest


def run_canary(registry: ModelRegistry, model: ModelVersion) -> Blessing:
    """Run the canary in a fresh process and record its verdict as a ``canary`` blessing."""
    from recflow.evaluation.canary import run_in_fresh_process

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
    from recflow.registry.records import ChampionMoved

    model = registry.get(version)
    require_model_blessing(registry, model)
    tip = registry.champion_record()
    if (None if tip is None else tip.version) != expected_champion and not (
        tip is not None and decision_id is not None and tip.decision_id == decision_id
    ):  # fail fast, before the canary; promote() checks again, atomically
        raise ChampionMoved(
            f"champion moved: {version!r} was to replace {expected_champion!r}, but the registry serves "
            f"{None if tip is None else tip.version!r}; decide again"
        )
    canary = run_canary(registry, model)
    if not canary.passed:
        raise NotBlessed(f"{version}: canary failed, promotion refused: {'; '.join(canary.reasons[:3])}")
    return registry.promote(
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
