"""The model registry: immutable model versions, a compare-and-swap champion chain and an audit log on S3.

Layout under ``s3://<models_bucket>/<prefix>/`` (prefix ``registry`` by default; keys: :mod:`.layout`)::

    versions/<version>/files/<relative path>   artifact files, create-only, uploaded first
    versions/<version>/manifest.json           the commit marker, create-only, written LAST
    versions/<version>/blessings/...           model and canary blessings (recflow.registry.blessing)
    versions/<version>/reports/...             the promotion report of the run that trained it
    audit/<promoted_at>-<version>.json         one create-only record per promotion attempt
    chain/after-<audit name>.json              create-only link: the promotion that followed that one
    chain/after-genesis.json                   ... and the first promotion ever
    champion.json                              the pointer to the current champion (a hint)

Each part has its own module and its guarantees are described there: the versions
(:mod:`recflow.registry.version_store`: immutable, committed by their manifest), the champion chain
(:mod:`recflow.registry.chain`: the compare-and-swap, the pointer, the history) and the audit log
(:mod:`recflow.registry.audit`). :class:`ModelRegistry` is the one object callers hold: it wires the three
to one bucket and prefix and answers for them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.config.s3 import S3Settings, s3_client
from recflow.config.settings import Settings
from recflow.registry.audit import AuditLog
from recflow.registry.chain import ChampionChain
from recflow.registry.layout import RegistryLayout
from recflow.registry.objects import ObjectStore, RetryPolicy
from recflow.registry.records import ModelVersion, PromotionRecord
from recflow.registry.version_store import VersionStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ModelRegistry:
    """Model versions, the champion chain and the audit log in one bucket, under one prefix.

    The client is injected so tests can stub it and callers can share one; use :meth:`from_settings`
    for the configured local or remote S3 server. The three parts share one :class:`ObjectStore`
    (``store``), so every S3 call of the registry goes through the same retries.
    """

    def __init__(self, client: S3Client, bucket: str, prefix: str = "registry", retry: RetryPolicy | None = None):
        self.store = ObjectStore(client, bucket, retry)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.layout = RegistryLayout(self.prefix)
        self.version_store = VersionStore(self.store, self.layout)
        self.audit = AuditLog(self.store, self.layout)
        self.chain = ChampionChain(self.store, self.layout, self.version_store, self.audit)

    @classmethod
    def from_settings(
        cls, settings: Settings | S3Settings, prefix: str = "registry", retry: RetryPolicy | None = None
    ) -> ModelRegistry:
        """Registry in ``models_bucket`` of the configured S3 server (takes ``Settings`` or its ``.s3``)."""
        s3 = settings.s3 if isinstance(settings, Settings) else settings
        return cls(s3_client(s3), s3.models_bucket, prefix=prefix, retry=retry)

    # ----------------------------------------------------------------- keys and URIs
    def key(self, *parts: str) -> str:
        return self.layout.key(*parts)

    def uri(self, version: str) -> str:
        """``s3://<bucket>/<prefix>/versions/<version>/``: the folder a version lives in."""
        return self.version_store.uri(version)

    def version_key(self, version: str, *parts: str) -> str:
        """A key inside the version's folder (``versions/<version>/<parts>``)."""
        return self.layout.version_key(version, *parts)

    @property
    def champion_key(self) -> str:
        return self.layout.champion_key

    # ----------------------------------------------------------------- versions
    def register(
        self,
        local_dir: str | os.PathLike[str],
        *,
        family: str,
        metrics: Mapping[str, float],
        lineage: Mapping[str, Any],
        created_at: datetime,
    ) -> ModelVersion:
        """Upload ``local_dir`` and commit it as an immutable version (:meth:`VersionStore.register`)."""
        return self.version_store.register(
            local_dir, family=family, metrics=metrics, lineage=lineage, created_at=created_at
        )

    def get(self, version: str) -> ModelVersion:
        """The committed version (:meth:`VersionStore.get`)."""
        return self.version_store.get(version)

    def list_versions(self, family: str | None = None, *, prefix: str = "") -> list[ModelVersion]:
        """Committed versions, oldest first (:meth:`VersionStore.list_versions`)."""
        return self.version_store.list_versions(family, prefix=prefix)

    def fetch(self, model: ModelVersion, parent_dir: str | os.PathLike[str]) -> Path:
        """Download and verify ``model`` into a fresh folder under ``parent_dir`` (:meth:`VersionStore.fetch`)."""
        return self.version_store.fetch(model, parent_dir)

    # ----------------------------------------------------------------- champion, history, audit
    def champion(self) -> ModelVersion | None:
        """The current champion version, or ``None`` before the first promotion."""
        return self.chain.champion()

    def champion_record(self) -> PromotionRecord | None:
        """The current champion's promotion record (:meth:`ChampionChain.champion_record`)."""
        return self.chain.champion_record()

    def history(self) -> list[PromotionRecord]:
        """Promotions that took effect, oldest first."""
        return self.chain.history()

    def champion_at(self, when: datetime) -> PromotionRecord | None:
        """The promotion that was serving at wall-clock time ``when`` (``None`` before the first one)."""
        return self.chain.champion_at(when)

    def audit_log(self) -> list[dict[str, Any]]:
        """Every promotion attempt (including lost races), oldest first."""
        return self.audit.entries()
