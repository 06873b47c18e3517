"""Blessings: the verdicts a promotion needs, kept next to the version (TFX's model and infra blessings).

A *blessing* is a create-only record in the version's own prefix,
``versions/<version>/blessings/<kind>-<wall clock>-<nonce>.json``, holding the verdict, its reasons,
the digest it judged and the details (metrics on the shared hold-out, the champion compared with,
the canary's numbers). Two kinds:

- ``model``: the promotion policy's decision for this version in one training run (``recflow.promotion.compare``);
- ``canary``: a fresh process loaded the version from S3 and reproduced its recorded top-K
  (:mod:`recflow.evaluation.canary`).

The store keeps blessings; it never runs checks. :func:`recflow.promotion.gate.promote_blessed` is the only
way the pipeline, the CLI and a rollback change the champion: it refuses a version whose newest model
blessing did not pass or names another digest (:func:`require_model_blessing`), whose manifest lacks
metrics, or whose canary (run again, now) fails; then it swaps the champion with compare-and-swap.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from recflow.registry.records import RegistryError, compact, dumps, iso, loads

if TYPE_CHECKING:
    from recflow.registry.core import ModelRegistry
    from recflow.registry.records import ModelVersion

BLESSING_SCHEMA_VERSION = 1
KINDS = ("model", "canary")
#: ``<kind>-<compact UTC time>-<8 hex>.json``, as :func:`bless` names a blessing.
_BLESSING_NAME = re.compile(r"(model|canary)-\d{8}T\d{6}(\.\d{6})?Z-[0-9a-f]{8}\.json")


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
    """Every blessing of ``version`` (of ``kind``), oldest first.

    Only objects named as :func:`bless` names them, directly in the version's ``blessings/`` folder, whose
    document names this version and its own key: an object planted deeper (``blessings/files/...``) or
    copied from another version's folder is not a verdict about this one.
    """
    folder = registry.version_key(version, "blessings") + "/"
    found = []
    for key in registry.store.keys(folder):
        if not _BLESSING_NAME.fullmatch(key[len(folder) :]):
            continue
        body = registry.store.get(key)
        if body is not None:
            b = Blessing.from_bytes(body, registry.store.uri(key))
            if b.version == version and b.key == key and (kind is None or b.kind == kind):
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
