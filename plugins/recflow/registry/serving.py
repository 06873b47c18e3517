"""Which version serves: the one question batch scoring, the streaming scorer and the CLI all ask.

Why one function: three copies of "read the champion" drifted apart (one downloaded into a folder it
could not replace, one swallowed the error), so batch and stream could serve different bits under one
label. :func:`resolve_serving_version` answers with the version *and* the sha256 of its manifest; every
load goes through :meth:`ModelRegistry.fetch`, which verifies that digest and every file, into a fresh
folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from recflow.registry.records import (
    ChecksumMismatch,
    ModelVersion,
    NoChampion,
    PromotionRecord,
    iso,
)

if TYPE_CHECKING:
    from recflow.registry.core import ModelRegistry


@dataclass(frozen=True)
class ServingVersion:
    """The version to serve, the sha256 of its manifest, the manifest itself and, unless pinned, the
    promotion that made it champion."""

    version: str
    digest: str
    model: ModelVersion
    record: PromotionRecord | None = None

    @property
    def uri(self) -> str:
        return self.model.uri


def resolve_serving_version(
    registry: ModelRegistry,
    pinned: str | None = None,
    at: datetime | None = None,
    *,
    digest: str | None = None,
) -> ServingVersion:
    """The version that serves now, the ``pinned`` one, or the champion at wall-clock time ``at``.

    - ``pinned``: that version (``ModelNotFound`` / ``IncompleteModelVersion`` when it is not committed);
    - ``at``: the champion serving at that instant, from the promotion history;
    - neither: the current champion.

    ``digest``, when given, must equal the manifest's sha256 (a planner passes the digest it resolved
    to the job that loads it). A champion's manifest must still hash to the digest its promotion
    recorded. Either mismatch is :class:`ChecksumMismatch`. :class:`NoChampion` when nothing serves.
    """
    if pinned and at is not None:
        raise ValueError("pass either pinned or at, not both")
    record: PromotionRecord | None = None
    if pinned:
        model = registry.get(pinned)
    else:
        record = registry.champion_record() if at is None else registry.champion_at(at)
        if record is None:
            when = "yet" if at is None else f"at {iso(at)}"
            raise NoChampion(f"no champion {when} in {registry.store.uri(registry.prefix)}/: run the "
                             "recommender_training DAG or `recflow registry promote` first")  # fmt: skip
        model = registry.get(record.version)
        if model.digest != record.digest:
            raise ChecksumMismatch(
                f"{model.uri}manifest.json has sha256 {model.digest}, but its promotion recorded "
                f"{record.digest}: the version changed after it was promoted; refusing to serve it"
            )
    if digest is not None and model.digest != digest:
        raise ChecksumMismatch(f"{model.uri}manifest.json has sha256 {model.digest}, expected {digest}")
    return ServingVersion(version=model.version, digest=model.digest, model=model, record=record)
