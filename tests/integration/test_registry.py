"""The model registry against the real S3 server (S3Proxy, filesystem backend): no mocks.

Each test works under its own prefix in the models bucket, so the demo's ``registry/`` champion is never
touched and tests can run in any order; the prefix is deleted afterwards.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recflow.config import Settings
from recflow.registry import (
    ChecksumMismatch,
    ConcurrentPromotion,
    IncompleteModelVersion,
    ModelNotFound,
    ModelRegistry,
    RegistryError,
)
from recflow.storage import s3_client

pytestmark = pytest.mark.integration

DAY = datetime(2026, 11, 24, tzinfo=UTC)
LINEAGE = {
    "input_partitions": ["event_date=2026-11-23"],
    "params": {"rank": 16},
    "code_version": "0123abc",
    "spark_app_id": "local-1",
    "timings_s": {"train": 1.5},
}


@pytest.fixture
def registry(live_services: Settings) -> Iterator[ModelRegistry]:
    prefix = f"it-registry-{uuid.uuid4().hex[:10]}"
    reg = ModelRegistry.from_settings(live_services, prefix=prefix)
    yield reg
    client = s3_client(live_services.s3)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=reg.bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=reg.bucket, Key=obj["Key"])


def artifact(folder: Path, tag: str, extra: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(f'{{"family": "als", "tag": "{tag}"}}')
    (folder / "factors").mkdir(exist_ok=True)
    # larger than boto3's 8 MiB multipart threshold would be slow here; 1 MiB of varied bytes suffices
    (folder / "factors" / "items.npy").write_bytes(hashlib.sha256(tag.encode()).digest() * 32768)
    if extra:
        (folder / "users.json").write_text('["u1", "u2"]')
    return folder


def register(reg: ModelRegistry, folder: Path, version: str, family: str = "als", **kw: Any) -> Any:
    return reg.register(
        folder,
        version=version,
        family=family,
        metrics=kw.pop("metrics", {"ndcg@10": 0.2, "precision@10": 0.05}),
        lineage=LINEAGE,
        created_at=kw.pop("created_at", DAY),
        **kw,
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip(registry: ModelRegistry, live_services: Settings, tmp_path: Path) -> None:
    als = artifact(tmp_path / "als", "als")
    ncf = artifact(tmp_path / "ncf", "ncf", extra=False)
    mv = register(registry, als, "als-20261124")
    register(registry, ncf, "ncf-20261124", family="ncf", created_at=DAY + timedelta(seconds=1))

    assert mv.uri == f"s3://{live_services.s3.models_bucket}/{registry.prefix}/versions/als-20261124/"
    assert [v.version for v in registry.list_versions()] == ["als-20261124", "ncf-20261124"]
    assert [v.version for v in registry.list_versions(family="ncf")] == ["ncf-20261124"]
    got = registry.get("als-20261124")
    assert got == mv
    assert got.lineage["code_version"] == "0123abc"
    assert [(f.path, f.size) for f in got.files] == [
        ("factors/items.npy", 1048576),
        ("model.json", len((als / "model.json").read_bytes())),
        ("users.json", 12),
    ]

    out = registry.download("als-20261124", tmp_path / "downloaded" / "als")
    assert files_under(out) == files_under(als)

    assert registry.champion() is None
    first = registry.promote("als-20261124", reason="first model", actor="it", promoted_at=DAY)
    assert first.previous is None
    assert registry.champion() == mv
    second = registry.promote("ncf-20261124", reason="beats als", actor="it", promoted_at=DAY + timedelta(days=1))
    assert second.previous == "als-20261124"
    assert registry.champion() == registry.get("ncf-20261124")
    pointer = registry.champion_record()
    assert pointer is not None and pointer.uri == registry.uri("ncf-20261124")

    log = registry.audit_log()
    assert [(r["version"], r["previous"], r["reason"]) for r in log] == [
        ("als-20261124", None, "first model"),
        ("ncf-20261124", "als-20261124", "beats als"),
    ]

    # any S3 client sees the champion pointer and the manifest-last layout
    client = s3_client(live_services.s3)
    keys = {
        o["Key"][len(registry.prefix) + 1 :]
        for o in client.list_objects_v2(Bucket=registry.bucket, Prefix=registry.prefix + "/")["Contents"]
    }
    assert {
        "champion.json",
        "versions/als-20261124/manifest.json",
        "versions/als-20261124/files/model.json",
    } <= keys


def test_incomplete_version_is_invisible(registry: ModelRegistry, live_services: Settings, tmp_path: Path) -> None:
    register(registry, artifact(tmp_path / "ok", "ok"), "als-20261123")
    client = s3_client(live_services.s3)
    # an upload that died before its manifest: files only
    client.put_object(
        Bucket=registry.bucket, Key=f"{registry.prefix}/versions/als-20261124/files/model.json", Body=b"{}"
    )

    assert [v.version for v in registry.list_versions()] == ["als-20261123"]
    with pytest.raises(IncompleteModelVersion, match=registry.uri("als-20261124")):
        registry.get("als-20261124")
    with pytest.raises(IncompleteModelVersion):
        registry.promote("als-20261124", reason="should fail", actor="it", promoted_at=DAY)
    with pytest.raises(ModelNotFound, match=registry.uri("als-20990101")):
        registry.get("als-20990101")
    assert registry.champion() is None
    assert registry.audit_log() == []


def test_reregister_is_idempotent_and_replaces(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a", "run-1")
    first = register(registry, folder, "als-20261124")
    client = s3_client(live_services.s3)
    manifest_key = f"{registry.prefix}/versions/als-20261124/manifest.json"
    stamp = client.head_object(Bucket=registry.bucket, Key=manifest_key)["LastModified"]

    assert register(registry, folder, "als-20261124") == first  # identical re-run: nothing rewritten
    assert client.head_object(Bucket=registry.bucket, Key=manifest_key)["LastModified"] == stamp

    # a re-run of the same interval with different output: files replaced, stale file removed
    rerun = artifact(tmp_path / "b", "run-2", extra=False)
    second = register(registry, rerun, "als-20261124", metrics={"ndcg@10": 0.25})
    assert second.metrics == {"ndcg@10": 0.25}
    assert [v.version for v in registry.list_versions()] == ["als-20261124"]
    assert registry.get("als-20261124") == second
    out = registry.download("als-20261124", tmp_path / "out")
    assert files_under(out) == files_under(rerun)
    listed = client.list_objects_v2(Bucket=registry.bucket, Prefix=f"{registry.prefix}/versions/als-20261124/files/")
    assert sorted(o["Key"].rsplit("/files/", 1)[1] for o in listed["Contents"]) == [
        "factors/items.npy",
        "model.json",
    ]


def test_download_detects_a_changed_file(registry: ModelRegistry, live_services: Settings, tmp_path: Path) -> None:
    register(registry, artifact(tmp_path / "a", "a"), "als-20261124")
    s3_client(live_services.s3).put_object(
        Bucket=registry.bucket,
        Key=f"{registry.prefix}/versions/als-20261124/files/users.json",
        Body=b'["u3"]',
    )
    with pytest.raises(ChecksumMismatch, match=r"users\.json: got sha256"):
        registry.download("als-20261124", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_audit_records_are_immutable_and_reruns_idempotent(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, artifact(tmp_path / "a", "a"), "als-20261124")
    first = registry.promote("als-20261124", reason="first", actor="it", promoted_at=DAY)
    again = registry.promote("als-20261124", reason="first", actor="it", promoted_at=DAY)  # task retry
    assert again == first
    assert len(registry.audit_log()) == 1
    with pytest.raises(RegistryError, match="already exists for a different promotion"):
        registry.promote("als-20261124", reason="other reason", actor="it", promoted_at=DAY)
    assert [r["reason"] for r in registry.audit_log()] == ["first"]


def test_concurrent_promoters_never_lose_an_update(registry: ModelRegistry, tmp_path: Path) -> None:
    """Promoters racing on the real server: each either wins or gets ConcurrentPromotion, and the winners'
    ``previous`` fields form one unbroken chain (no promotion silently overwrote another)."""
    versions = [f"als-2026112{i}" for i in range(6)]
    for i, v in enumerate(versions):
        register(registry, artifact(tmp_path / v, v), v, created_at=DAY + timedelta(minutes=i))
    barrier = threading.Barrier(len(versions))
    won: dict[str, str | None] = {}
    lost: list[str] = []
    lock = threading.Lock()

    def promote(i: int, version: str) -> None:
        barrier.wait()
        try:
            rec = registry.promote(version, reason="race", actor=f"p{i}", promoted_at=DAY + timedelta(hours=i))
            with lock:
                won[version] = rec.previous
        except ConcurrentPromotion:
            with lock:
                lost.append(version)

    threads = [threading.Thread(target=promote, args=(i, v)) for i, v in enumerate(versions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) + len(lost) == len(versions) and won

    champion = registry.champion_record()
    assert champion is not None and champion.version in won
    chain: list[str] = []
    cursor: str | None = champion.version
    while cursor is not None:
        assert cursor in won, f"chain {chain} reaches {cursor}, which never won: an update was lost"
        chain.append(cursor)
        cursor = won[cursor]
    assert sorted(chain) == sorted(won), f"winners {won} do not form one chain from {champion.version}"
    assert [r.version for r in registry.history()] == chain[::-1]
    assert len(registry.audit_log()) == len(versions)  # losers' attempts stay recorded


def test_stale_pointer_is_resolved_along_the_chain(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    """A promoter that died after linking (or a delayed writer) leaves an old champion.json behind:
    the registry still reports the newest champion, and the next promotion builds on it."""
    for i, v in enumerate(["als-20261124", "ncf-20261124", "als-20261125"]):
        register(registry, artifact(tmp_path / v, v), v, created_at=DAY + timedelta(days=i))
    registry.promote("als-20261124", reason="first", actor="it", promoted_at=DAY)
    client = s3_client(live_services.s3)
    key = f"{registry.prefix}/champion.json"
    stale = client.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    registry.promote("ncf-20261124", reason="second", actor="it", promoted_at=DAY + timedelta(days=1))
    client.put_object(Bucket=registry.bucket, Key=key, Body=stale)  # the pointer regresses

    champion = registry.champion()
    assert champion is not None and champion.version == "ncf-20261124"
    third = registry.promote("als-20261125", reason="third", actor="it", promoted_at=DAY + timedelta(days=2))
    assert third.previous == "ncf-20261124"
    assert [r.version for r in registry.history()] == ["als-20261124", "ncf-20261124", "als-20261125"]
