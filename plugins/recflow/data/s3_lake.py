"""A lake under ``s3://bucket/prefix``, committed by one small object written last.

Layout under the prefix (``key`` names the commit, see :mod:`recflow.data.commits`)::

    _attempts/<key>/<attempt>/<table>/part-0.parquet   the attempt's files, uploaded and checked
    _commits/<key>.json                                the commit: attempt, files, sizes, MD5, rows
    <table>/_SUCCESS                                   the partition's pointer: {"commit": ...}

Why: S3 has no rename, so copying files into place can never be atomic (the old ``S3Lake.publish``
deleted the old marker and the stale files first, and an S3 failure in that window left yesterday's
partition invisible or mixed). Here the files go to a fresh attempt prefix, are checked with a HEAD each
(size and, for single-part uploads, the ETag against the staged file's MD5), and one PUT of the commit
record makes them visible; a failure anywhere before it leaves the previous commit as it was. Readers
(these methods and :meth:`file_uri`) go through the partition's pointer and the commit record only.
The pointer is written once, when the partition first joins a commit; a re-run only rewrites the record.
A plain ``spark.read`` of ``s3a://.../<table>`` sees no rows (Spark skips ``_`` prefixes): Spark jobs
read the local lake, or must be given :meth:`file_uri` of each committed file.
"""

from __future__ import annotations

import json
import mimetypes
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq

from recflow.config.s3 import S3Settings
from recflow.data.commits import (
    ATTEMPTS,
    COMMITS,
    SUCCESS,
    PublishError,
    check_parts,
    commit_key,
    commit_record,
    grace_seconds,
    new_attempt_id,
    table_facts,
)
from recflow.data.locations import COLUMN_BATCH, client_for, open_input, split_s3, staging_root
from recflow.services import faults

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

SUPERSEDED = "_SUPERSEDED"
_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Lake:
    """A lake (or quarantine) under ``s3://bucket/prefix``; see the module docstring for the protocol."""

    def __init__(self, root: str, s3: S3Settings | None = None, client: S3Client | None = None) -> None:
        self.root = root.rstrip("/")
        self.bucket, self.prefix = split_s3(self.root)
        self.client = client or client_for(s3)

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def uri(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self._key(relative)}"

    def staging(self) -> Path:
        base = staging_root()
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="s3lake-", dir=base))

    # ------------------------------------------------------------------------------------ objects
    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        doc: dict[str, Any] = json.loads(body)
        return doc

    def _put_json(self, key: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, indent=2, sort_keys=True).encode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    def _objects(self, prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            out += [dict(o) for o in page.get("Contents", [])]
        return out

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[i : i + 1000]]
            if batch:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # ------------------------------------------------------------------------------------ publish
    def publish(self, local_dir: Path, relative: str) -> str:
        """Replace the partition ``relative`` by the contents of ``local_dir`` (one commit of one table)."""
        return self.publish_together({relative: local_dir})[relative]

    def publish_together(
        self, parts: Mapping[str, Path], *, key: str | None = None, point: str = "lake.publish.before_commit"
    ) -> dict[str, str]:
        """Commit every table of ``parts`` (partition -> staged folder) at once.

        The fault point ``point`` is hit after the attempt is uploaded and checked, before the commit.
        """
        check_parts(parts)
        name = commit_key(parts, key)
        attempt = new_attempt_id()
        base = self._key(ATTEMPTS, name, attempt)
        tables = {table: self._upload(Path(src), f"{base}/{table}") for table, src in parts.items()}
        faults.hit(point)
        commit = self._key(COMMITS, f"{name}.json")
        previous = self._get_json(commit)
        self._put_json(commit, commit_record(name, attempt, tables))
        for table in parts:
            pointer = {"commit": f"{COMMITS}/{name}.json"}
            if self._get_json(self._key(table, SUCCESS)) != pointer:
                self._put_json(self._key(table, SUCCESS), pointer)
        if previous is not None and previous.get("attempt") not in (None, attempt):
            self.client.put_object(Bucket=self.bucket, Key=self._key(ATTEMPTS, name, previous["attempt"], SUPERSEDED))
        self._clean(self._key(ATTEMPTS, name), keep=attempt)
        for table in parts:  # files of a partition written before this layout, beside its pointer
            self._clean_loose(self._key(table))
        return {table: self.uri(table) for table in parts}

    def _upload(self, local_dir: Path, prefix: str) -> dict[str, dict[str, Any]]:
        """Upload a staged table under ``prefix`` and check each object with a HEAD; returns the facts."""
        facts = table_facts(local_dir)
        for rel, want in facts.items():
            target = f"{prefix}/{rel}"
            ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
            self.client.upload_file(str(local_dir / rel), self.bucket, target, ExtraArgs={"ContentType": ctype})
            head = self.client.head_object(Bucket=self.bucket, Key=target)
            etag = str(head.get("ETag", "")).strip('"')
            if int(head["ContentLength"]) != want["size"] or ("-" not in etag and etag != want["md5"]):
                raise PublishError(
                    f"s3://{self.bucket}/{target} does not match its staged file (size {head['ContentLength']} "
                    f"vs {want['size']}, ETag {etag} vs MD5 {want['md5']}): nothing was committed"
                )
        return facts

    def _clean(self, prefix: str, keep: str) -> None:
        """Delete attempts under ``prefix`` other than ``keep`` whose newest object is past the grace."""
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds())
        newest: dict[str, datetime] = {}
        keys: dict[str, list[str]] = {}
        for obj in self._objects(prefix):
            attempt = obj["Key"][len(prefix) + 1 :].split("/", 1)[0]
            keys.setdefault(attempt, []).append(obj["Key"])
            newest[attempt] = max(newest.get(attempt, obj["LastModified"]), obj["LastModified"])
        self._delete([k for a, ks in keys.items() if a != keep and newest[a] <= cutoff for k in ks])

    def _clean_loose(self, prefix: str) -> None:
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds())
        marker = f"{prefix}/{SUCCESS}"
        self._delete([o["Key"] for o in self._objects(prefix) if o["Key"] != marker and o["LastModified"] <= cutoff])

    # ------------------------------------------------------------------------------------ readers
    def manifest(self, relative: str) -> dict[str, Any] | None:
        """The committed table: ``prefix`` (where its files are), ``files`` (facts) and ``rows``; None
        when the partition is not committed. A pointer to a missing commit is an error, not an absence."""
        pointer = self._get_json(self._key(relative, SUCCESS))
        if pointer is None:
            return None
        if "commit" not in pointer:  # written before commits: the files sit beside the marker
            return {"prefix": self._key(relative), **pointer}
        record = self._get_json(self._key(pointer["commit"]))
        table = (record or {}).get("tables", {}).get(relative)
        if record is None or table is None:
            raise PublishError(f"{self.uri(relative)}/{SUCCESS} names {pointer['commit']}, which does not hold it")
        return {"prefix": self._key(ATTEMPTS, record["key"], record["attempt"], relative), "attempt": record["attempt"],
                **table}  # fmt: skip

    def file_uri(self, relative: str, name: str) -> str:
        """Where the committed partition's file ``name`` is (FileNotFoundError when not committed)."""
        m = self.manifest(relative)
        if m is None or name not in m["files"]:
            raise FileNotFoundError(f"no committed {name} in {self.uri(relative)}")
        return f"s3://{self.bucket}/{m['prefix']}/{name}"

    def exists(self, relative: str) -> bool:
        return self.manifest(relative) is not None

    def partitions(self, table: str) -> list[str]:
        """The committed partitions (``<table>/<key>=<value>``) of a table, sorted."""
        prefix = self._key(table) + "/"
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        ):
            names += [p["Prefix"][len(prefix) :].strip("/") for p in page.get("CommonPrefixes", [])]
        return [f"{table}/{n}" for n in sorted(names) if "=" in n and self.exists(f"{table}/{n}")]

    def parquet_uris(self, relative: str) -> list[str]:
        """``s3://`` URIs of the committed partition's Parquet files (empty when not committed)."""
        return self._parquet(relative)

    def files(self, relative: str) -> dict[str, str]:
        m = self.manifest(relative)
        return {name: str(v.get("md5") or v.get("etag")) for name, v in m["files"].items()} if m else {}

    def committed_facts(self, relative: str) -> dict[str, dict[str, Any]] | None:
        """The facts the commit record holds for the partition's files (see :class:`~recflow.data.lake.LakeStore`).

        Why not a listing: the committed files sit under ``_attempts/``, where cleaning superseded
        attempts changes a listing without changing what is committed, and a re-run rewrites only the
        record (the partition's ``_SUCCESS`` pointer stays as it was)."""
        m = self.manifest(relative)
        return {name: dict(facts) for name, facts in m["files"].items()} if m is not None else None

    def _parquet(self, relative: str) -> list[str]:
        m = self.manifest(relative)
        if m is None:
            return []
        names = sorted(k for k in m["files"] if k.endswith(".parquet") and "/" not in k)
        return [f"s3://{self.bucket}/{m['prefix']}/{k}" for k in names]

    def partition_rows(self, relative: str) -> int | None:
        """Rows from the commit record alone (no Parquet reads): cheap enough for the 7-day volume check."""
        m = self.manifest(relative)
        if m is None:
            return None
        return sum(int(v["rows"] or 0) for k, v in m["files"].items() if k.endswith(".parquet") and "/" not in k)

    def read_column(self, relative: str, column: str) -> Iterator[np.ndarray]:
        for uri in self._parquet(relative):
            with open_input(uri, client=self.client) as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=COLUMN_BATCH, columns=[column]):
                    yield batch.column(0).to_numpy(zero_copy_only=False)
