"""Immutable model versions: register (create-only upload, then the manifest), get, list, fetch (verified).

**Immutable versions.** A version id is ``<family>-<interval>-<content digest>`` (:mod:`recflow.registry.version_ids`),
so no other bytes can ever carry the same id. Every object under ``versions/<version>/`` is written with
``If-None-Match: *``; the pipeline never rewrites or deletes one. Registering identical content again
finds the stored manifest and returns it without writing.

**Why a manifest as commit marker:** S3 has no multi-object transactions, so a version is "committed" the
moment its manifest exists. A version whose upload died midway has files but no manifest; it is never
listed or served. The manifest carries each file's sha256 and size, and its own sha256 (the version's
*digest*) is what a promotion records and every load verifies.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from recflow.registry.layout import VERSION_RE, RegistryLayout, check_version
from recflow.registry.objects import ObjectStore
from recflow.registry.records import (
    _CHUNK,
    MANIFEST_NAME,
    ChecksumMismatch,
    FileEntry,
    IncompleteModelVersion,
    ModelNotFound,
    ModelVersion,
    RegistryError,
    content_digest,
    dumps,
    sha256_bytes,
    sha256_file,
    utc,
)
from recflow.registry.version_ids import version_id

_FAMILY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class VersionStore:
    """The ``versions/`` folder of one registry: committed versions are created once and never change."""

    def __init__(self, store: ObjectStore, layout: RegistryLayout) -> None:
        self.store = store
        self.layout = layout

    def uri(self, version: str) -> str:
        """``s3://<bucket>/<prefix>/versions/<version>/``: the folder a version lives in."""
        check_version(version)
        return self.store.uri(self.layout.key("versions", version)) + "/"

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

        The id is derived from the content (:func:`recflow.registry.version_ids.version_id`), so identical content
        returns the stored version without writing, and other content is always a new version.
        ``created_at`` is the end of the training data interval. A file that already exists under the
        id (an earlier attempt died after uploading it) is accepted only if its bytes hash the same.
        """
        if not _FAMILY_RE.match(family):
            raise ValueError(f"family {family!r} must match {_FAMILY_RE.pattern}")
        root = Path(local_dir)
        local_files = _files_to_register(root, family)
        entries = tuple(
            FileEntry(path=p.relative_to(root).as_posix(), sha256=sha256_file(p), size=p.stat().st_size)
            for p in local_files
        )
        created = utc(created_at, "created_at")
        clean_metrics = {str(k): float(v) for k, v in metrics.items()}
        digest = _content_digest(family, created, clean_metrics, lineage, entries)
        version = version_id(family, created, digest)
        stored = self._stored(version, digest)
        if stored is not None:
            return stored  # identical content registered before: nothing to write
        self._upload(version, local_files, entries)
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
        return self._commit(mv)

    def _upload(self, version: str, local_files: list[Path], entries: tuple[FileEntry, ...]) -> None:
        """Every file, create-only; one left by an earlier attempt must hold the same bytes."""
        for path, entry in zip(local_files, entries, strict=True):
            key = self.layout.version_key(version, "files", *PurePosixPath(entry.path).parts)
            if not self.store.create(key, _opener(path)):
                self._check_existing_file(key, entry)

    def _commit(self, mv: ModelVersion) -> ModelVersion:
        """Write the manifest (the commit marker), or adopt an identical concurrent registration's."""
        body = dumps(mv.to_manifest())
        key = self.layout.version_key(mv.version, MANIFEST_NAME)
        if not self.store.create(key, body, content_type="application/json"):
            raced = self._stored(mv.version, mv.content_digest)  # a concurrent identical registration won
            if raced is None:
                raise RegistryError(f"{mv.uri}{MANIFEST_NAME}: create refused but it cannot be read")
            return raced
        return ModelVersion.from_manifest(body, uri=mv.uri)

    def _stored(self, version: str, digest: str) -> ModelVersion | None:
        """The committed version if it exists, after checking it holds the content its id promises."""
        body = self.store.get(self.layout.version_key(version, MANIFEST_NAME))
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
        body = self.store.get(self.layout.version_key(version, MANIFEST_NAME))
        if body is None:
            if self.store.any(self.layout.key("versions", version) + "/"):
                raise IncompleteModelVersion(
                    f"model version {version!r} at {self.uri(version)} has no {MANIFEST_NAME}: its upload "
                    "did not finish; it cannot be read or promoted"
                )
            raise ModelNotFound(f"model version {version!r} not found: nothing at {self.uri(version)}")
        mv = ModelVersion.from_manifest(body, uri=self.uri(version))
        if mv.version != version:
            raise RegistryError(f"{mv.uri}{MANIFEST_NAME}: manifest names version {mv.version!r}, not {version!r}")
        check_identity(mv)
        return mv

    def list_versions(self, family: str | None = None, *, prefix: str = "") -> list[ModelVersion]:
        """Committed versions (those with a manifest) whose id starts with ``prefix``, oldest first by
        (created_at, registered_at, version)."""
        root = self.layout.key("versions") + "/"
        found: list[ModelVersion] = []
        for key in self.store.keys(root + prefix):
            name, _, tail = key[len(root) :].partition("/")
            if tail != MANIFEST_NAME or not VERSION_RE.match(name):
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
        body = self.store.get(self.layout.version_key(model.version, MANIFEST_NAME))
        if body is None:
            raise ModelNotFound(f"{model.uri}{MANIFEST_NAME} is gone; the version cannot be served")
        if sha256_bytes(body) != model.digest:
            raise ChecksumMismatch(
                f"{model.uri}{MANIFEST_NAME} has sha256 {sha256_bytes(body)}, expected {model.digest}: "
                "the manifest changed after it was resolved"
            )
        check_identity(model)
        parent = Path(parent_dir)
        parent.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=f"{model.version}-", dir=parent))
        try:
            for entry in model.files:
                self._download(model, entry, target)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        return target

    def _download(self, model: ModelVersion, entry: FileEntry, target: Path) -> None:
        """One file of ``model`` into ``target``, checked against its manifest entry."""
        local = target / PurePosixPath(entry.path)
        if not local.resolve().is_relative_to(target.resolve()):
            raise RegistryError(f"{model.uri}{MANIFEST_NAME}: file path {entry.path!r} escapes the folder")
        local.parent.mkdir(parents=True, exist_ok=True)
        key = self.layout.version_key(model.version, "files", *PurePosixPath(entry.path).parts)
        with local.open("wb") as out:
            got, size = _hash_stream(self.store.stream(key), out)
        if got != entry.sha256 or size != entry.size:
            raise ChecksumMismatch(
                f"{self.store.uri(key)}: got sha256 {got} ({size} bytes), manifest says "
                f"{entry.sha256} ({entry.size} bytes); the file changed after registration"
            )


def check_identity(model: ModelVersion) -> None:
    """Recompute the content digest from the manifest and check that the version id names it.

    Why: the files are checked against the manifest, and the manifest against the digest a promotion
    recorded; but a pinned version, or a version read before any promotion, has only its id to go by.
    The id ends with the first 12 hex of the content digest (:func:`recflow.registry.version_ids.version_id`),
    so a file rewritten together with its manifest entry (or the manifest's ``content_digest``) no longer
    matches the id it is stored under: :class:`ChecksumMismatch`.
    """
    recomputed = content_digest(model.family, model.created_at, model.metrics, model.lineage, model.files)
    named = version_id(model.family, model.created_at, recomputed)
    if recomputed != model.content_digest or named != model.version:
        raise ChecksumMismatch(
            f"{model.uri}{MANIFEST_NAME}: its content hashes to {recomputed[:16]}... ({named}), but it is stored "
            f"as {model.version} with content_digest {model.content_digest[:16]}...: the manifest or a file entry "
            "was rewritten after registration; refusing to load it"
        )


def _files_to_register(root: Path, family: str) -> list[Path]:
    """Every file under ``root`` in a fixed order (by relative POSIX path); refuses a missing or empty folder."""
    if not root.is_dir():
        raise RegistryError(f"cannot register a {family} model: {root} is not a folder")
    local_files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: p.relative_to(root).as_posix())
    if not local_files:
        raise RegistryError(f"cannot register a {family} model: {root} has no files")
    return local_files


def _content_digest(family: str, created: datetime, metrics: dict[str, float], lineage: Mapping[str, Any],
                    entries: tuple[FileEntry, ...]) -> str:  # fmt: skip
    """:func:`recflow.registry.records.content_digest`, with a JSON failure named as the caller's mistake."""
    try:
        return content_digest(family, created, metrics, lineage, entries)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"manifest for a {family} model is not valid JSON (metrics must be finite, lineage "
            f"JSON-serializable): {exc}"
        ) from exc


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
