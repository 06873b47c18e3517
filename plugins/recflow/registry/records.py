"""What the registry stores, as frozen dataclasses with their JSON forms, and the registry's errors.

Every document is written as canonical JSON (sorted keys), so equal documents are equal bytes: a
manifest's sha256 (its *digest*) then names exactly one content, and a promotion record can pin it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_SCHEMA_VERSION = 2
RECORD_SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
_CHUNK = 1024 * 1024


class RegistryError(RuntimeError):
    """The registry could not do what was asked; the message names the S3 URI involved."""


class ModelNotFound(RegistryError):
    """No object at all exists for the version."""


class IncompleteModelVersion(RegistryError):
    """The version has files but no manifest: its upload never finished."""


class ChecksumMismatch(RegistryError):
    """A manifest or file differs from the digest it was registered or promoted with."""


class NoChampion(RegistryError):
    """Nothing serves: no promotion yet, or none before the asked-for time."""


class ChampionMoved(RegistryError):
    """The champion is no longer the one a promotion was decided against (compare-and-swap lost)."""


class ChampionPointerMismatch(RegistryError):
    """``champion.json`` is not the chain link it claims to be: someone rewrote it; nothing is served."""


class RegistryUnavailable(RegistryError):
    """The S3 server did not answer after every retry; nothing was decided."""


@dataclass(frozen=True)
class FileEntry:
    """One artifact file: path relative to the version folder (POSIX), sha256 hex digest, size in bytes."""

    path: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ModelVersion:
    """A committed model version, as its manifest describes it.

    ``created_at`` is the end of the training data interval (a key, deterministic); ``registered_at``
    the wall-clock time of the upload (data, for people and for picking a run's latest attempt).
    ``digest`` is the sha256 of the stored manifest bytes ("" before it was stored).
    """

    version: str
    family: str
    created_at: datetime
    metrics: Mapping[str, float]
    lineage: Mapping[str, Any]
    files: tuple[FileEntry, ...]
    uri: str
    content_digest: str
    registered_at: datetime
    digest: str = ""
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_manifest(self) -> dict[str, Any]:
        """The JSON document stored as ``manifest.json`` (no URI: it depends on where the registry lives)."""
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "family": self.family,
            "created_at": iso(self.created_at),
            "registered_at": iso(self.registered_at),
            "content_digest": self.content_digest,
            "metrics": dict(self.metrics),
            "lineage": dict(self.lineage),
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_manifest(cls, body: bytes, *, uri: str) -> ModelVersion:
        """Parse stored manifest bytes; a malformed or other-schema one is a :class:`RegistryError`."""
        where = f"{uri}{MANIFEST_NAME}"
        doc = loads(body, where)
        try:
            schema = int(doc["schema_version"])
            if schema != MANIFEST_SCHEMA_VERSION:
                raise RegistryError(
                    f"{where}: manifest schema_version {schema}, this code reads {MANIFEST_SCHEMA_VERSION} "
                    "(versions written before immutable ids cannot be served; train again)"
                )
            return cls(
                version=str(doc["version"]),
                family=str(doc["family"]),
                created_at=datetime.fromisoformat(doc["created_at"]),
                registered_at=datetime.fromisoformat(doc["registered_at"]),
                content_digest=str(doc["content_digest"]),
                metrics={str(k): float(v) for k, v in doc["metrics"].items()},
                lineage=dict(doc["lineage"]),
                files=tuple(
                    FileEntry(path=str(f["path"]), sha256=str(f["sha256"]), size=int(f["size"])) for f in doc["files"]
                ),
                uri=uri,
                digest=sha256_bytes(body),
                schema_version=schema,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{where}: malformed manifest ({exc!r})") from exc


def content_digest(family: str, created_at: datetime, metrics: Mapping[str, float], lineage: Mapping[str, Any],
                   files: tuple[FileEntry, ...]) -> str:  # fmt: skip
    """sha256 over everything that defines a version except the upload time: its id is derived from it."""
    doc = {
        "family": family,
        "created_at": iso(created_at),
        "metrics": dict(metrics),
        "lineage": dict(lineage),
        "files": [f.to_dict() for f in files],
    }
    return sha256_bytes(dumps(doc))


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion: the audit record of an attempt and, once it took effect, a link in the chain.

    ``promoted_at`` is the wall-clock time of the promotion (what ``champion_at`` answers from);
    ``interval_end`` the data interval of the run that asked for it (``None`` for a person at the
    command line). ``digest`` is the promoted manifest's sha256: every load verifies it.
    ``decision_id`` names the decision this promotion carries out (the blessing, or a CLI call), so a
    retry of the same promotion is recognised after a crash.
    """

    version: str
    family: str
    uri: str
    digest: str
    promoted_at: datetime
    interval_end: datetime | None
    reason: str
    actor: str
    kind: str
    previous: str | None
    previous_digest: str | None
    audit_key: str
    previous_audit_key: str | None
    decision_id: str
    schema_version: int = RECORD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "family": self.family,
            "uri": self.uri,
            "digest": self.digest,
            "promoted_at": iso(self.promoted_at),
            "interval_end": None if self.interval_end is None else iso(self.interval_end),
            "reason": self.reason,
            "actor": self.actor,
            "kind": self.kind,
            "previous": self.previous,
            "previous_digest": self.previous_digest,
            "audit_key": self.audit_key,
            "previous_audit_key": self.previous_audit_key,
            "decision_id": self.decision_id,
        }

    @classmethod
    def from_bytes(cls, body: bytes, *, where: str) -> PromotionRecord:
        doc = loads(body, where)
        try:
            schema = int(doc["schema_version"])
            if schema != RECORD_SCHEMA_VERSION:
                raise RegistryError(
                    f"{where}: promotion record schema_version {schema}, expected {RECORD_SCHEMA_VERSION}"
                )
            opt = doc.get
            return cls(
                version=str(doc["version"]),
                family=str(doc["family"]),
                uri=str(doc["uri"]),
                digest=str(doc["digest"]),
                promoted_at=datetime.fromisoformat(doc["promoted_at"]),
                interval_end=None if opt("interval_end") is None else datetime.fromisoformat(doc["interval_end"]),
                reason=str(doc["reason"]),
                actor=str(doc["actor"]),
                kind=str(doc["kind"]),
                previous=None if opt("previous") is None else str(doc["previous"]),
                previous_digest=None if opt("previous_digest") is None else str(doc["previous_digest"]),
                audit_key=str(doc["audit_key"]),
                previous_audit_key=None if opt("previous_audit_key") is None else str(doc["previous_audit_key"]),
                decision_id=str(doc["decision_id"]),
                schema_version=schema,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: malformed promotion record ({exc!r})") from exc


# --------------------------------------------------------------------- helpers shared by the package
def utc(value: datetime, name: str) -> datetime:
    """Time-zone-aware UTC; a naive datetime is refused because its meaning depends on the machine."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def compact(value: datetime) -> str:
    """ISO 8601 basic format in UTC (``20261124T000000.000000Z``): sorts by time, no ``:`` or ``+``."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def dumps(doc: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys), so equal documents are equal bytes."""
    return (json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def loads(body: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc
