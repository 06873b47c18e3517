"""The registry's only door to S3: get, create-only put (in parts for large files), list; retried with backoff, errors
naming the URI.

Why create-only everywhere it matters: S3Proxy's filesystem backend has neither bucket versioning nor
Object Lock, so our own write discipline is what keeps a version's bytes, a blessing or an audit record
from changing after someone relied on them. ``PUT`` with ``If-None-Match: *`` lets exactly one writer
create a key (measured on S3Proxy 4.0.0: 8 writers, 20 trials, one winner every time; AWS S3 honours it
too). ``If-Match`` is not relied on: on S3Proxy it let several writers through.

Why our own retries on top of botocore's: a restarting S3 server refuses connections for seconds, longer
than botocore's few quick attempts. A create-only PUT retried after a lost answer may find its own object
("already exists"); callers read it back and compare, so a retry never turns into a false conflict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from typing import IO, TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from recflow.registry.records import RegistryError, RegistryUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
#: Files from this size up go in parts: S3Proxy refuses a signed PUT body over 32 MiB
#: (``s3proxy.v4-max-non-chunked-request-size``) and AWS one over 5 GiB; a 10^6-item model's item factors
#: at rank 64 are 256 MB. Parts must be >= 5 MiB except the last (S3's rule).
MULTIPART_THRESHOLD = 16 << 20
PART_SIZE = 16 << 20
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_TRANSIENT_CODES = frozenset({"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown"})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, sleeping ``base * 2**n`` seconds (at most ``cap``) between them."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 8.0

    def delays(self) -> Iterator[float]:
        for n in range(self.attempts - 1):
            yield min(self.cap, self.base * 2**n)


class ObjectStore:
    """S3 access for one bucket (files from :data:`MULTIPART_THRESHOLD` up go in parts); every failure is a
    :class:`RegistryError` naming the URI."""

    def __init__(self, client: S3Client, bucket: str, retry: RetryPolicy | None = None) -> None:
        self.s3 = client
        self.bucket = bucket
        self.retry = retry or RetryPolicy()

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _attempt(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn``; retry transient failures (connection refused, timeouts, 5xx) with backoff."""
        delays = self.retry.delays()
        while True:
            try:
                return fn()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "?"))
                if code not in _TRANSIENT_CODES:
                    raise
                failure: Exception = exc
            except BotoCoreError as exc:
                failure = exc
            delay = next(delays, None)
            if delay is None:
                raise RegistryUnavailable(
                    f"{what} {self.uri(key)} failed after {self.retry.attempts} attempts: {failure}; "
                    "is the S3 server up? Nothing was changed by this call"
                ) from failure
            time.sleep(delay)

    def error(self, what: str, key: str, exc: ClientError) -> RegistryError:
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        hint = ""
        if code == "NoSuchBucket":
            hint = f" (bucket {self.bucket!r} does not exist: is the S3 server up with its buckets created?)"
        elif code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            hint = " (check the S3 credentials in the environment)"
        return RegistryError(f"{what} {self.uri(key)} failed: {code}: {err.get('Message', '')}{hint}")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` when the key does not exist."""
        try:
            return self._attempt("read", key, lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return None
            raise self.error("read", key, exc) from exc

    def stream(self, key: str) -> Any:
        """The object's streaming body (for large files); :class:`RegistryError` when missing."""
        try:
            return self._attempt("download", key, lambda: self.s3.get_object(Bucket=self.bucket, Key=key)["Body"])
        except ClientError as exc:
            raise self.error("download", key, exc) from exc

    def create(self, key: str, body: bytes | Callable[[], IO[bytes]], *, content_type: str | None = None) -> bool:
        """Create ``key`` only if absent (``If-None-Match: *``); ``False`` means it already existed.

        ``body`` is bytes or a callable opening a fresh file handle (so a retry re-reads from the start).
        """
        return self._put(key, body, content_type=content_type, create_only=True)

    def overwrite(self, key: str, body: bytes) -> None:
        """A plain PUT; only for hints that may be rewritten (``champion.json``)."""
        self._put(key, body, content_type="application/json", create_only=False)

    def _put(self, key: str, body: bytes | Callable[[], IO[bytes]], *, content_type: str | None,
             create_only: bool) -> bool:  # fmt: skip
        def call() -> None:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if content_type:
                kwargs["ContentType"] = content_type
            if create_only:
                kwargs["IfNoneMatch"] = "*"
            if callable(body):
                with body() as fh:
                    self.s3.put_object(Body=fh, **kwargs)
            else:
                self.s3.put_object(Body=body, **kwargs)

        try:
            if callable(body) and _size(body) >= MULTIPART_THRESHOLD:
                self._put_parts(key, body, content_type=content_type, create_only=create_only)
            else:
                self._attempt("write", key, call)
            return True
        except ClientError as exc:
            if create_only and exc.response.get("Error", {}).get("Code") in _PRECONDITION_CODES:
                return False
            raise self.error("write", key, exc) from exc

    def _put_parts(self, key: str, body: Callable[[], IO[bytes]], *, content_type: str | None,
                   create_only: bool) -> None:  # fmt: skip
        """A multipart upload, each part retried on its own; the object appears only at the completion, which
        carries ``If-None-Match: *`` like a single PUT. Any failure aborts the upload, so no parts linger."""
        bucket, s3 = self.bucket, self.s3
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        upload_id = self._attempt("write", key, lambda: s3.create_multipart_upload(Bucket=bucket, Key=key, **extra))[
            "UploadId"
        ]
        try:
            parts: list[Any] = []  # {"ETag", "PartNumber"} each
            with body() as fh:
                while chunk := fh.read(PART_SIZE):
                    number = len(parts) + 1
                    send = partial(s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                   Body=chunk)  # fmt: skip
                    parts.append({"ETag": self._attempt("write", key, send)["ETag"], "PartNumber": number})
            condition: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
            finish = partial(s3.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id,
                             MultipartUpload={"Parts": parts}, **condition)  # fmt: skip
            self._attempt("write", key, finish)
        except BaseException:
            # the first error is the one to raise; the server's own expiry of stale uploads is the fallback
            with suppress(ClientError, BotoCoreError):
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted."""

        def call() -> list[str]:
            found: list[str] = []
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(obj["Key"] for obj in page.get("Contents", []))
            return sorted(found)

        try:
            return self._attempt("list", prefix, call)
        except ClientError as exc:
            raise self.error("list", prefix, exc) from exc

    def any(self, prefix: str) -> bool:
        """Whether anything exists under ``prefix`` (one cheap LIST of at most one key)."""
        try:
            resp = self._attempt(
                "list", prefix, lambda: self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
            )
        except ClientError as exc:
            raise self.error("list", prefix, exc) from exc
        return bool(resp.get("Contents"))


def _size(body: Callable[[], IO[bytes]]) -> int:
    """Bytes in the file ``body`` opens (seeked, not read)."""
    with body() as fh:
        return fh.seek(0, 2)
