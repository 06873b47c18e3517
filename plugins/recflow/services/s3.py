"""S3Proxy with its filesystem backend: a real S3 HTTP server, objects stored as plain files.

Why S3Proxy: it is on Maven Central (one fat jar, the same toolchain as Kafka), speaks SigV4 with
path-style addressing, and honours ``If-None-Match: *`` on PUT, which the model registry uses to never
overwrite a published version. Credentials go into the properties file, never onto the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from recflow.config.s3 import S3Settings, s3_client
from recflow.services import maven
from recflow.services.process import LOCALHOST, ServiceError

log = logging.getLogger(__name__)

HEAP = "512m"
MAIN_CLASS = "org.gaul.s3proxy.Main"


def render_s3proxy_conf(*, port: int, basedir: Path, identity: str, credential: str) -> str:
    """``s3proxy.conf``: filesystem backend under ``basedir``, SigV2/V4 auth, listening on 127.0.0.1."""
    props = {
        "s3proxy.endpoint": f"http://{LOCALHOST}:{port}",
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": identity,
        "s3proxy.credential": credential,
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(basedir),
    }
    lines = ["# Written by `recflow services up`; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def s3proxy_argv(java: str, jar: Path, conf: Path, heap: str = HEAP) -> list[str]:
    return [
        java,
        f"-Xmx{heap}",
        "-Djava.awt.headless=true",
        "-cp",
        str(jar),
        MAIN_CLASS,
        "--properties",
        str(conf),
    ]


def create_buckets(s3: S3Settings, buckets: tuple[str, ...]) -> None:
    """Create ``buckets`` unless they exist."""
    from botocore.exceptions import ClientError

    client = s3_client(s3)
    for bucket in buckets:
        try:
            client.create_bucket(Bucket=bucket)
            log.info("created bucket %s", bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            }:
                raise ServiceError(f"could not create bucket {bucket}: {exc}") from exc


@dataclass(frozen=True)
class S3ProxyService:
    """The object store as a managed service: config in ``<state>/s3proxy``, objects in ``<state>/s3data``."""

    settings: S3Settings
    state: Path
    port: int
    name: str = "s3"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def home(self) -> Path:
        return self.state / "s3proxy"

    @property
    def basedir(self) -> Path:
        return self.state / "s3data"

    @property
    def local(self) -> S3Settings:
        """The settings' credentials aimed at the server we manage (settings may point elsewhere)."""
        return dataclasses.replace(self.settings, endpoint_url=f"http://{LOCALHOST}:{self.port}")

    def prepare(self) -> list[str]:
        java = maven.require_tool("java")
        jars = maven.resolve(maven.S3PROXY, self.state)
        found = sorted(jars.glob("s3proxy-*-jar-with-dependencies.jar"))
        if not found:
            raise ServiceError(f"no s3proxy jar-with-dependencies in {jars}; delete that folder and retry")
        self.home.mkdir(parents=True, exist_ok=True)
        self.basedir.mkdir(parents=True, exist_ok=True)
        conf = self.home / "s3proxy.conf"
        text = render_s3proxy_conf(
            port=self.port,
            basedir=self.basedir,
            identity=self.settings.access_key,
            credential=self.settings.secret_key,
        )
        # Holds the secret: create it readable by the owner only.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return s3proxy_argv(java, found[-1], conf)

    def probe(self, timeout: float = 5.0) -> str:
        """Raise unless a signed ListBuckets succeeds; return a short description."""
        client = s3_client(self.local, connect_timeout=timeout, read_timeout=timeout, max_attempts=1)
        buckets = client.list_buckets().get("Buckets", [])
        return f"{len(buckets)} buckets"

    def provision(self) -> None:
        create_buckets(self.local, self.settings.buckets)
