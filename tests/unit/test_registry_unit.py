"""Registry error paths, pinned with botocore's Stubber: each test lists the exact S3 calls expected.

Why Stubber and not the real server: a race lost at one exact step, a crash between two writes
of a promotion, corrupt manifests and refused credentials cannot be produced on demand
against S3Proxy. The happy path and the visible-only-when-committed rule run on the real server in
``tests/integration/test_registry.py``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from recflow.registry import (
    ChecksumMismatch,
    ConcurrentPromotion,
    IncompleteModelVersion,
    ModelNotFound,
    ModelRegistry,
    RegistryError,
)

BUCKET = "models"
V = "als-20261124"
T0 = datetime(2026, 11, 24, tzinfo=UTC)
T1 = datetime(2026, 11, 25, tzinfo=UTC)
URI = f"s3://{BUCKET}/registry/versions/{V}/"
MANIFEST_KEY = f"registry/versions/{V}/manifest.json"
CHAMPION_KEY = "registry/champion.json"
AUDIT_KEY = f"registry/audit/20261125T000000.000000Z-{V}.json"
MODEL_BYTES = b'{"family": "als"}'
MODEL_SHA = "5f7b1ec6b09a7d1ffca5ee5a5ec55a8ac2f0e1925f2ab2b50a7e1f7f3c5c1f4a"  # deliberately wrong


def manifest(sha: str = MODEL_SHA, size: int = len(MODEL_BYTES), schema: int = 1) -> dict[str, Any]:
    return {
        "schema_version": schema,
        "version": V,
        "family": "als",
        "created_at": T0.isoformat(),
        "metrics": {"ndcg@10": 0.2},
        "lineage": {"code_version": "abc123"},
        "files": [{"path": "model.json", "sha256": sha, "size": size}],
    }


def pointer(version: str, previous: str | None, audit_key: str) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "version": version,
        "family": "als",
        "uri": f"s3://{BUCKET}/registry/versions/{version}/",
        "promoted_at": T1.isoformat(),
        "reason": "beats champion",
        "actor": "test",
        "previous": previous,
        "audit_key": audit_key,
    }


def body(data: bytes | dict[str, Any], etag: str = '"e1"') -> dict[str, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ETag": etag}


@pytest.fixture
def s3() -> Iterator[tuple[ModelRegistry, Stubber]]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with Stubber(client) as stub:
        yield ModelRegistry(client, BUCKET), stub
        stub.assert_no_pending_responses()


def get(key: str) -> dict[str, str]:
    return {"Bucket": BUCKET, "Key": key}


def missing(stub: Stubber, key: str) -> None:
    stub.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.", 404, get(key))


def listing(stub: Stubber, prefix: str, keys: list[str], max_keys: int | None = None) -> None:
    params: dict[str, Any] = {"Bucket": BUCKET, "Prefix": prefix}
    if max_keys:
        params["MaxKeys"] = max_keys
    stub.add_response("list_objects_v2", {"Contents": [{"Key": k} for k in keys]}, params)


# --------------------------------------------------------------------- get
def test_get_unknown_version(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    missing(stub, MANIFEST_KEY)
    listing(stub, f"registry/versions/{V}/", [], max_keys=1)
    with pytest.raises(ModelNotFound, match=f"'{V}' not found: nothing at {URI}"):
        reg.get(V)


def test_get_version_without_manifest_is_incomplete(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    missing(stub, MANIFEST_KEY)
    listing(stub, f"registry/versions/{V}/", [f"registry/versions/{V}/files/model.json"], max_keys=1)
    with pytest.raises(IncompleteModelVersion, match=f"at {URI} has no manifest.json"):
        reg.get(V)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "manifest.json: not valid JSON"),
        (b"[1, 2]", "manifest.json: expected a JSON object, got list"),
        ({"schema_version": 1, "version": V}, "manifest.json: malformed manifest"),
        (manifest(schema=2), "manifest schema_version 2 is newer than this code understands"),
        ({**manifest(), "version": "ncf-1"}, "manifest names version 'ncf-1', not 'als-20261124'"),
    ],
    ids=["not-json", "not-object", "missing-keys", "newer-schema", "wrong-version"],
)
def test_corrupt_manifest(s3: tuple[ModelRegistry, Stubber], payload: Any, message: str) -> None:
    reg, stub = s3
    stub.add_response("get_object", body(payload), get(MANIFEST_KEY))
    with pytest.raises(RegistryError, match=message) as err:
        reg.get(V)
    assert f"s3://{BUCKET}/{MANIFEST_KEY}" in str(err.value)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("NoSuchBucket", "bucket 'models' does not exist"),
        ("AccessDenied", "check the S3 credentials"),
        ("InternalError", "InternalError: boom"),
    ],
)
def test_server_errors_name_the_uri(s3: tuple[ModelRegistry, Stubber], code: str, hint: str) -> None:
    reg, stub = s3
    stub.add_client_error("get_object", code, "boom", 500, get(MANIFEST_KEY))
    with pytest.raises(RegistryError) as err:
        reg.get(V)
    assert f"read s3://{BUCKET}/{MANIFEST_KEY} failed: {code}" in str(err.value)
    assert hint in str(err.value)


def test_unreachable_endpoint_is_a_registry_error() -> None:
    """Nothing listens on port 1: the connection error is wrapped with the URI, not leaked raw."""
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(RegistryError, match=f"read s3://{BUCKET}/{MANIFEST_KEY} failed: Could not connect"):
        ModelRegistry(client, BUCKET).get(V)


# --------------------------------------------------------------------- argument checks (no S3 call)
@pytest.mark.parametrize("version", ["", "als/2026", "../x", "a b", "-x"])
def test_bad_version_ids(s3: tuple[ModelRegistry, Stubber], version: str) -> None:
    with pytest.raises(ValueError, match="must match"):
        s3[0].get(version)


def test_naive_datetimes_are_refused(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    (tmp_path / "model.json").write_bytes(MODEL_BYTES)
    with pytest.raises(ValueError, match="created_at must be a time-zone-aware datetime"):
        s3[0].register(tmp_path, version=V, family="als", metrics={}, lineage={}, created_at=datetime(2026, 1, 1))


def test_register_refuses_empty_folder_and_bad_lineage(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    reg = s3[0]
    with pytest.raises(RegistryError, match=f"cannot register {V} to {URI}: .* has no files"):
        reg.register(tmp_path, version=V, family="als", metrics={}, lineage={}, created_at=T0)
    (tmp_path / "model.json").write_bytes(MODEL_BYTES)
    with pytest.raises(ValueError, match="lineage JSON-serializable"):
        reg.register(tmp_path, version=V, family="als", metrics={}, lineage={"x": object()}, created_at=T0)
    with pytest.raises(ValueError, match="metrics must be finite"):
        reg.register(tmp_path, version=V, family="als", metrics={"ndcg@10": float("nan")}, lineage={}, created_at=T0)


def test_register_normalises_created_at_to_utc(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    """The same instant in another zone is the same manifest: a re-run elsewhere stays idempotent."""
    reg, stub = s3
    (tmp_path / "model.json").write_bytes(MODEL_BYTES)
    plus2 = T0.astimezone(timezone(timedelta(hours=2)))
    stored = (
        json.dumps({**manifest(sha=_sha(MODEL_BYTES)), "metrics": {}, "lineage": {}}, sort_keys=True, indent=2).encode()
        + b"\n"
    )
    stub.add_response("get_object", body(stored), get(MANIFEST_KEY))
    mv = reg.register(tmp_path, version=V, family="als", metrics={}, lineage={}, created_at=plus2)
    assert mv.created_at.tzinfo is UTC  # and no upload happened: the stubber has no put queued


# --------------------------------------------------------------------- download
def test_download_checksum_mismatch_leaves_no_folder(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    reg, stub = s3
    stub.add_response("get_object", body(manifest()), get(MANIFEST_KEY))
    stub.add_response("get_object", body(MODEL_BYTES), get(f"registry/versions/{V}/files/model.json"))
    dest = tmp_path / "model"
    with pytest.raises(ChecksumMismatch, match=f"s3://{BUCKET}/registry/versions/{V}/files/model.json: got sha256"):
        reg.download(V, dest)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is cleaned up too


def test_download_refuses_non_empty_destination(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    reg, stub = s3
    stub.add_response("get_object", body(manifest()), get(MANIFEST_KEY))
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match="is not an empty folder"):
        reg.download(V, tmp_path)


def test_download_refuses_paths_escaping_the_folder(s3: tuple[ModelRegistry, Stubber], tmp_path: Path) -> None:
    reg, stub = s3
    doc = manifest()
    doc["files"][0]["path"] = "../../etc/evil"
    stub.add_response("get_object", body(doc), get(MANIFEST_KEY))
    with pytest.raises(RegistryError, match="escapes the folder"):
        reg.download(V, tmp_path / "model")


# --------------------------------------------------------------------- promote
A0 = "registry/audit/20261123T000000.000000Z-ncf-20261123.json"  # the current champion's audit record
P0 = pointer("ncf-20261123", None, A0)


def _committed(stub: Stubber) -> None:
    stub.add_response("get_object", body(manifest()), get(MANIFEST_KEY))


def _put(key: str, **extra: str) -> dict[str, Any]:
    return {"Bucket": BUCKET, "Key": key, "Body": ANY, "ContentType": "application/json", **extra}


def _link(after: str | None) -> str:
    return "registry/chain/after-" + ("genesis.json" if after is None else after.rsplit("/", 1)[1])


def _tip(stub: Stubber, *records: dict[str, Any] | None) -> None:
    """champion.json (or missing), then each chain link that follows it, ending with a missing link."""
    ptr = records[0]
    if ptr is None:
        missing(stub, CHAMPION_KEY)
    else:
        stub.add_response("get_object", body(ptr), get(CHAMPION_KEY))
    last = None if ptr is None else ptr["audit_key"]
    for rec in records[1:]:
        assert rec is not None
        stub.add_response("get_object", body(rec), get(_link(last)))
        last = rec["audit_key"]
    missing(stub, _link(last))


def ours(previous: str | None = "ncf-20261123", previous_audit: str | None = A0) -> dict[str, Any]:
    return {**pointer(V, previous, AUDIT_KEY), "previous_audit_key": previous_audit}


def test_promote_refuses_incomplete_version(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    missing(stub, MANIFEST_KEY)
    listing(stub, f"registry/versions/{V}/", [f"registry/versions/{V}/files/model.json"], max_keys=1)
    with pytest.raises(IncompleteModelVersion):
        reg.promote(V, reason="r", actor="test", promoted_at=T1)


def test_promote_writes_audit_then_link_then_pointer(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, P0)
    stub.add_response("put_object", {}, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("put_object", {}, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response("put_object", {}, _put(CHAMPION_KEY))
    record = reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)
    assert (record.previous, record.previous_audit_key, record.audit_key) == ("ncf-20261123", A0, AUDIT_KEY)


def test_promote_lost_race(s3: tuple[ModelRegistry, Stubber]) -> None:
    """Another promoter created the successor link of the same champion first: decide again."""
    reg, stub = s3
    _committed(stub)
    _tip(stub, P0)
    stub.add_response("put_object", {}, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response(
        "get_object", body(pointer("pop-20261124", "ncf-20261123", "registry/audit/x.json")), get(_link(A0))
    )
    with pytest.raises(ConcurrentPromotion, match=rf"{re.escape(_link(A0))} already names 'pop-20261124'"):
        reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)


def test_first_promotion_race_on_genesis(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, None)
    stub.add_response("put_object", {}, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(_link(None), IfNoneMatch="*"))
    stub.add_response("get_object", body(pointer("pop-20261124", None, "registry/audit/x.json")), get(_link(None)))
    with pytest.raises(ConcurrentPromotion, match="as successor of champion None"):
        reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)


def test_promote_audit_key_taken_by_another_promotion(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, P0)
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("get_object", body({**ours(), "reason": "manual override", "actor": "alice"}), get(AUDIT_KEY))
    with pytest.raises(RegistryError, match=r"already exists for a different promotion .*'manual override' by 'alice'"):
        reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)


def test_retry_after_crash_before_link_finishes(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, P0)
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(AUDIT_KEY))
    stub.add_response("put_object", {}, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response("put_object", {}, _put(CHAMPION_KEY))
    record = reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)
    assert (record.version, record.previous) == (V, "ncf-20261123")


def test_retry_after_crash_before_pointer_finishes(s3: tuple[ModelRegistry, Stubber]) -> None:
    """Audit and link exist, champion.json still names the old champion: only the pointer is written."""
    reg, stub = s3
    _committed(stub)
    _tip(stub, P0, ours())
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(AUDIT_KEY))
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(_link(A0)))
    _tip(stub, P0, ours())
    stub.add_response("put_object", {}, _put(CHAMPION_KEY))
    assert reg.promote(V, reason="beats champion", actor="test", promoted_at=T1).previous == "ncf-20261123"


def test_retry_of_a_finished_promotion_writes_nothing(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, ours())
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(AUDIT_KEY))
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(_link(A0)))
    _tip(stub, ours())
    assert reg.promote(V, reason="beats champion", actor="test", promoted_at=T1).audit_key == AUDIT_KEY


def test_retry_after_champion_moved_is_refused(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    p1 = pointer("pop-20261124", "ncf-20261123", "registry/audit/20261124T000000.000000Z-pop-20261124.json")
    _committed(stub)
    _tip(stub, p1)
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(AUDIT_KEY, IfNoneMatch="*"))
    stub.add_response("get_object", body(ours()), get(AUDIT_KEY))
    stub.add_client_error("put_object", "PreconditionFailed", "exists", 412, _put(_link(A0), IfNoneMatch="*"))
    stub.add_response("get_object", body(p1), get(_link(A0)))
    with pytest.raises(ConcurrentPromotion, match="already names 'pop-20261124'"):
        reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)


def test_promote_write_refused(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _committed(stub)
    _tip(stub, None)
    stub.add_client_error("put_object", "AccessDenied", "denied", 403, _put(AUDIT_KEY, IfNoneMatch="*"))
    with pytest.raises(RegistryError, match=f"write s3://{BUCKET}/{AUDIT_KEY} failed: AccessDenied"):
        reg.promote(V, reason="beats champion", actor="test", promoted_at=T1)


def test_champion_follows_the_chain_past_a_stale_pointer(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    _tip(stub, P0, ours())
    record = reg.champion_record()
    assert record is not None and record.version == V


def test_malformed_champion_pointer(s3: tuple[ModelRegistry, Stubber]) -> None:
    reg, stub = s3
    stub.add_response("get_object", body({"version": V}), get(CHAMPION_KEY))
    with pytest.raises(RegistryError, match=f"s3://{BUCKET}/{CHAMPION_KEY}: malformed promotion record"):
        reg.champion()


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
