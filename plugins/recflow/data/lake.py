"""The lake: where validated partitions, quarantine, scores and reports are committed and read back.

Why one surface (:class:`LakeStore`): the validator and the batch publisher must not care whether the
lake is a local path or ``s3://bucket/prefix``. :func:`open_store` picks :class:`LocalLake` (a symlink
flip commits) or :class:`S3Lake` (one small commit record written last); both write each publish as
an attempt under its own prefix, check it, and only then make it visible in one step, so a failure
halfway keeps the previous partition whole (:mod:`recflow.data.commits` has the shared rules). The
helpers that open a path or an object (:func:`open_input`, :func:`join_uri`, ...) live in
:mod:`recflow.data.locations` and are re-exported here, where their callers have always found them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recflow.config.s3 import S3Settings
from recflow.data.commits import SUCCESS, PublishError
from recflow.data.local_lake import STAGING, LocalLake
from recflow.data.locations import (
    COLUMN_BATCH,
    READ_BLOCK,
    S3ObjectReader,
    basename,
    copy_to_local,
    input_size,
    is_s3,
    join_uri,
    list_names,
    open_input,
    split_s3,
    staging_root,
    upload_tree,
)
from recflow.data.s3_lake import S3Lake

__all__ = [
    "COLUMN_BATCH",
    "READ_BLOCK",
    "STAGING",
    "SUCCESS",
    "LakeStore",
    "LocalLake",
    "PublishError",
    "S3Lake",
    "S3ObjectReader",
    "basename",
    "copy_to_local",
    "input_size",
    "is_s3",
    "join_uri",
    "list_names",
    "open_input",
    "open_store",
    "split_s3",
    "staging_root",
    "upload_tree",
]


class LakeStore(Protocol):
    """What validation needs from a lake or quarantine root: stage locally, publish whole, read back."""

    root: str

    def staging(self) -> Path:
        """A fresh local folder to write a partition into (the caller removes it)."""
        ...

    def publish(self, local_dir: Path, relative: str) -> str:
        """Replace the partition ``relative`` by the contents of ``local_dir``; returns its URI."""
        ...

    def publish_together(
        self, parts: Mapping[str, Path], *, key: str | None = None, point: str = "lake.publish.before_commit"
    ) -> dict[str, str]:
        """Commit several tables' partitions (partition -> staged folder) all or none under ``key``;
        the fault point ``point`` is hit once they are written and checked, before the commit."""
        ...

    def file_uri(self, relative: str, name: str) -> str:
        """Where the committed partition's file ``name`` is read."""
        ...

    def uri(self, relative: str) -> str:
        """The location of ``relative`` under the root."""
        ...

    def exists(self, relative: str) -> bool:
        """Whether a committed partition exists there."""
        ...

    def files(self, relative: str) -> dict[str, str]:
        """File name (relative to the partition) -> content checksum, for committed partitions."""
        ...

    def partition_rows(self, relative: str) -> int | None:
        """Rows of the partition's Parquet files, or None when it does not exist."""
        ...

    def committed_facts(self, relative: str) -> dict[str, dict[str, Any]] | None:
        """File name -> what the commit recorded of it (size, MD5, rows), read from the commit record,
        not from the files: what identifies the committed contents. None when nothing is committed."""
        ...

    def read_column(self, relative: str, column: str) -> Iterator[np.ndarray]:
        """One column of the partition's Parquet files in batches of at most :data:`COLUMN_BATCH` rows
        (nothing when it does not exist): memory is one batch, whatever the partition's size."""
        ...


def open_store(uri: str | Path, s3: S3Settings | None = None) -> LakeStore:
    """:class:`S3Lake` for ``s3://`` URIs, :class:`LocalLake` otherwise."""
    return S3Lake(str(uri), s3) if is_s3(uri) else LocalLake(uri)
