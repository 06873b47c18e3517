"""The model registry on S3: immutable versions, the champion chain, what serves, blessings.

``from recflow.registry import ...`` is the public surface; the modules split it by responsibility:
:mod:`.records` (documents and errors), :mod:`.objects` (S3 access with retries), :mod:`.layout` (the keys),
:mod:`.version_store` (register, read, fetch), :mod:`.chain` (the champion's compare-and-swap and history),
:mod:`.audit` (every promotion attempt), :mod:`.core` (``ModelRegistry``, the one object callers hold),
:mod:`.serving` (``resolve_serving_version``). The layout is described in :mod:`recflow.registry.core`.
"""

from recflow.registry.core import ModelRegistry
from recflow.registry.objects import RetryPolicy
from recflow.registry.records import (
    MANIFEST_NAME,
    ChampionMoved,
    ChecksumMismatch,
    FileEntry,
    IncompleteModelVersion,
    ModelNotFound,
    ModelVersion,
    NoChampion,
    PromotionRecord,
    RegistryError,
    RegistryUnavailable,
)
from recflow.registry.serving import ServingVersion, resolve_serving_version

__all__ = [
    "MANIFEST_NAME",
    "ChampionMoved",
    "ChecksumMismatch",
    "FileEntry",
    "IncompleteModelVersion",
    "ModelNotFound",
    "ModelRegistry",
    "ModelVersion",
    "NoChampion",
    "PromotionRecord",
    "RegistryError",
    "RegistryUnavailable",
    "RetryPolicy",
    "ServingVersion",
    "resolve_serving_version",
]
