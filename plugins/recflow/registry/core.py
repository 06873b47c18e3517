"""The model registry: immutable model versions, a compare-and-swap champion chain and an audit log on S3.

Layout under ``s3://<models_bucket>/<prefix>/`` (prefix ``registry`` by default)::

    versions/<version>/files/<relative path>   artifact files, create-only, uploaded first
    versions/<version>/manifest.json           the commit marker, create-only, written LAST
    versions/<version>/blessings/...           model and canary blessings (recflow.registry.blessing)
    versions/<version>/reports/...             the promotion report of the run that trained it
    audit/<promoted_at>-<version>.json         one create-only record per promotion attempt
    chain/after-<audit name>.json              create-only link: the promotion that followed that one
    chain/after-genesis.json                   ... and the first promotion ever
    champion.json                              the pointer to the current champion (a hint, see below)

**Immutable versions.** A version id is ``<family>-<interval>-<content digest>`` (:mod:`recflow.registry.versions`),
so no other bytes can ever carry the same id. Every object under ``versions/<version>/`` is written with
``If-None-Match: *``; the pipeline never rewrites or deletes one. Registering identical content again
finds the stored manifest and returns it without writing.

**Why a manifest as commit marker:** S3 has no multi-object transactions, so a version is "committed" the
moment its manifest exists. A version whose upload died midway has files but no manifest; it is never
listed or served. The manifest carries each file's sha256 and size, and its own sha256 (the version's
*digest*) is what a promotion records and every load verifies.

**Champion chain (compare-and-swap).** ``chain/after-<champion's audit name>.json`` is created with
``If-None-Match: *``; only one promoter can become the successor of a given champion. ``promote`` takes
the champion its decision was made against (``expected_champion``) and raises :class:`ChampionMoved`
when that is no longer the champion, so the chain never forks and a decision is never applied to a
champion it did not see. ``champion.json`` is overwritten afterwards with a plain PUT: it is a hint for
humans and other S3 clients that can lag; the registry resolves the champion from it forward along the
links, so it never reports a superseded one. The chain is the promotion history: each link holds the
wall-clock ``promoted_at``, the data interval, actor, reason, kind, previous champion and digest, and
:meth:`ModelRegistry.champion_at` answers "which version served at time T" from it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings
from recflow.registry.records import (
    _CHUNK,
    MANIFEST_NAME,
    ChampionMoved,
    ChecksumMismatch,
    FileEntry,
    IncompleteModelVersion,
    ModelNotFound,
    ModelVersion,
    PromotionRecord,
    RegistryError,
    compact,
    content_digest,
    dumps,
    loads,
    sha256_bytes,
    sha256_file,
    utc,
)
from recflow.registry.store import ObjectStore, RetryPolicy
from recflow.registry.versions import version_id

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

#: Version ids become one S3 "folder" name: no slashes, nothing that needs URL quoting.
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
#: Bound on chain walks, so a corrupted (cyclic) chain fails loudly instead of hanging.
_MAX_CHAIN = 100_000
_TICK = timedelta(microseconds=1)


class ModelRegistry:
    """Model versions and the champion chain in one bucket, under one prefix.

    The client is injected so tests can stub it and callers can share one; use :meth:`from_settings`
    for the configured local or remote S3 server.
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = "registry", retry: RetryPolicy | None = None):
        self.store = ObjectStore(client, bucket, retry)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_settings(
        cls, settings: Settings | S3Settings, prefix: str = "registry", retry: RetryPolicy | None = None
    ) -> ModelRegistry:
        """Registry in ``models_bucket`` of the configured S3 server (takes ``Settings`` or its ``.s3``)."""
        from recflow.config.s3 import s3_client

        s3 = settings.s3 if isinstance(settings, Settings) else settings
        return cls(s3_client(s3), s3.models_bucket, prefix=prefix, retry=retry)

    # ----------------------------------------------------------------- keys and URIs
    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def uri(self, version: str) -> str:
        """``s3://<bucket>/<prefix>/versions/<version>/``: the folder a version lives in."""
        check_version(version)
        return self.store.uri(self.key("versions", version)) + "/"

    def version_key(self, version: str, *parts: str) -> str:
        """A key inside the version's folder (``versions/<version>/<parts>``)."""
        check_version(version)
        return self.key("versions", version, *parts)

    @property
    def champion_key(self) -> str:
        return self.key("champion.json")

    # ----------------------------------------------------------------- register
    def register(
        self,
        local_dir: str | os.PathLike[str],
        *,
        family: str,
        metrics: Mapping[str, float],
        lineage: Mapping[str, Any],
        created_at: datetime,
    ) -> ModelVersion:
        """Upload every file under ``local_dir`` create-only, then commit the version with its manifest.

        The id is derived from the content (:func:`recflow.registry.versions.version_id`), so identical content
        returns the stored version without writing, and other content is always a new version.
        ``created_at`` is the end of the training data interval. A file that already exists under the
        id (an earlier attempt died after uploading it) is accepted only if its bytes hash the same.
        """
        if not _FAMILY_RE.match(family):
            raise ValueError(f"family {family!r} must match {_FAMILY_RE.pattern}")
        root = Path(local_dir)
        if not root.is_dir():
            raise RegistryError(f"cannot register a {family} model: {root} is not a folder")
        local_files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
        if not local_files:
            raise RegistryError(f"cannot register a {family} model: {root} has no files")
        entries = tuple(
            FileEntry(path=p.relative_to(root).as_posix(), sha256=sha256_file(p), size=p.stat().st_size)
            for p in local_files
        )
        created = utc(created_at, "created_at")
        clean_metrics = {str(k): float(v) for k, v in metrics.items()}
        try:
            digest = content_digest(family, created, clean_metrics, lineage, entries)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"manifest for a {family} model is not valid JSON (metrics must be finite, lineage "
                f"JSON-serializable): {exc}"
            ) from exc
        version = version_id(family, created, digest)
        stored = self._stored(version, digest)
        if stored is not None:
            return stored  # identical content registered before: nothing to write
        for path, entry in zip(local_files, entries, strict=True):
            key = self.version_key(version, "files", *PurePosixPath(entry.path).parts)
            if not self.store.create(key, _opener(path)):
                self._check_existing_file(key, entry)
        mv = ModelVersion(
            version=version,
            family=family,
            created_at=created,
            registered_at=datetime.now(UTC),
            content_digest=digest,
            metrics=clean_metrics,
            lineage=dict(lineage),
            files=entries,
            uri=self.uri(version),
        )
        body = dumps(mv.to_manifest())
        if not self.store.create(self.version_key(version, MANIFEST_NAME), body, content_type="application/json"):
            raced = self._stored(version, digest)  # a concurrent identical registration won: use its manifest
            if raced is None:
                raise RegistryError(f"{self.uri(version)}{MANIFEST_NAME}: create refused but it cannot be read")
            return raced
        return ModelVersion.from_manifest(body, uri=mv.uri)

    def _stored(self, version: str, digest: str) -> ModelVersion | None:
        """The committed version if it exists, after checking it holds the content its id promises."""
        body = self.store.get(self.version_key(version, MANIFEST_NAME))
        if body is None:
            return None
        mv = ModelVersion.from_manifest(body, uri=self.uri(version))
        if mv.content_digest != digest:
            raise ChecksumMismatch(
                f"{mv.uri}{MANIFEST_NAME} holds content {mv.content_digest[:16]}..., not {digest[:16]}... "
                "its id promises; the registry was changed outside recflow"
            )
        return mv

    def _check_existing_file(self, key: str, entry: FileEntry) -> None:
        got, size = _hash_stream(self.store.stream(key))
        if got != entry.sha256 or size != entry.size:
            raise ChecksumMismatch(
                f"{self.store.uri(key)} already exists with other bytes (sha256 {got}, {size} bytes); "
                "version files are never overwritten"
            )

    # ----------------------------------------------------------------- read
    def get(self, version: str) -> ModelVersion:
        """The committed version; :class:`IncompleteModelVersion` if it has files but no manifest."""
        body = self.store.get(self.version_key(version, MANIFEST_NAME))
        if body is None:
            if self.store.any(self.key("versions", version) + "/"):
                raise IncompleteModelVersion(
                    f"model version {version!r} at {self.uri(version)} has no {MANIFEST_NAME}: its upload "
                    "did not finish; it cannot be read or promoted"
                )
            raise ModelNotFound(f"model version {version!r} not found: nothing at {self.uri(version)}")
        mv = ModelVersion.from_manifest(body, uri=self.uri(version))
        if mv.version != version:
            raise RegistryError(f"{mv.uri}{MANIFEST_NAME}: manifest names version {mv.version!r}, not {version!r}")
        return mv

    def list_versions(self, family: str | None = None, *, prefix: str = "") -> list[ModelVersion]:
        """Committed versions (those with a manifest) whose id starts with ``prefix``, oldest first by
        (created_at, registered_at, version)."""
        root = self.key("versions") + "/"
        found: list[ModelVersion] = []
        for key in self.store.keys(root + prefix):
            name, _, tail = key[len(root) :].partition("/")
            if tail != MANIFEST_NAME or not _VERSION_RE.match(name):
                continue
            body = self.store.get(key)
            if body is None:
                continue
            mv = ModelVersion.from_manifest(body, uri=self.uri(name))
            if family is None or mv.family == family:
                found.append(mv)
        return sorted(found, key=lambda m: (m.created_at, m.registered_at, m.version))

    def fetch(self, model: ModelVersion, parent_dir: str | os.PathLike[str]) -> Path:
        """Download ``model`` into a NEW folder under ``parent_dir`` and return it; verify everything.

        The stored manifest must still hash to ``model.digest`` and every file to its manifest sha256
        and size, else :class:`ChecksumMismatch` and no folder is left behind. Why always a fresh folder:
        a swap back to an earlier version (A -> B -> A) must load A's bytes, never find a folder from
        before and skip or fail. The caller owns (and removes) the folder.
        """
        body = self.store.get(self.version_key(model.version, MANIFEST_NAME))
        if body is None:
            raise ModelNotFound(f"{model.uri}{MANIFEST_NAME} is gone; the version cannot be served")
        if sha256_bytes(body) != model.digest:
            raise ChecksumMismatch(
                f"{model.uri}{MANIFEST_NAME} has sha256 {sha256_bytes(body)}, expected {model.digest}: "
                "the manifest changed after it was resolved"
            )
        parent = Path(parent_dir)
        parent.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=f"{model.version}-", dir=parent))
        try:
            for entry in model.files:
                local = target / PurePosixPath(entry.path)
                if not local.resolve().is_relative_to(target.resolve()):
                    raise RegistryError(f"{model.uri}{MANIFEST_NAME}: file path {entry.path!r} escapes the folder")
                local.parent.mkdir(parents=True, exist_ok=True)
                key = self.version_key(model.version, "files", *PurePosixPath(entry.path).parts)
                with local.open("wb") as out:
                    got, size = _hash_stream(self.store.stream(key), out)
                if got != entry.sha256 or size != entry.size:
                    raise ChecksumMismatch(
                        f"{self.store.uri(key)}: got sha256 {got} ({size} bytes), manifest says "
                        f"{entry.sha256} ({entry.size} bytes); the file changed after registration"
                    )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target

    # ----------------------------------------------------------------- champion and history
    def champion(self) -> ModelVersion | None:
        """The current champion version, or ``None`` before the first promotion."""
        record = self.champion_record()
        return None if record is None else self.get(record.version)

    def champion_record(self) -> PromotionRecord | None:
        """The current champion's promotion record: the pointer, resolved forward along the chain."""
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
        raise RegistryError(f"{self.store.uri(self.key('chain'))}/: more than {_MAX_CHAIN} links, or a cycle")

    def champion_at(self, when: datetime) -> PromotionRecord | None:
        """The promotion that was serving at wall-clock time ``when`` (``None`` before the first one)."""
        at = utc(when, "when")
        serving = None
        for record in self.history():  # promoted_at increases along the chain (promote enforces it)
            if record.promoted_at > at:
                break
            serving = record
        return serving

    def promote(
        self,
        version: str,
        *,
        expected_champion: str | None,
        reason: str,
        actor: str,
        kind: str = "promote",
        interval_end: datetime | None = None,
        decision_id: str | None = None,
    ) -> PromotionRecord:
        """Make ``version`` the champion, if the champion is still ``expected_champion`` (None: no champion).

        1. The audit record ``audit/<promoted_at>-<version>.json`` is created (create-only).
        2. The chain link after the expected champion is created with ``If-None-Match: *``: the
           compare-and-swap. Losing it, or finding another champion already, raises :class:`ChampionMoved`.
        3. ``champion.json`` is overwritten (a hint; a failure here is logged, the promotion stands).

        ``promoted_at`` is the wall clock, kept strictly after the previous link's so the history is
        ordered in time. A retry of the same promotion (same ``decision_id``, version and expected
        champion) that finds it already done returns the stored record instead of failing.
        Checks on *what* may be promoted (blessings, canary) belong to :mod:`recflow.registry.promotion`.
        """
        if not reason.strip():
            raise ValueError("a promotion needs a reason")
        mv = self.get(version)  # refuses incomplete and unknown versions
        tip, pointer = self._tip()
        if (
            decision_id is not None
            and tip is not None
            and tip.decision_id == decision_id
            and (tip.version == version and tip.previous == expected_champion)
        ):
            self._refresh_pointer(tip, pointer)
            return tip  # this very promotion took effect before (a retry after a crash or lost answer)
        current = None if tip is None else tip.version
        if current != expected_champion:
            raise ChampionMoved(
                f"champion moved: the decision to promote {version!r} was made against champion "
                f"{expected_champion!r}, but the registry now serves {current!r}; decide again"
            )
        when = datetime.now(UTC)
        if tip is not None and when <= tip.promoted_at:
            when = tip.promoted_at + _TICK
        audit_key = self.key("audit", f"{compact(when)}-{version}.json")
        record = PromotionRecord(
            version=version,
            family=mv.family,
            uri=mv.uri,
            digest=mv.digest,
            promoted_at=when,
            interval_end=None if interval_end is None else utc(interval_end, "interval_end"),
            reason=reason,
            actor=actor,
            kind=kind,
            previous=current,
            previous_digest=None if tip is None else tip.digest,
            audit_key=audit_key,
            previous_audit_key=None if tip is None else tip.audit_key,
            decision_id=decision_id or uuid.uuid4().hex,
        )
        body = dumps(record.to_dict())
        if (
            not self.store.create(audit_key, body, content_type="application/json")
            and self.store.get(audit_key) != body
        ):
            raise RegistryError(f"{self.store.uri(audit_key)} already exists for another promotion; try again")
        link_key = self._link_key(tip)
        if not self.store.create(link_key, body, content_type="application/json"):
            linked = self._read_record(link_key)
            if linked is None or linked.audit_key != record.audit_key:
                winner = "?" if linked is None else repr(linked.version)
                raise ChampionMoved(
                    f"champion moved: {winner} became the successor of {current!r} while {version!r} was "
                    f"being promoted ({self.store.uri(link_key)}); the attempt stays in "
                    f"{self.store.uri(audit_key)}; decide again"
                )
        self._refresh_pointer(record, pointer)
        return record

    def audit_log(self) -> list[dict[str, Any]]:
        """Every promotion attempt (including lost races), oldest first."""
        out = []
        for key in self.store.keys(self.key("audit") + "/"):
            body = self.store.get(key)
            if body is not None:
                out.append(loads(body, self.store.uri(key)))
        return out

    # ----------------------------------------------------------------- internals
    def _refresh_pointer(self, record: PromotionRecord, pointer: PromotionRecord | None) -> None:
        if pointer is not None and pointer.audit_key == record.audit_key:
            return
        try:
            self.store.overwrite(self.champion_key, dumps(record.to_dict()))
        except RegistryError as exc:  # the link is the commit; the pointer is only a hint
            log.warning("promotion of %s took effect but champion.json was not refreshed: %s", record.version, exc)

    def _read_record(self, key: str) -> PromotionRecord | None:
        body = self.store.get(key)
        return None if body is None else PromotionRecord.from_bytes(body, where=self.store.uri(key))

    def _link_key(self, record: PromotionRecord | None) -> str:
        name = "genesis.json" if record is None else record.audit_key.rsplit("/", 1)[-1]
        return self.key("chain", f"after-{name}")

    def _tip(self) -> tuple[PromotionRecord | None, PromotionRecord | None]:
        """(the champion's record, the pointer as stored): start at the pointer, follow links forward."""
        pointer = self._read_record(self.champion_key)
        tip = pointer
        for _ in range(_MAX_CHAIN):
            nxt = self._read_record(self._link_key(tip))
            if nxt is None:
                return tip, pointer
            tip = nxt
        raise RegistryError(f"{self.store.uri(self.key('chain'))}/: more than {_MAX_CHAIN} links, or a cycle")


def check_version(version: str) -> None:
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ValueError(
            f"version {version!r} must match {_VERSION_RE.pattern} (e.g. 'als-20261124T0000-3f9a2c1b7e04')"
        )


def _opener(path: Path) -> Any:
    return lambda: path.open("rb")


def _hash_stream(body: Any, out: Any = None) -> tuple[str, int]:
    """(sha256 hex, size) of a streaming body, optionally copying it to ``out``."""
    digest = hashlib.sha256()
    size = 0
    for chunk in body.iter_chunks(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if out is not None:
            out.write(chunk)
    return digest.hexdigest(), size
