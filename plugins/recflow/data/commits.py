"""What both lakes share about a commit: attempt ids, the facts of each file, the commit record, the grace.

A publish writes an *attempt*: every table's files under ``_attempts/<key>/<attempt>/<table>/``, each
checked against the facts taken from the staged file (size, MD5, Parquet rows). Only then does one small
write make the attempt visible: a symlink flip on a local lake (:mod:`recflow.data.local_lake`), the
``_commits/<key>.json`` record on S3 (:mod:`recflow.data.s3_lake`). ``key`` names the commit: one
partition alone, or several tables committed together (a day's ``scores`` and ``offers``), all or none.

Attempts that no commit names any more are removed after :func:`grace_seconds` (readers that resolved
the previous commit a moment ago may still be reading it), and never before the new commit is visible.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import pyarrow.parquet as pq

from recflow.data.locations import walk_files

ATTEMPTS: Final = "_attempts"
COMMITS: Final = "_commits"
#: On S3, a partition's pointer to the commit that holds it (the name Spark and Hadoop already skip).
SUCCESS: Final = "_SUCCESS"
GRACE_ENV: Final = "RECFLOW_LAKE_GRACE_SECONDS"
#: Long enough for any reader that resolved the previous commit (a training job's scan) to finish.
DEFAULT_GRACE_SECONDS: Final = 6 * 3600.0
_HASH_BLOCK: Final = 1024 * 1024


class PublishError(RuntimeError):
    """A publish was refused or its attempt failed verification; nothing was made visible."""


def new_attempt_id() -> str:
    """``<UTC time>-<random>``: sorts by start time, and two concurrent attempts never share a prefix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def grace_seconds() -> float:
    """``RECFLOW_LAKE_GRACE_SECONDS`` (default six hours); a bad value is an error, not the default."""
    raw = os.environ.get(GRACE_ENV)
    if raw is None or raw == "":
        return DEFAULT_GRACE_SECONDS
    try:
        value = float(raw)
    except ValueError as exc:
        raise PublishError(f"{GRACE_ENV}={raw!r} is not a number of seconds") from exc
    if value < 0:
        raise PublishError(f"{GRACE_ENV}={raw!r} must be >= 0")
    return value


def md5_of(path: Path) -> str:
    """MD5 of a file, streamed (what S3 reports as the ETag of a single-part upload; not for security)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_facts(path: Path) -> dict[str, Any]:
    """Size, MD5 and (for Parquet) rows of one staged file: what the attempt's copy is checked against."""
    rows = pq.ParquetFile(path).metadata.num_rows if path.suffix == ".parquet" else None
    return {"size": path.stat().st_size, "md5": md5_of(path), "rows": rows}


def table_facts(local_dir: Path) -> dict[str, dict[str, Any]]:
    """File name (relative to the folder) -> :func:`file_facts`, for every file of a staged table."""
    return {f.relative_to(local_dir).as_posix(): file_facts(f) for f in walk_files(local_dir)}


def check_name(relative: str) -> None:
    """A table partition or commit key must be a relative path of visible names (no ``..``, no ``_x``)."""
    pieces = relative.split("/")
    if not relative or any(p in ("", ".", "..") or p.startswith(("_", ".")) for p in pieces):
        raise PublishError(f"table partition {relative!r} must be a relative path of visible names")


def check_parts(parts: Mapping[str, Path]) -> None:
    """Refuse a publish whose table names could escape the lake or hide from readers, or whose staged
    folders are missing: a bad name must fail before anything is written."""
    if not parts:
        raise PublishError("nothing to publish: no tables given")
    for relative, local_dir in parts.items():
        check_name(relative)
        if not Path(local_dir).is_dir():
            raise PublishError(f"staged folder {local_dir} for {relative!r} does not exist")


def commit_key(parts: Mapping[str, Path], key: str | None) -> str:
    """The commit's name: ``key`` when given (it must be a valid partition path), else the only table."""
    if key is None:
        if len(parts) != 1:
            raise PublishError(f"tables {sorted(parts)} committed together need a key naming the commit")
        return next(iter(parts))
    check_name(key)
    return key


def commit_record(key: str, attempt: str, tables: Mapping[str, Mapping[str, dict[str, Any]]]) -> dict[str, Any]:
    """The record of one commit: which attempt, and each table's files with their facts and rows."""
    return {
        "key": key,
        "attempt": attempt,
        "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tables": {
            table: {"rows": sum(int(f["rows"] or 0) for f in files.values()), "files": dict(files)}
            for table, files in tables.items()
        },
    }
