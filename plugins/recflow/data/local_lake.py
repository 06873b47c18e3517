"""A lake on the local file system, committed by one symlink flip.

Layout under the root (``key`` names the commit, see :mod:`recflow.data.commits`)::

    _attempts/<key>/<attempt>/<table>/part-0.parquet    the attempt's files, moved in and checked
    _attempts/<key>/<attempt>/_commit.json              what the attempt holds (files, sizes, MD5, rows)
    _commits/<key> -> ../_attempts/<key>/<attempt>      the commit: one symlink, replaced atomically
    <table> -> _commits/<key>/<table>                   the partition, stable once created

Why symlinks: ``os.replace`` of a symlink is atomic, and every reader (Spark, pandas, these methods)
goes through the partition path, so it sees the old attempt or the new one, never a mix and never
nothing. Several tables under one key flip together. A partition that is a plain folder (written
before this layout, or by a test fixture) is moved aside once, the first time it is published again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from recflow.data.commits import (
    ATTEMPTS,
    COMMITS,
    PublishError,
    check_parts,
    commit_key,
    commit_record,
    grace_seconds,
    md5_of,
    new_attempt_id,
    table_facts,
)
from recflow.data.locations import COLUMN_BATCH, is_s3, walk_files
from recflow.services import faults

STAGING = "_staging"
RECORD = "_commit.json"
LEGACY = "_legacy"


class LocalLake:
    """A lake on the local file system. Staging sits inside the root so an attempt is a rename away."""

    def __init__(self, root: str | Path) -> None:
        if is_s3(root):
            raise ValueError(f"{root} is an object-store URI: use S3Lake (open_store picks it)")
        self.root = str(Path(root).resolve())

    def staging(self) -> Path:
        path = Path(self.root) / STAGING / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def publish(self, local_dir: Path, relative: str) -> str:
        """Replace the partition ``relative`` by the contents of ``local_dir`` (one commit of one table)."""
        return self.publish_together({relative: local_dir})[relative]

    def publish_together(
        self, parts: Mapping[str, Path], *, key: str | None = None, point: str = "lake.publish.before_commit"
    ) -> dict[str, str]:
        """Commit every table of ``parts`` (partition -> staged folder, which is consumed) at once.

        The fault point ``point`` is hit after the attempt is written and checked, before the commit.
        """
        check_parts(parts)
        name = commit_key(parts, key)
        root = Path(self.root)
        attempt = new_attempt_id()
        folder = root / ATTEMPTS / name / attempt
        folder.mkdir(parents=True)
        tables = {table: self._place(Path(src), folder / table) for table, src in parts.items()}
        (folder / RECORD).write_text(json.dumps(commit_record(name, attempt, tables), indent=2, sort_keys=True))
        faults.hit(point)
        pointer = root / COMMITS / name
        previous = pointer.resolve() if pointer.is_symlink() else None
        _link(pointer, folder)
        for table in parts:
            self._adopt(table, pointer / table, attempt)
        if previous is not None and previous != folder.resolve() and previous.exists():
            os.utime(previous)  # superseded now: its grace period starts here
        self._clean(root / ATTEMPTS / name, keep=folder)
        for table in parts:
            self._clean(root / ATTEMPTS / LEGACY / table, keep=None)
        return {table: self.uri(table) for table in parts}

    @staticmethod
    def _place(src: Path, dest: Path) -> dict[str, dict[str, Any]]:
        """Move (or copy, across file systems) a staged table into the attempt and check every file."""
        facts = table_facts(src)
        try:
            os.replace(src, dest)
            moved = True
        except OSError:  # staged on another file system
            shutil.copytree(src, dest)
            moved = False
        for rel, want in facts.items():
            landed = dest / rel
            if not landed.is_file() or landed.stat().st_size != want["size"]:
                raise PublishError(f"{landed} is missing or has the wrong size after writing the attempt")
            if not moved and md5_of(landed) != want["md5"]:
                raise PublishError(f"{landed} differs from its staged copy (MD5)")
        extra = {f.relative_to(dest).as_posix() for f in walk_files(dest)} - set(facts)
        if extra:
            raise PublishError(f"attempt folder {dest} holds files that were not staged: {sorted(extra)}")
        return facts

    def _adopt(self, table: str, target: Path, attempt: str) -> None:
        """Point the partition at the commit (once): a plain folder from before moves aside first."""
        path = Path(self.root) / table
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() and os.readlink(path) == os.path.relpath(target, path.parent):
            return
        if path.exists() and not path.is_symlink():
            aside = Path(self.root) / ATTEMPTS / LEGACY / table / attempt
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, aside)
            os.utime(aside)
        _link(path, target)

    @staticmethod
    def _clean(folder: Path, keep: Path | None) -> None:
        """Remove the attempts under ``folder`` other than ``keep`` once their grace period is over."""
        if not folder.is_dir():
            return
        cutoff = time.time() - grace_seconds()
        for attempt in folder.iterdir():
            if attempt != keep and attempt.is_dir() and not attempt.is_symlink() and attempt.stat().st_mtime <= cutoff:
                shutil.rmtree(attempt, ignore_errors=True)

    def uri(self, relative: str) -> str:
        return str(Path(self.root) / relative)

    def file_uri(self, relative: str, name: str) -> str:
        """Where the committed partition's file ``name`` is read (the partition link leads to it)."""
        return str(Path(self.root) / relative / name)

    def exists(self, relative: str) -> bool:
        return (Path(self.root) / relative).is_dir()

    def files(self, relative: str) -> dict[str, str]:
        d = Path(self.root) / relative
        return {f.relative_to(d).as_posix(): md5_of(f) for f in walk_files(d)}

    def committed_facts(self, relative: str) -> dict[str, dict[str, Any]] | None:
        """The facts the commit record holds for the partition's files (see :class:`~recflow.data.lake.LakeStore`).

        A partition that is a plain folder (written before commits, or by a test fixture) has no record:
        each file's size and modification time (ns) stand in, so a rewritten file still changes them.
        """
        path = Path(self.root) / relative
        if not path.is_dir():
            return None
        if path.is_symlink():  # <table> -> _commits/<key>/<table> -> _attempts/<key>/<attempt>/<table>
            attempt = path.resolve().parents[len(Path(relative).parts) - 1]
            record = attempt / RECORD
            if record.is_file():
                table = json.loads(record.read_text()).get("tables", {}).get(relative)
                if table is None:
                    raise PublishError(f"{record} does not hold {relative}, which points at it")
                return {name: dict(facts) for name, facts in table["files"].items()}
        return {
            f.relative_to(path).as_posix(): {"size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns}
            for f in walk_files(path)
        }

    def _parquet(self, relative: str) -> list[Path]:
        d = Path(self.root) / relative
        return sorted(d.glob("*.parquet")) if d.is_dir() else []

    def partition_rows(self, relative: str) -> int | None:
        files = self._parquet(relative)
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files) if files else None

    def read_column(self, relative: str, column: str) -> Iterator[np.ndarray]:
        for f in self._parquet(relative):
            for batch in pq.ParquetFile(f).iter_batches(batch_size=COLUMN_BATCH, columns=[column]):
                yield batch.column(0).to_numpy(zero_copy_only=False)


def _link(path: Path, target: Path) -> None:
    """Make ``path`` a relative symlink to ``target`` in one atomic rename (a new link, then replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.link"
    os.symlink(os.path.relpath(target, path.parent), tmp)
    os.replace(tmp, path)
