"""Where landing files and lake objects live, a local path or ``s3://bucket/prefix``, and how to read them.

Why its own module: the landing readers, the lakes (:mod:`recflow.data.local_lake`,
:mod:`recflow.data.s3_lake`) and the batch summary all open a path or an object the same way: a
seekable, buffered binary stream read in ranges (:func:`open_input`), so memory does not grow with the
object, and a Parquet footer can be found by seeking.
"""

from __future__ import annotations

import io
import mimetypes
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from recflow.config.s3 import S3Settings, s3_client
from recflow.config.settings import load_settings, state_dir

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


def client_for(s3: S3Settings | None, client: S3Client | None = None) -> S3Client:
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
        raw = S3ObjectReader(client_for(s3, client), bucket, key)
        return io.BufferedReader(raw, buffer_size=buffer_size)  # type: ignore[return-value]
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"landing file not found: {path}")
    return open(path, "rb", buffering=buffer_size)


def input_size(uri: str | Path, s3: S3Settings | None = None) -> int:
    """Size in bytes of a file or object (raises FileNotFoundError)."""
    if is_s3(uri):
        bucket, key = split_s3(str(uri))
        client = client_for(s3)
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
    client = client_for(s3)
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
    files = [f for f in walk_files(local_dir) if include is None or include(f)]
    if not is_s3(uri):
        for f in files:
            dest = Path(uri) / f.relative_to(local_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        return [str(Path(uri) / f.relative_to(local_dir)) for f in files]
    client = client_for(s3, client)
    bucket, key = split_s3(uri)
    out = []
    for f in files:
        rel = f.relative_to(local_dir).as_posix()
        ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        target = f"{key}/{rel}" if key else rel
        client.upload_file(str(f), bucket, target, ExtraArgs={"ContentType": ctype})
        out.append(f"s3://{bucket}/{target}")
    return out


def walk_files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def staging_root() -> Path:
    """Where partitions bound for an S3 lake are staged before they are published.

    ``RECFLOW_STAGING``, else ``<state>/tmp``. Spark executors write staged batch scores and validated
    partitions there, so on a multi-host Spark cluster it must be a path mounted at the same place on the
    driver and every executor host (NFS, EFS, ...); on one machine the default is fine.
    """
    explicit = os.environ.get("RECFLOW_STAGING")
    return Path(explicit) if explicit else state_dir() / "tmp"
