"""The model registry: versioned model folders and a champion pointer on S3, through boto3 only.

Layout under ``s3://<models_bucket>/<prefix>/`` (prefix ``registry`` by default)::

    versions/<version>/files/<relative path>   artifact files, uploaded first
    versions/<version>/manifest.json           the commit marker, written LAST
    audit/<promoted_at>-<version>.json         one immutable record per promotion attempt
    chain/after-<audit name>.json              create-only link: the promotion that followed that one
    chain/after-genesis.json                   ... and the first promotion ever
    champion.json                              the pointer to the current champion (a hint, see below)

Why a manifest as commit marker: S3 has no multi-object transactions, so a version is "committed" the
moment its manifest exists. A version whose upload died midway has files but no manifest; it is never
listed, never returned by :meth:`ModelRegistry.get` and never promoted. The manifest carries each file's
sha256 and size, so :meth:`ModelRegistry.download` proves it got exactly what was registered.

Why ``created_at`` and ``promoted_at`` are passed in: a re-run of a data interval must produce the same
manifest and the same audit key, which ``now()`` would break. Callers pass the data interval end.

Concurrent promoters, and what the local server (S3Proxy 4.0.0, filesystem backend) guarantees. Measured
on it (8 writers racing, 20 trials each): ``PUT`` with ``If-None-Match: *`` let exactly one writer create
the object every time; ``PUT`` with ``If-Match: <etag>`` let several writers through every time, so it
is no compare-and-swap (and it could never be across two proxy processes). No bucket versioning either.
So every decision point uses create-only objects and nothing relies on ``If-Match``:

- the audit record is created with ``If-None-Match: *``: never overwritten; the same promotion retried
  finds its own record and carries on, a different promotion with the same key is refused;
- the *chain link* ``chain/after-<current champion's audit name>.json`` is created with
  ``If-None-Match: *``. Only one promoter can become the successor of a given champion; the others get
  :class:`ConcurrentPromotion` rather than silently undoing the winner's promotion, because their
  decision was made against a champion that is no longer current. The links form one linear history;
- ``champion.json`` is then overwritten with a plain PUT. It is a hint for humans and other S3 clients
  and can lag (a promoter died after linking) or briefly regress (a delayed writer); the registry
  resolves the champion from the pointer forward along the links, so it never reports a superseded one.

The same holds on AWS S3, which also honours ``If-None-Match: *`` on PUT. The audit log keeps every
attempt, including lost races; :meth:`ModelRegistry.history` lists the promotions that took effect.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from recflow.config import S3Settings, Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MANIFEST_SCHEMA_VERSION = 1
POINTER_SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
_CHUNK = 1024 * 1024

#: Version ids become one S3 "folder" name: no slashes, nothing that needs URL quoting.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: Bound on chain walks, so a corrupted (cyclic) chain fails loudly instead of hanging.
_MAX_CHAIN = 100_000
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})

T = TypeVar("T")


class RegistryError(RuntimeError):
    """The registry could not do what was asked; the message names the S3 URI involved."""


class ModelNotFound(RegistryError):
    """No object at all exists for the version."""


class IncompleteModelVersion(RegistryError):
    """The version has files but no manifest: its upload never finished (or is being replaced)."""


class ChecksumMismatch(RegistryError):
    """A downloaded file's sha256 or size differs from the manifest."""


class ConcurrentPromotion(RegistryError):
    """The champion pointer changed between reading and writing it: another promoter won the race."""


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
    """A committed model version, as its manifest describes it."""

    version: str
    family: str
    created_at: datetime
    metrics: Mapping[str, float]
    lineage: Mapping[str, Any]
    files: tuple[FileEntry, ...]
    uri: str
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_manifest(self) -> dict[str, Any]:
        """The JSON document stored as ``manifest.json`` (no URI: it depends on where the registry lives)."""
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "family": self.family,
            "created_at": _iso(self.created_at),
            "metrics": dict(self.metrics),
            "lineage": dict(self.lineage),
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_manifest(cls, doc: Mapping[str, Any], *, uri: str) -> ModelVersion:
        """Parse a manifest; a malformed or newer one is a :class:`RegistryError`, never a KeyError."""
        try:
            schema = int(doc["schema_version"])
            if schema > MANIFEST_SCHEMA_VERSION:
                raise RegistryError(
                    f"{uri}{MANIFEST_NAME}: manifest schema_version {schema} is newer than this code "
                    f"understands ({MANIFEST_SCHEMA_VERSION}); upgrade recflow"
                )
            return cls(
                version=str(doc["version"]),
                family=str(doc["family"]),
                created_at=datetime.fromisoformat(doc["created_at"]),
                metrics={str(k): float(v) for k, v in doc["metrics"].items()},
                lineage=dict(doc["lineage"]),
                files=tuple(
                    FileEntry(path=str(f["path"]), sha256=str(f["sha256"]), size=int(f["size"])) for f in doc["files"]
                ),
                uri=uri,
                schema_version=schema,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RegistryError(f"{uri}{MANIFEST_NAME}: malformed manifest ({exc!r})") from exc


@dataclass(frozen=True)
class PromotionRecord:
    """One promotion: the audit record and, once it took effect, the champion pointer's content."""

    version: str
    family: str
    uri: str
    promoted_at: datetime
    reason: str
    actor: str
    previous: str | None
    audit_key: str
    previous_audit_key: str | None = None
    schema_version: int = POINTER_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "version": self.version,
            "family": self.family,
            "uri": self.uri,
            "promoted_at": _iso(self.promoted_at),
            "reason": self.reason,
            "actor": self.actor,
            "previous": self.previous,
            "audit_key": self.audit_key,
            "previous_audit_key": self.previous_audit_key,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, where: str) -> PromotionRecord:
        try:
            return cls(
                version=str(doc["version"]),
                family=str(doc["family"]),
                uri=str(doc["uri"]),
                promoted_at=datetime.fromisoformat(doc["promoted_at"]),
                reason=str(doc["reason"]),
                actor=str(doc.get("actor", "")),
                previous=None if doc.get("previous") is None else str(doc["previous"]),
                audit_key=str(doc["audit_key"]),
                previous_audit_key=None if doc.get("previous_audit_key") is None else str(doc["previous_audit_key"]),
                schema_version=int(doc.get("schema_version", POINTER_SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"{where}: malformed promotion record ({exc!r})") from exc

    def same_intent(self, other: PromotionRecord) -> bool:
        """Same promotion asked for twice (a task retry): ``previous`` may legitimately differ."""
        return (self.version, self.family, self.uri, self.promoted_at, self.reason, self.actor) == (
            other.version,
            other.family,
            other.uri,
            other.promoted_at,
            other.reason,
            other.actor,
        )


class ModelRegistry:
    """Model versions and the champion pointer in one bucket, under one prefix.

    The client is injected so tests can stub it and callers can share one; use :meth:`from_settings`
    for the configured local or remote S3 server.
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = "registry") -> None:
        self._s3 = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_settings(cls, settings: Settings | S3Settings, prefix: str = "registry") -> ModelRegistry:
        """Registry in ``models_bucket`` of the configured S3 server (takes ``Settings`` or its ``.s3``)."""
        from recflow.storage import s3_client

        s3 = settings.s3 if isinstance(settings, Settings) else settings
        return cls(s3_client(s3), s3.models_bucket, prefix=prefix)

    # ----------------------------------------------------------------- keys and URIs
    def _key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def _s3uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def uri(self, version: str) -> str:
        """``s3://<bucket>/<prefix>/versions/<version>/``: the folder a version lives in."""
        _check_version(version)
        return self._s3uri(self._key("versions", version)) + "/"

    def _manifest_key(self, version: str) -> str:
        return self._key("versions", version, MANIFEST_NAME)

    def _files_prefix(self, version: str) -> str:
        return self._key("versions", version, "files") + "/"

    @property
    def champion_key(self) -> str:
        return self._key("champion.json")

    # ----------------------------------------------------------------- register
    def register(
        self,
        local_dir: str | os.PathLike[str],
        *,
        version: str,
        family: str,
        metrics: Mapping[str, float],
        lineage: Mapping[str, Any],
        created_at: datetime,
    ) -> ModelVersion:
        """Upload every file under ``local_dir``, then commit the version by writing its manifest.

        Idempotent per version: registering the same version again (a re-run of the same data interval)
        replaces its files and manifest. If the manifest that would be written equals the stored one,
        nothing is written at all. Otherwise the old manifest is deleted FIRST, so while files are being
        replaced the version is incomplete (invisible) rather than described by a manifest that no longer
        matches its files; files the new run no longer has are deleted before the new manifest is written.
        Consequence: re-registering the current champion's version makes :meth:`champion` raise
        :class:`IncompleteModelVersion` for the seconds the upload takes; readers should retry.
        """
        _check_version(version)
        if not _FAMILY_RE.match(family):
            raise ValueError(f"family {family!r} must match {_FAMILY_RE.pattern}")
        root = Path(local_dir)
        if not root.is_dir():
            raise RegistryError(f"cannot register {version} to {self.uri(version)}: {root} is not a folder")
        local_files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
        if not local_files:
            raise RegistryError(f"cannot register {version} to {self.uri(version)}: {root} has no files")
        entries = tuple(
            FileEntry(path=p.relative_to(root).as_posix(), sha256=_sha256(p), size=p.stat().st_size)
            for p in local_files
        )
        mv = ModelVersion(
            version=version,
            family=family,
            created_at=_utc(created_at, "created_at"),
            metrics={str(k): float(v) for k, v in metrics.items()},
            lineage=dict(lineage),
            files=entries,
            uri=self.uri(version),
        )
        try:
            body = _dumps(mv.to_manifest())
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"manifest for {version!r} is not valid JSON (metrics must be finite, lineage JSON-serializable): {exc}"
            ) from exc
        manifest_key = self._manifest_key(version)

        existing = self._get_bytes(manifest_key)
        if existing is not None and existing == body:
            return mv  # identical re-run: the stored version is already exactly this one
        if existing is not None:
            self._call("delete", manifest_key, self._s3.delete_object)

        files_prefix = self._files_prefix(version)
        for path, entry in zip(local_files, entries, strict=True):
            key = files_prefix + entry.path
            with path.open("rb") as fh:
                self._call("upload", key, self._s3.put_object, Body=fh)
        wanted = {files_prefix + e.path for e in entries}
        for key in self._list_keys(files_prefix):
            if key not in wanted:
                self._call("delete stale", key, self._s3.delete_object)
        self._put(manifest_key, body)
        return mv

    # ----------------------------------------------------------------- read
    def get(self, version: str) -> ModelVersion:
        """The committed version; :class:`IncompleteModelVersion` if it has files but no manifest."""
        _check_version(version)
        key = self._manifest_key(version)
        got = self._get_bytes(key)
        if got is None:
            folder = self._key("versions", version) + "/"
            if self._any_key(folder):
                raise IncompleteModelVersion(
                    f"model version {version!r} at {self.uri(version)} has no {MANIFEST_NAME}: its upload "
                    "did not finish (or is being replaced); it cannot be read or promoted"
                )
            raise ModelNotFound(f"model version {version!r} not found: nothing at {self.uri(version)}")
        mv = ModelVersion.from_manifest(_loads(got, self._s3uri(key)), uri=self.uri(version))
        if mv.version != version:
            raise RegistryError(f"{self._s3uri(key)}: manifest names version {mv.version!r}, not {version!r}")
        return mv

    def list_versions(self, family: str | None = None) -> list[ModelVersion]:
        """Committed versions (those with a manifest), oldest first by (created_at, version)."""
        versions_prefix = self._key("versions") + "/"
        found: list[ModelVersion] = []
        for key in self._list_keys(versions_prefix):
            rest = key[len(versions_prefix) :]
            name, _, tail = rest.partition("/")
            if tail != MANIFEST_NAME or not _VERSION_RE.match(name):
                continue
            got = self._get_bytes(key)
            if got is None:  # deleted between list and get (a re-register in progress)
                continue
            mv = ModelVersion.from_manifest(_loads(got, self._s3uri(key)), uri=self.uri(name))
            if family is None or mv.family == family:
                found.append(mv)
        return sorted(found, key=lambda m: (m.created_at, m.version))

    def download(self, version: str, dest: str | os.PathLike[str]) -> Path:
        """Download a committed version's files into ``dest`` and verify each sha256 and size.

        ``dest`` must not exist or be an empty folder. Files land in a temporary sibling folder that is
        renamed to ``dest`` only after every checksum matched, so ``dest`` is either complete or absent.
        """
        mv = self.get(version)
        target = Path(dest)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"download of {mv.uri} refused: {target} exists and is not an empty folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for entry in mv.files:
                key = self._files_prefix(version) + entry.path
                local = staging / PurePosixPath(entry.path)
                if not local.resolve().is_relative_to(staging.resolve()):
                    raise RegistryError(f"{mv.uri}{MANIFEST_NAME}: file path {entry.path!r} escapes the folder")
                local.parent.mkdir(parents=True, exist_ok=True)
                body = self._call("download", key, self._s3.get_object)
                digest = hashlib.sha256()
                size = 0
                with local.open("wb") as out:
                    for chunk in body["Body"].iter_chunks(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if digest.hexdigest() != entry.sha256 or size != entry.size:
                    raise ChecksumMismatch(
                        f"{self._s3uri(key)}: got sha256 {digest.hexdigest()} ({size} bytes), manifest says "
                        f"{entry.sha256} ({entry.size} bytes); the file changed after registration"
                    )
            if target.exists():
                target.rmdir()
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    # ----------------------------------------------------------------- champion
    def champion(self) -> ModelVersion | None:
        """The current champion version, or ``None`` before the first promotion."""
        record = self.champion_record()
        return None if record is None else self.get(record.version)

    def champion_record(self) -> PromotionRecord | None:
        """The current champion's promotion record: the pointer, resolved forward along the chain.

        The pointer is a hint that may lag (a promoter died after linking but before rewriting it, or a
        delayed writer put back an older pointer); the chain of create-only links is the truth, so the
        registry never reports a superseded champion.
        """
        tip, _ = self._tip()
        return tip

    def history(self) -> list[PromotionRecord]:
        """Promotions that took effect, oldest first: the chain from the first promotion to the champion."""
        records: list[PromotionRecord] = []
        link = self._link_key(None)
        for _ in range(_MAX_CHAIN):
            nxt = self._read_record(link)
            if nxt is None:
                return records
            records.append(nxt)
            link = self._link_key(nxt)
        raise RegistryError(f"{self._s3uri(self._key('chain'))}/: more than {_MAX_CHAIN} links, or a cycle")

    def promote(self, version: str, *, reason: str, actor: str, promoted_at: datetime) -> PromotionRecord:
        """Make ``version`` the champion: audit record, then chain link (the commit), then the pointer.

        1. The audit record ``audit/<promoted_at>-<version>.json`` is created with ``If-None-Match: *``.
        2. The chain link ``chain/after-<champion's audit name>.json`` (``after-genesis`` for the first)
           is created with ``If-None-Match: *``. Only one promoter can create the successor of a given
           champion, so this is the compare-and-swap; losing it raises :class:`ConcurrentPromotion`
           (the decision was made against a champion that is no longer current: decide again).
        3. ``champion.json`` is overwritten (a plain PUT: it is a hint for humans and other S3 clients).

        Idempotent for a retry of the same promotion (same version, ``promoted_at``, reason, actor):
        whatever step the earlier attempt died after, the retry finishes the remaining ones, or returns
        the stored record when all were done. Refuses versions without a manifest. An error raised while
        writing ``champion.json`` comes after the link: the promotion has taken effect (:meth:`champion`
        already reports it), and a retry only refreshes the pointer.
        """
        mv = self.get(version)  # refuses incomplete and unknown versions
        when = _utc(promoted_at, "promoted_at")
        tip, pointer = self._tip()
        audit_key = self._key("audit", f"{_compact(when)}-{version}.json")
        record = PromotionRecord(
            version=version,
            family=mv.family,
            uri=mv.uri,
            promoted_at=when,
            reason=reason,
            actor=actor,
            previous=None if tip is None else tip.version,
            audit_key=audit_key,
            previous_audit_key=None if tip is None else tip.audit_key,
        )
        audit_where = self._s3uri(audit_key)
        if not self._put(audit_key, _dumps(record.to_dict()), if_none_match=True):
            stored = self._read_record(audit_key)
            if stored is None:
                raise RegistryError(f"{audit_where}: create refused but the object cannot be read")
            if not stored.same_intent(record):
                raise RegistryError(
                    f"{audit_where} already exists for a different promotion "
                    f"(reason {stored.reason!r} by {stored.actor!r}); audit records are never overwritten"
                )
            record = stored  # a retry: finish with the content decided the first time
        link_key = self._key("chain", _link_name(record.previous_audit_key))
        if not self._put(link_key, _dumps(record.to_dict()), if_none_match=True):
            linked = self._read_record(link_key)
            if linked is None or linked.audit_key != record.audit_key:
                winner = "?" if linked is None else f"{linked.version!r} ({linked.audit_key})"
                raise ConcurrentPromotion(
                    f"{self._s3uri(link_key)} already names {winner} as successor of champion "
                    f"{record.previous!r}: another promoter won while {version!r} was being promoted. "
                    f"Audit record {audit_where} stays as a record of the attempt; decide again"
                )
            tip, pointer = self._tip()  # our own retry: the link is ours; is it still the newest?
            if tip is None or tip.audit_key != record.audit_key:
                return record  # already superseded by a later promotion: leave its pointer alone
        if pointer is None or pointer.audit_key != record.audit_key:
            self._put(self.champion_key, _dumps(record.to_dict()))
        return record

    def audit_log(self) -> list[dict[str, Any]]:
        """Every audit record, oldest first (keys start with the compact UTC ``promoted_at``)."""
        records: list[dict[str, Any]] = []
        for key in sorted(self._list_keys(self._key("audit") + "/")):
            got = self._get_bytes(key)
            if got is not None:
                records.append(_loads(got, self._s3uri(key)))
        return records

    # ----------------------------------------------------------------- S3 helpers
    def _call(self, what: str, key: str, fn: Callable[..., T], **kwargs: Any) -> T:
        """Run one S3 call on ``key``; turn botocore errors into :class:`RegistryError` naming the URI."""
        try:
            return fn(Bucket=self.bucket, Key=key, **kwargs)
        except ClientError as exc:
            raise self._error(what, key, exc) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"{what} {self._s3uri(key)} failed: {exc}") from exc

    def _error(self, what: str, key: str, exc: ClientError) -> RegistryError:
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        hint = ""
        if code == "NoSuchBucket":
            hint = f" (bucket {self.bucket!r} does not exist: is the S3 server up with its buckets created?)"
        elif code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            hint = " (check the S3 credentials in the environment)"
        return RegistryError(f"{what} {self._s3uri(key)} failed: {code}: {err.get('Message', '')}{hint}")

    def _get_bytes(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when the key does not exist."""
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise self._error("read", key, exc) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"read {self._s3uri(key)} failed: {exc}") from exc

    def _put(self, key: str, body: bytes, *, if_none_match: bool = False) -> bool:
        """PUT a small JSON object; with ``if_none_match``, ``False`` means it already existed (nothing written)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": body}
        kwargs["ContentType"] = "application/json"
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            self._s3.put_object(**kwargs)
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if if_none_match and code in _PRECONDITION_CODES:
                return False
            raise self._error("write", key, exc) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"write {self._s3uri(key)} failed: {exc}") from exc

    def _read_record(self, key: str) -> PromotionRecord | None:
        got = self._get_bytes(key)
        if got is None:
            return None
        where = self._s3uri(key)
        return PromotionRecord.from_dict(_loads(got, where), where=where)

    def _link_key(self, record: PromotionRecord | None) -> str:
        return self._key("chain", _link_name(None if record is None else record.audit_key))

    def _tip(self) -> tuple[PromotionRecord | None, PromotionRecord | None]:
        """(the champion's record, the pointer as stored): start at the pointer, follow links forward."""
        pointer = self._read_record(self.champion_key)
        tip = pointer
        for _ in range(_MAX_CHAIN):
            nxt = self._read_record(self._link_key(tip))
            if nxt is None:
                return tip, pointer
            tip = nxt
        raise RegistryError(f"{self._s3uri(self._key('chain'))}/: more than {_MAX_CHAIN} links, or a cycle")

    def _list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"]
        except ClientError as exc:
            raise self._error("list", prefix, exc) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"list {self._s3uri(prefix)} failed: {exc}") from exc

    def _any_key(self, prefix: str) -> bool:
        """Whether anything exists under ``prefix`` (one cheap LIST of at most one key)."""
        try:
            resp = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except ClientError as exc:
            raise self._error("list", prefix, exc) from exc
        except BotoCoreError as exc:
            raise RegistryError(f"list {self._s3uri(prefix)} failed: {exc}") from exc
        return bool(resp.get("Contents"))


# --------------------------------------------------------------------- module helpers
def _check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ValueError(f"version {version!r} must match {_VERSION_RE.pattern} (e.g. 'als-20261124')")


def _link_name(previous_audit_key: str | None) -> str:
    """The chain link that names the successor of the promotion recorded at ``previous_audit_key``."""
    return "after-" + ("genesis.json" if previous_audit_key is None else previous_audit_key.rsplit("/", 1)[-1])


def _utc(value: datetime, name: str) -> datetime:
    """Time-zone-aware UTC; a naive datetime is refused because its meaning depends on the machine."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a time-zone-aware datetime (the data interval end), got {value!r}")
    return value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _compact(value: datetime) -> str:
    """ISO 8601 basic format in UTC (``20261124T000000.000000Z``): sorts by time, no ``:`` or ``+``."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _dumps(doc: Mapping[str, Any]) -> bytes:
    """Canonical JSON (sorted keys), so equal documents are equal bytes and re-runs compare cheaply."""
    return (json.dumps(doc, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()


def _loads(body: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise RegistryError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc
