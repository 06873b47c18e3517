"""Clients for the S3-compatible object store (the model registry, the lake and reports use it).

Why one helper: the local server (S3Proxy) and most S3-compatible stores want path-style addressing
(``http://host:port/bucket/key``; virtual-host style would need DNS for ``bucket.127.0.0.1``) and
SigV4, and every caller must sign with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class S3Settings:
    """Where the S3-compatible object store listens and how to sign requests to it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    models_bucket: str = "recflow-models"
    lake_bucket: str = "recflow-lake"
    reports_bucket: str = "recflow-reports"

    @property
    def buckets(self) -> tuple[str, ...]:
        return (self.models_bucket, self.lake_bucket, self.reports_bucket)


def s3_client(
    s3: S3Settings,
    *,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 3,
) -> S3Client:
    """A boto3 S3 client for ``s3.endpoint_url``: path-style addressing, signature v4.

    Timeouts are in seconds; ``max_attempts`` counts the first try (1 = no retries, for health probes).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
    )
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
        config=config,
    )
