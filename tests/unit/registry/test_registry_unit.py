"""Registry error paths a real S3 server cannot be made to produce on demand: lost answers, server
errors with codes, malformed documents, bad arguments. The happy paths, races and tampering run against
the real server in ``tests/integration/test_registry.py``.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from recflow.registry import (
    ChecksumMismatch,
    ModelRegistry,
    RegistryError,
    RegistryUnavailable,
    RetryPolicy,
    resolve_serving_version,
)

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.01)


class FakeS3:
    """In-memory S3 honouring ``IfNoneMatch``; ``hooks`` run before a PUT of a key with that suffix."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.hooks: dict[str, Callable[[str], None]] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: Any, IfNoneMatch: str | None = None, **_: Any) -> Any:
        data = Body if isinstance(Body, bytes) else Body.read()
        for suffix, hook in list(self.hooks.items()):
            if Key.endswith(suffix):
                hook(Key)
        if IfNoneMatch == "*" and Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "exists"}}, "PutObject")
        self.objects[Key] = data
        return {}

    def get_object(self, *, Bucket: str, Key: str) -> Any:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "missing"}}, "GetObject")

        class Body(io.BytesIO):
            def iter_chunks(self, size: int) -> Any:
                return iter(lambda: self.read(size), b"")

        return {"Body": Body(self.objects[Key])}

    def list_objects_v2(self, *, Bucket: str, Prefix: str, MaxKeys: int = 1000) -> Any:
        return {"Contents": [{"Key": k} for k in sorted(self.objects) if k.startswith(Prefix)][:MaxKeys]}

    def get_paginator(self, name: str) -> Any:
        outer = self

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str) -> list[Any]:
                return [outer.list_objects_v2(Bucket=Bucket, Prefix=Prefix)]

        return Paginator()


def model_dir(tmp_path: Path, tag: str = "a") -> Path:
    (tmp_path / tag).mkdir()
    (tmp_path / tag / "model.json").write_text(f'{{"tag": "{tag}"}}')
    return tmp_path / tag


def reg_with(s3: FakeS3) -> ModelRegistry:
    return ModelRegistry(s3, "models", retry=FAST)  # type: ignore[arg-type]


DAY = datetime.fromisoformat("2026-11-24T00:00:00+00:00")


def register(reg: ModelRegistry, folder: Path) -> Any:
    return reg.register(folder, family="als", metrics={"ndcg@10": 0.2}, lineage={}, created_at=DAY)


def test_a_refused_link_write_is_retried(tmp_path: Path) -> None:
    """The first write of the link never reached the server: it is retried and succeeds."""
    s3 = FakeS3()
    reg = reg_with(s3)
    mv = register(reg, model_dir(tmp_path))
    calls = {"n": 0}

    def refuse_first(key: str) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise EndpointConnectionError(endpoint_url="http://s3")

    s3.hooks["chain/after-genesis.json"] = refuse_first
    record = reg.chain.swap(mv.version, expected_champion=None, reason="r", actor="t")
    assert calls["n"] == 2 and resolve_serving_version(reg).digest == record.digest


def test_created_then_answer_lost_is_not_a_false_conflict(tmp_path: Path) -> None:
    """The link was stored but the answer was lost; the retried create finds its own record."""
    s3 = FakeS3()
    reg = reg_with(s3)
    mv = register(reg, model_dir(tmp_path))
    state = {"done": False}

    def write_then_fail(key: str) -> None:
        if not state["done"]:
            state["done"] = True
            audit = next(k for k in s3.objects if "/audit/" in k)
            s3.objects[key] = s3.objects[audit]  # the server stored it ...
            raise EndpointConnectionError(endpoint_url="http://s3")  # ... and the answer never came

    s3.hooks["chain/after-genesis.json"] = write_then_fail
    record = reg.chain.swap(mv.version, expected_champion=None, reason="r", actor="t")
    assert [r.version for r in reg.history()] == [record.version]


def test_server_down_is_retried_then_a_clear_failure(tmp_path: Path) -> None:
    """A closed port: every call is retried with backoff, then RegistryUnavailable names the URI."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    reg = ModelRegistry(client, "models", retry=FAST)
    with pytest.raises(RegistryUnavailable, match=r"read s3://models/registry/champion.json failed after 3 attempts"):
        reg.champion_record()


@pytest.mark.parametrize(
    ("code", "hint"),
    [("NoSuchBucket", "does not exist"), ("AccessDenied", "credentials")],
)
def test_server_errors_name_the_uri_and_a_hint(code: str, hint: str, tmp_path: Path) -> None:
    s3 = FakeS3()

    def refuse(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "no"}}, "GetObject")

    s3.get_object = refuse  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match=rf"s3://models/registry/champion.json failed: {code}.*{hint}"):
        reg_with(s3).champion_record()


@pytest.mark.parametrize(
    ("payload", "message"),
    [(b"not json", "not valid JSON"), (b"[]", "expected a JSON object"), (b'{"schema_version": 2}', "malformed")],
)
def test_corrupt_documents_are_clear_errors(payload: bytes, message: str) -> None:
    s3 = FakeS3()
    s3.objects["registry/champion.json"] = payload
    with pytest.raises(RegistryError, match=message):
        reg_with(s3).champion_record()


def test_old_manifest_schema_is_refused_with_advice(tmp_path: Path) -> None:
    s3 = FakeS3()
    reg = reg_with(s3)
    mv = register(reg, model_dir(tmp_path))
    key = f"registry/versions/{mv.version}/manifest.json"
    s3.objects[key] = s3.objects[key].replace(b'"schema_version": 2', b'"schema_version": 1')
    with pytest.raises(RegistryError, match="train again"):
        reg.get(mv.version)


@pytest.mark.parametrize("version", ["", "../x", "a/b", "x" * 200, "-lead", "als-20261110T0000-3f9a2c1b7e04\n"])
def test_bad_version_ids(version: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        reg_with(FakeS3()).get(version)


def test_bad_arguments(tmp_path: Path) -> None:
    reg = reg_with(FakeS3())
    folder = model_dir(tmp_path)
    with pytest.raises(ValueError, match="time-zone-aware"):
        reg.register(folder, family="als", metrics={}, lineage={}, created_at=datetime(2026, 11, 24))
    with pytest.raises(ValueError, match="not valid JSON"):
        reg.register(folder, family="als", metrics={"x": float("nan")}, lineage={}, created_at=DAY)
    with pytest.raises(ValueError, match="family"):
        reg.register(folder, family="ALS", metrics={}, lineage={}, created_at=DAY)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="has no files"):
        reg.register(tmp_path / "empty", family="als", metrics={}, lineage={}, created_at=DAY)
    mv = register(reg, folder)
    with pytest.raises(ValueError, match="needs a reason"):
        reg.chain.swap(mv.version, expected_champion=None, reason=" ", actor="t")
    with pytest.raises(ValueError, match="at most one of pinned, at and interval_end"):
        resolve_serving_version(reg, pinned=mv.version, at=DAY)
    with pytest.raises(ValueError, match="at most one of pinned, at and interval_end"):
        resolve_serving_version(reg, at=DAY, interval_end=DAY)


def test_fetch_refuses_paths_escaping_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = FakeS3()
    reg = reg_with(s3)
    mv = register(reg, model_dir(tmp_path))
    key = f"registry/versions/{mv.version}/manifest.json"
    s3.objects[key] = s3.objects[key].replace(b'"path": "model.json"', b'"path": "../../evil"')
    with pytest.raises(ChecksumMismatch, match="rewritten after registration"):
        reg.get(mv.version)  # the rewritten manifest no longer hashes to its id
    # ... and if a forger found content with the same 12 hex (a 48-bit second preimage), the path check holds
    monkeypatch.setattr("recflow.registry.version_store.check_identity", lambda model: None)
    tampered = reg.get(mv.version)
    with pytest.raises(RegistryError, match="escapes the folder"):
        reg.fetch(tampered, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
