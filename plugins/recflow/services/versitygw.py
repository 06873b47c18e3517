"""versitygw: the local S3 server that holds several identities (opt-in: ``RECFLOW_S3_SERVER=versitygw``).

Why versitygw (Apache-2.0) and not S3Proxy or SeaweedFS: S3Proxy holds one identity, so it cannot show
that the scorer's key is refused where the promoter's succeeds. versitygw's internal IAM holds many
accounts, and it evaluates AWS-shaped bucket policies whose principals are those accounts
(:mod:`recflow.services.s3_policies`), with conditional PUT (``If-None-Match: *``), bucket versioning and
Object Lock on its POSIX backend. It is one Go module without ``replace`` directives, so
``go install github.com/versity/versitygw/cmd/versitygw@<version>`` builds it; SeaweedFS's go.mod has
``replace`` directives (``go install`` refuses it) and its wrapper-module build takes ~7 min and ~2.7 GB.
The numbers of this build are in ``docs/deployment.md``.

The binary is built once per machine into ``<state>/bin/versitygw-<version>/`` (a file lock keeps
concurrent first starts to one build). The Go toolchain is the one on PATH when it is new enough, else
Go's own toolchain module from the Go module proxy, unpacked under ``<state>/go/``.

Identities: the administrator key of ``credentials.json`` is the server's root (passed in the
environment, never on the command line); the four role keys of :mod:`recflow.config.identities` are
written into its IAM file (mode 0600) before start.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recflow.config.identities import Identity
from recflow.config.s3 import S3Settings, s3_client
from recflow.services.process import LOCALHOST, ServiceError, file_lock
from recflow.services.s3 import create_buckets
from recflow.services.s3_policies import bucket_policies, object_lock_configuration

log = logging.getLogger(__name__)

VERSION = "v1.8.0"
PACKAGE = "github.com/versity/versitygw/cmd/versitygw"
#: versitygw v1.8.0's go.mod says ``go 1.25.0``; the toolchain fetched when the machine's Go is older.
GO_MIN = (1, 25)
GO_TOOLCHAIN = "go1.25.14"
#: The checksum database's hash of that toolchain module (``sum.golang.org``, as ``go`` itself checks it).
GO_TOOLCHAIN_H1 = "h1:XriDgll2yv4W2YeUo2X/WuUuy+iGJkXGH0CQloMBEXo="
GO_PROXY = "https://proxy.golang.org"
BUILD_TIMEOUT = 3600.0


def binary_path(state: Path, version: str = VERSION) -> Path:
    """Where the build of ``version`` is cached (one per state folder, so once per machine in practice)."""
    return state / "bin" / f"versitygw-{version}" / "versitygw"


def _go_version(go: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    return (int(found[1]), int(found[2])) if found else None


def module_zip_hash(zf: zipfile.ZipFile) -> str:
    """Go's ``h1:`` hash of a module zip (``golang.org/x/mod/sumdb/dirhash.Hash1``), to check a download."""
    lines = [
        f"{hashlib.sha256(zf.read(name)).hexdigest()}  {name}\n"
        for name in sorted(n for n in zf.namelist() if not n.endswith("/"))
    ]
    return "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()


def go_toolchain(state: Path) -> Path:
    """A ``go`` of at least :data:`GO_MIN`: the one on PATH, else the toolchain module from the Go proxy.

    Why the proxy's toolchain module: Debian's ``golang-go`` is older than versitygw needs, and the Go
    module proxy is the one Go download every machine that builds Go modules can reach. The zip is checked
    against the checksum database's hash (:data:`GO_TOOLCHAIN_H1`) before anything in it runs.
    """
    on_path = shutil.which("go")
    if on_path and (_go_version(on_path) or (0, 0)) >= GO_MIN:
        return Path(on_path)
    root = state / "go" / GO_TOOLCHAIN
    go = root / "bin" / "go"
    if go.exists():
        return go
    name = f"v0.0.1-{GO_TOOLCHAIN}.linux-amd64"
    url = f"{GO_PROXY}/golang.org/toolchain/@v/{name}.zip"
    log.info("fetching the Go toolchain %s from %s", GO_TOOLCHAIN, url)
    state.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".go-", dir=state))
    try:
        archive = tmp / "go.zip"
        with urllib.request.urlopen(url, timeout=600) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        with zipfile.ZipFile(archive) as zf:
            found = module_zip_hash(zf)
            if found != GO_TOOLCHAIN_H1:
                raise ServiceError(f"{url} has hash {found}, the checksum database says {GO_TOOLCHAIN_H1}: refused")
            zf.extractall(tmp / "x")
        unpacked = tmp / "x" / f"golang.org/toolchain@{name}"
        for tool in (unpacked / "bin").iterdir():
            tool.chmod(0o755)
        for tool in (unpacked / "pkg" / "tool").rglob("*"):
            if tool.is_file():
                tool.chmod(0o755)
        root.parent.mkdir(parents=True, exist_ok=True)
        unpacked.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return go


def ensure_binary(state: Path, version: str = VERSION) -> Path:
    """The versitygw binary of ``version``, built with ``go install`` on first use (minutes, once)."""
    target = binary_path(state, version)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / ".build.lock"):
        if target.exists():  # a concurrent start built it while we waited
            return target
        go = go_toolchain(state)
        gobin = Path(tempfile.mkdtemp(prefix=".gobin-", dir=target.parent))
        env = {**os.environ, "GOBIN": str(gobin), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
        env["PATH"] = f"{go.parent}{os.pathsep}{env.get('PATH', '')}"
        started = time.monotonic()
        log.info("building versitygw %s with %s (once per machine; a few minutes)", version, go)
        try:
            done = subprocess.run([str(go), "install", f"{PACKAGE}@{version}"], env=env, capture_output=True,
                                  text=True, timeout=BUILD_TIMEOUT)  # fmt: skip
            if done.returncode != 0:
                raise ServiceError(f"go install {PACKAGE}@{version} failed:\n{done.stderr[-4000:]}")
            (gobin / "versitygw").rename(target)
        finally:
            shutil.rmtree(gobin, ignore_errors=True)
        log.info("built %s in %.0f s", target, time.monotonic() - started)
    return target


def render_iam(identities: Mapping[str, Identity]) -> str:
    """The internal IAM file (``users.json``): one plain ``user`` account per role, no admin among them."""
    accounts = {
        i.access_key: {
            "access": i.access_key,
            "secret": i.secret_key,
            "role": "user",
            "userID": 0,
            "groupID": 0,
            "projectID": 0,
        }
        for i in identities.values()
    }
    return json.dumps({"accessAccounts": accounts}, indent=2, sort_keys=True)


def versitygw_argv(binary: Path, *, port: int, iam_dir: Path, data: Path, versions: Path) -> list[str]:
    """The command: 127.0.0.1 only, internal IAM, POSIX backend with a versioning folder."""
    return [str(binary), "--port", f"{LOCALHOST}:{port}", "--iam-dir", str(iam_dir), "--quiet",
            "posix", "--versioning-dir", str(versions), str(data)]  # fmt: skip


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


@dataclass(frozen=True)
class VersityService:
    """The object store with one identity per role: files in ``<state>/<name>/``, the build cached.

    ``settings`` carries the administrator (root) key; ``identities`` the roles' keys. ``registry_prefix``
    and ``lake_prefix`` place the policies' resources (see :func:`recflow.services.s3_policies.bucket_policies`).
    """

    settings: S3Settings
    state: Path
    port: int
    identities: Mapping[str, Identity]
    name: str = "s3"
    registry_prefix: str = "registry"
    lake_prefix: str = "lake"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def home(self) -> Path:
        return self.state / ("versitygw" if self.name == "s3" else self.name)

    @property
    def local(self) -> S3Settings:
        """The root's credentials aimed at the server we manage."""
        return dataclasses.replace(self.settings, endpoint_url=f"http://{LOCALHOST}:{self.port}")

    def prepare(self) -> list[str]:
        binary = ensure_binary(self.state)
        iam, data, versions = self.home / "iam", self.home / "data", self.home / "versions"
        for folder in (iam, data, versions):
            folder.mkdir(parents=True, exist_ok=True)
        _write_private(iam / "users.json", render_iam(self.identities))
        return versitygw_argv(binary, port=self.port, iam_dir=iam, data=data, versions=versions)

    def environment(self) -> dict[str, str]:
        """Our environment plus the root key (versitygw reads ``ROOT_ACCESS_KEY_ID`` / ``ROOT_SECRET_ACCESS_KEY``)."""
        return {**os.environ, "ROOT_ACCESS_KEY_ID": self.settings.access_key,
                "ROOT_SECRET_ACCESS_KEY": self.settings.secret_key}  # fmt: skip

    def probe(self, timeout: float = 5.0) -> str:
        """Raise unless the root's signed ListBuckets succeeds; return a short description."""
        client = s3_client(self.local, connect_timeout=timeout, read_timeout=timeout, max_attempts=1)
        buckets = client.list_buckets().get("Buckets", [])
        return f"{len(buckets)} buckets, {len(self.identities)} role identities"

    def provision(self) -> None:
        """Buckets (the models bucket versioned, with Object Lock) and each bucket's role policy."""
        from botocore.exceptions import ClientError

        client = s3_client(self.local)
        models = self.settings.models_bucket
        try:
            client.create_bucket(Bucket=models, ObjectLockEnabledForBucket=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise ServiceError(f"could not create bucket {models}: {exc}") from exc
        create_buckets(self.local, self.settings.buckets)
        client.put_bucket_versioning(Bucket=models, VersioningConfiguration={"Status": "Enabled"})
        client.put_object_lock_configuration(Bucket=models, ObjectLockConfiguration=object_lock_configuration())  # type: ignore[arg-type]
        policies = bucket_policies(self.settings, self.identities, registry_prefix=self.registry_prefix,
                                   lake_prefix=self.lake_prefix)  # fmt: skip
        for bucket, policy in policies.items():
            client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
