"""The model registry on S3: immutable versions, the champion chain, what serves, blessings.

``from recflow.registry import ...`` is the public surface; the modules split it by responsibility:
:mod:`.records` (documents and errors), :mod:`.store` (S3 access with retries), :mod:`.core`
(register, read, fetch, promote, history), :mod:`.serving` (``resolve_serving_version``).
The layout and its guarantees are described in :mod:`recflow.registry.core`.
"""

from recflow.registry.core import ModelRegistry
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
from recflow.registry.store import RetryPolicy

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
