"""Where landing files, lake partitions, quarantine and reports live: a local path or ``s3://bucket/prefix``.

Why one module: the validator must not care whether it reads a landing file from disk or from the object
store, nor whether a partition is published by a rename or by S3 calls. Everything location-specific is
here, behind two small surfaces: :func:`open_input` (a seekable, buffered binary stream over a file or an
object, read in ranges so memory does not grow with the object) and :class:`LakeStore` (stage locally,
publish a partition as a whole, read back row counts and a column).

Publishing on S3 (there is no rename): **the ``_SUCCESS`` manifest is the commit.**

1. the new files are uploaded under ``<root>/_staging/<run>/`` (hidden from Spark and from our readers);
2. the partition's old ``_SUCCESS`` is deleted: from here readers see the partition as absent, never as
   a mix of old and new files;
3. old objects not in the new set are deleted and the staged ones are copied into place server-side
   (the slow upload already happened in step 1, so this window is short);
4. ``<partition>/_SUCCESS`` is written last: a JSON manifest (run id, file names, sizes, ETags, rows);
5. the staging prefix is deleted.

Readers here (:meth:`S3Lake.partition_rows`, :meth:`S3Lake.read_column`, :meth:`S3Lake.files`) honour
the manifest: no ``_SUCCESS`` means no partition, and only listed files count. A crash between 2 and 4
leaves a partition without a marker, i.e. absent, and the next run of that day repairs it. A reader that
ignores the marker (plain ``spark.read`` on ``s3a://``) could see a mixed folder during step 3; Spark jobs
read the local lake today, so this is documented rather than engineered away.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, Protocol

import numpy as np
import pyarrow.parquet as pq

from recflow.config.s3 import S3Settings, s3_client
from recflow.config.settings import load_settings, state_dir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

SUCCESS: Final = "_SUCCESS"
STAGING: Final = "_staging"
#: Range size of object reads: large enough that a GET's latency is noise, small enough to bound memory.
READ_BLOCK: Final = 8 * 1024 * 1024


#: Rows per batch when a lake column is read back (e.g. earlier days' event ids for duplicates).
COLUMN_BATCH: Final = 262_144


def is_s3(uri: str | Path) -> bool:
    """True for ``s3://`` and ``s3a://`` URIs."""
    return str(uri).startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")`` (no leading or trailing slash on the key)."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key.strip("/")


def join_uri(root: str | Path, *parts: str) -> str:
    """Join with ``/`` for URIs and with the OS separator for paths."""
    if is_s3(root):
        return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts if p)])
    return str(Path(root).joinpath(*parts))


def basename(uri: str | Path) -> str:
    """The last component of a path or URI."""
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def _client(s3: S3Settings | None, client: S3Client | None = None) -> S3Client:
    if client is not None:
        return client
    return s3_client(s3 or load_settings().s3)


# ------------------------------------------------------------------------------------------- reading


class S3ObjectReader(io.RawIOBase):
    """A seekable raw stream over one S3 object that reads byte ranges on demand.

    Wrapped in :class:`io.BufferedReader` by :func:`open_input`, it gives ``readline`` for text and
    ``seek``/``tell`` for Parquet footers, and holds at most one buffer of the object in memory.
    """

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        super().__init__()
        self._client, self._bucket, self._key = client, bucket, key
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"no object s3://{bucket}/{key}") from exc
            raise
        self.size = int(head["ContentLength"])
        self._etag = head.get("ETag")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self.size or not len(view):
            return 0
        end = min(self.size, self._pos + len(view)) - 1
        # IfMatch: an object replaced while we stream it fails loudly instead of mixing two versions.
        kwargs: dict[str, Any] = {"IfMatch": self._etag} if self._etag else {}
        body = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end}", **kwargs)
        n = 0
        stream = body["Body"]
        try:
            for piece in stream.iter_chunks(chunk_size=1024 * 1024):
                view[n : n + len(piece)] = piece
                n += len(piece)
        finally:
            stream.close()
        self._pos += n
        return n


def open_input(
    uri: str | Path,
    s3: S3Settings | None = None,
    *,
    client: S3Client | None = None,
    buffer_size: int = READ_BLOCK,
) -> BinaryIO:
    """A buffered, seekable binary stream over a local file or an S3 object (raises FileNotFoundError)."""
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        raw = S3ObjectReader(_client(s3, client), bucket, key)
        return io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[return-value]
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"landing file not found: {path}")
    return open(path, "rb", buffering=buffer_size)


def input_size(uri: str | Path, s3: S3Settings | None = None) -> int:
    """Size in bytes of a file or object (raises FileNotFoundError)."""
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        client = _client(s3)
        try:
            return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except client.exceptions.ClientError as exc:
            raise FileNotFoundError(f"no object {uri}") from exc
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"landing file not found: {path}")
    return path.stat().st_size


def list_names(folder: str | Path, s3: S3Settings | None = None) -> list[str]:
    """Names of the files directly inside a folder or prefix (sorted; empty when it does not exist)."""
    if not is_s3(folder):
        p = Path(folder)
        return sorted(f.name for f in p.iterdir() if f.is_file()) if p.is_dir() else []
    bucket, key = split_s3(str(folder))
    prefix = f"{key}/" if key else ""
    client = _client(s3)
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
    return sorted(names)


def copy_to_local(uri: str | Path, dest: Path, s3: S3Settings | None = None) -> None:
    """Copy a file or object byte for byte to a local path, streaming (used to quarantine a whole file)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open_input(uri, s3) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, length=READ_BLOCK)


def upload_tree(
    local_dir: Path,
    uri: str,
    s3: S3Settings | None = None,
    *,
    client: S3Client | None = None,
    include: Callable[[Path], bool] | None = None,
) -> list[str]:
    """Copy every file under ``local_dir`` (that ``include`` accepts) to ``uri``, same relative layout.

    Objects get a content type from their name, so HTML opens in a browser instead of downloading.
    """
    files = [f for f in _walk(local_dir) if include is None or include(f)]
    if not is_s3(uri):
        for f in files:
            dest = Path(uri) / f.relative_to(local_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        return [str(Path(uri) / f.relative_to(local_dir)) for f in files]
    client = _client(s3, client)
    bucket, key = split_s3(uri)
    out = []
    for f in files:
        rel = f.relative_to(local_dir).as_posix()
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        target = f"{key}/{rel}" if key else rel
        client.upload_file(str(f), bucket, target, ExtraArgs={"ContentType": ctype})
        out.append(f"s3://{bucket}/{target}")
    return out


def _walk(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


# ---------------------------------------------------------------------------------------------- lakes


def staging_root() -> Path:
    """Where partitions bound for an S3 lake are staged before they are published.

    ``RECFLOW_STAGING``, else ``<state>/tmp``. Spark executors write staged batch scores and validated
    partitions there, so on a multi-host Spark cluster it must be a path mounted at the same place on the
    driver and every executor host (NFS, EFS, ...); on one machine the default is fine.
    """
    explicit = os.environ.get("RECFLOW_STAGING")
    return Path(explicit) if explicit else state_dir() / "tmp"


class LakeStore(Protocol):
    """What validation needs from a lake or quarantine root: stage locally, publish whole, read back."""

    root: str

    def staging(self) -> Path:
        """A fresh local folder to write a partition into (the caller removes it)."""
        ...

    def publish(self, local_dir: Path, relative: str) -> str:
        """Replace the partition ``relative`` by the contents of ``local_dir``; returns its URI."""
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

    def read_column(self, relative: str, column: str) -> Iterator[np.ndarray]:
        """One column of the partition's Parquet files in batches of at most :data:`COLUMN_BATCH` rows
        (nothing when it does not exist): memory is one batch, whatever the partition's size."""
        ...


class LocalLake:
    """A lake on the local file system. Staging sits inside the root so publishing is a rename swap."""

    def __init__(self, root: str | Path) -> None:
        if is_s3(root):
            raise ValueError(f"{root} is an object-store URI: use S3Lake (open_store picks it)")
        self.root = str(Path(root).resolve())

    def staging(self) -> Path:
        path = Path(self.root) / STAGING / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def publish(self, local_dir: Path, relative: str) -> str:
        """Replace ``<root>/<relative>`` by ``local_dir`` (rename swap: never a mix of old and new files)."""
        final = Path(self.root) / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if final.exists():
            old = Path(self.root) / STAGING / f"old-{uuid.uuid4().hex}"
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, old)
        try:
            os.replace(local_dir, final)
        except OSError:  # staged on another file system: copy next to the target first, then swap
            tmp = Path(self.root) / STAGING / f"in-{uuid.uuid4().hex}"
            shutil.copytree(local_dir, tmp)
            os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return str(final)

    def uri(self, relative: str) -> str:
        return str(Path(self.root) / relative)

    def exists(self, relative: str) -> bool:
        return (Path(self.root) / relative).is_dir()

    def files(self, relative: str) -> dict[str, str]:
        import hashlib

        d = Path(self.root) / relative
        # MD5 as a content checksum (what S3 reports as the ETag of a single-part upload), not for security.
        return {f.relative_to(d).as_posix(): hashlib.md5(f.read_bytes()).hexdigest() for f in _walk(d)}

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


class S3Lake:
    """A lake (or quarantine) under ``s3://bucket/prefix``, committed by a ``_SUCCESS`` manifest.

    Staging is a temporary folder under :func:`staging_root`; see the module docstring for the publish
    protocol and what readers may assume.
    """

    def __init__(self, root: str, s3: S3Settings | None = None, client: S3Client | None = None) -> None:
        self.root = root.rstrip("/")
        self.bucket, self.prefix = split_s3(self.root)
        self.client = client or _client(s3)

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def uri(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self._key(relative)}"

    def staging(self) -> Path:
        base = staging_root()
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="s3lake-", dir=base))

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{prefix}/"):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[i : i + 1000]]
            if batch:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def manifest(self, relative: str) -> dict[str, Any] | None:
        """The partition's ``_SUCCESS`` manifest, or None when the partition is not committed."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(relative, SUCCESS))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        doc: dict[str, Any] = json.loads(body)
        return doc

    def publish(self, local_dir: Path, relative: str) -> str:
        run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        staged = self._key(STAGING, run)
        final = self._key(relative)
        files: dict[str, dict[str, Any]] = {}
        for f in _walk(Path(local_dir)):
            rel = f.relative_to(local_dir).as_posix()
            ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            self.client.upload_file(str(f), self.bucket, f"{staged}/{rel}", ExtraArgs={"ContentType": ctype})
            files[rel] = {"size": f.stat().st_size, "rows": _parquet_rows(f)}
        # From here the partition is invalid for manifest-aware readers until _SUCCESS is back.
        self.client.delete_object(Bucket=self.bucket, Key=f"{final}/{SUCCESS}")
        stale = [k for k in self._list(final) if k[len(final) + 1 :] not in files]
        self._delete(stale)
        for rel in files:
            self.client.copy({"Bucket": self.bucket, "Key": f"{staged}/{rel}"}, self.bucket, f"{final}/{rel}")
            files[rel]["etag"] = self.client.head_object(Bucket=self.bucket, Key=f"{final}/{rel}")["ETag"].strip('"')
        manifest = {
            "run": run,
            "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": sum(v["rows"] or 0 for v in files.values() if v["rows"] is not None),
            "files": files,
        }
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{final}/{SUCCESS}",
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        self._delete(self._list(staged))
        return self.uri(relative)

    def exists(self, relative: str) -> bool:
        return self.manifest(relative) is not None

    def files(self, relative: str) -> dict[str, str]:
        m = self.manifest(relative)
        return {name: str(v["etag"]) for name, v in m["files"].items()} if m else {}

    def _parquet(self, relative: str) -> list[tuple[str, dict[str, Any]]]:
        m = self.manifest(relative)
        return sorted((k, v) for k, v in m["files"].items() if k.endswith(".parquet") and "/" not in k) if m else []

    def partition_rows(self, relative: str) -> int | None:
        """Rows from the manifest alone (no Parquet reads): cheap enough for the 7-day volume check."""
        m = self.manifest(relative)
        if m is None:
            return None
        return sum(int(v["rows"] or 0) for k, v in m["files"].items() if k.endswith(".parquet") and "/" not in k)

    def read_column(self, relative: str, column: str) -> Iterator[np.ndarray]:
        for name, _ in self._parquet(relative):
            with open_input(self.uri(f"{relative}/{name}"), client=self.client) as fh:
                for batch in pq.ParquetFile(fh).iter_batches(batch_size=COLUMN_BATCH, columns=[column]):
                    yield batch.column(0).to_numpy(zero_copy_only=False)


def _parquet_rows(f: Path) -> int | None:
    return pq.ParquetFile(f).metadata.num_rows if f.suffix == ".parquet" else None


def open_store(uri: str | Path, s3: S3Settings | None = None) -> LakeStore:
    """:class:`S3Lake` for ``s3://`` URIs, :class:`LocalLake` otherwise."""
    return S3Lake(str(uri), s3) if is_s3(uri) else LocalLake(uri)
