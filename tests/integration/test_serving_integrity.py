"""What serves is what the gate decided: each attack of issue 21 replayed on the real S3 server, on every
path that loads a model (the batch planner's and the scorer's resolve, the batch job's entry point, the
scorer's download, the canary in its own process, a rollback).

- ``champion.json`` rewritten to name another registered version with its own digest: it served; now
  ``ChampionPointerMismatch``, and the chain is unchanged;
- a file and its manifest entry (and ``content_digest``) rewritten: the file loaded; now ``ChecksumMismatch``;
- an unblessed version pinned (``batch_scoring``'s ``version`` Param): it scored; now ``NotBlessed``;
- the batch job handed a digest other than the planner's (none was passed): now ``ChecksumMismatch``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recflow.config.s3 import s3_client
from recflow.config.settings import Settings
from recflow.promotion.canary import run_in_fresh_process
from recflow.promotion.gate import rollback
from recflow.registry import ChecksumMismatch, ModelRegistry, ModelVersion, resolve_serving_version
from recflow.registry.blessing import NotBlessed, bless
from recflow.registry.records import ChampionPointerMismatch, dumps, sha256_bytes
from recflow.streaming.follower import download_fresh, resolve_champion

ROOT = Path(__file__).resolve().parents[2]
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def _register(reg: ModelRegistry, tmp_path: Path, tag: str, *, blessed: bool = True) -> ModelVersion:
    folder = tmp_path / tag
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"family": "popularity", "tag": tag}))
    (folder / "items.json").write_text(json.dumps(["i1", "i2", tag]))
    mv = reg.register(folder, family="popularity", metrics={"ndcg@10": 0.2}, lineage={"run": uuid.uuid4().hex},
                      created_at=DAY)  # fmt: skip
    if blessed:
        bless(reg, mv, kind="model", passed=True, reasons=["test"], details={})
    return mv


def _put(reg: ModelRegistry, settings: Settings, key: str, body: bytes) -> None:
    """What an attacker with the S3 key does: a plain PUT, around the registry's create-only writes."""
    s3_client(settings.s3).put_object(Bucket=reg.bucket, Key=key, Body=body)


def _rewrite_file_and_manifest(reg: ModelRegistry, settings: Settings, mv: ModelVersion) -> str:
    """Replace ``items.json`` and fix its manifest entry and ``content_digest``; the new manifest's sha256."""
    evil = b'["planted"]'
    _put(reg, settings, reg.version_key(mv.version, "files", "items.json"), evil)
    manifest = mv.to_manifest()
    for entry in manifest["files"]:
        if entry["path"] == "items.json":
            entry.update(sha256=sha256_bytes(evil), size=len(evil))
    manifest["content_digest"] = sha256_bytes(dumps({"forged": manifest["files"]}))
    body = dumps(manifest)
    _put(reg, settings, reg.version_key(mv.version, "manifest.json"), body)
    return sha256_bytes(body)


def _batch_job(settings: Settings, tmp_path: Path, version: str, digest: str) -> subprocess.CompletedProcess[str]:
    """The batch job's own entry point; it refuses before Spark starts, so no lake is needed."""
    argv = [sys.executable, str(ROOT / "spark_jobs" / "batch_score.py"), "--lake", str(tmp_path / "lake"),
            "--date", "2026-11-24", "--version", version, "--digest", digest]  # fmt: skip
    env = {**os.environ, "RECFLOW_MODELS_BUCKET": settings.s3.models_bucket}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.fixture
def default_registry(live_services: Settings) -> ModelRegistry:
    """The session bucket's ``registry/`` prefix: the only one the batch job (no --prefix option) reads.
    Tests here register unique content there and never move its champion."""
    return ModelRegistry.from_settings(live_services)


def test_a_rewritten_pointer_is_refused_and_never_followed(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    a, b = _register(registry, tmp_path, "a"), _register(registry, tmp_path, "b")
    first = registry.chain.swap(a.version, expected_champion=None, reason="first", actor="it")
    forged_pointers = [  # B with its own digest, claiming to be the first link; then claiming to follow A
        dataclasses.replace(first, version=b.version, digest=b.digest, uri=b.uri),
        dataclasses.replace(first, version=b.version, digest=b.digest, uri=b.uri, previous=a.version,
                            previous_digest=a.digest, previous_audit_key=first.audit_key),
    ]  # fmt: skip
    for forged in forged_pointers:
        _put(registry, live_services, registry.champion_key, dumps(forged.to_dict()))
        with pytest.raises(ChampionPointerMismatch, match="changed outside the promotion gate"):
            resolve_serving_version(registry)  # the batch planner's and the CLI's question
        with pytest.raises(ChampionPointerMismatch):
            resolve_champion(registry)  # the streaming scorer's follower
        with pytest.raises(ChampionPointerMismatch):
            registry.chain.swap(b.version, expected_champion=b.version, reason="ride the pointer", actor="it")
        with pytest.raises(ChampionPointerMismatch):
            rollback(registry, reason="rollback past the pointer", actor="it", to=a.version)
    assert [r.version for r in registry.history()] == [a.version]  # the chain never moved
    # the runbook's repair: the pointer is a hint, deleting it makes readers walk the chain from the start
    s3_client(live_services.s3).delete_object(Bucket=registry.bucket, Key=registry.champion_key)
    assert resolve_serving_version(registry).version == a.version


def test_a_rewritten_file_and_manifest_is_refused_on_every_load(
    default_registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    reg = default_registry
    mv = _register(reg, tmp_path, f"tampered-{uuid.uuid4().hex[:8]}")
    new_digest = _rewrite_file_and_manifest(reg, live_services, mv)
    with pytest.raises(ChecksumMismatch, match="rewritten after registration"):
        reg.get(mv.version)
    with pytest.raises(ChecksumMismatch, match="rewritten after registration"):
        resolve_serving_version(reg, pinned=mv.version, digest=new_digest)  # the planner's pin, the canary's load
    with pytest.raises(ChecksumMismatch):
        download_fresh(reg, mv.version, tmp_path / "cache", new_digest)  # the scorer's download
    with pytest.raises(ChecksumMismatch):
        reg.fetch(mv, tmp_path / "dl")  # a load with the manifest read before the rewrite
    assert not (tmp_path / "dl").exists()  # refused before any byte was downloaded
    job = _batch_job(live_services, tmp_path, mv.version, new_digest)
    assert job.returncode == 1 and "batch_score failed: ChecksumMismatch" in job.stderr, job.stderr[-2000:]
    verdict = run_in_fresh_process(mv.version, new_digest, prefix=reg.prefix, bucket=reg.bucket)
    assert verdict["passed"] is False and "ChecksumMismatch" in verdict["reasons"][0], verdict


def test_a_rollback_to_a_rewritten_former_champion_is_refused(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    a, b = _register(registry, tmp_path, "a"), _register(registry, tmp_path, "b")
    registry.chain.swap(a.version, expected_champion=None, reason="first", actor="it")
    registry.chain.swap(b.version, expected_champion=a.version, reason="second", actor="it")
    _rewrite_file_and_manifest(registry, live_services, a)
    with pytest.raises(ChecksumMismatch, match="rewritten after registration"):
        rollback(registry, reason="back to a", actor="it", to=a.version)
    assert resolve_serving_version(registry).version == b.version


def test_an_unblessed_pin_is_refused_and_a_blessed_or_former_champion_pin_serves(
    default_registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    reg = default_registry
    unblessed = _register(reg, tmp_path, f"unblessed-{uuid.uuid4().hex[:8]}", blessed=False)
    with pytest.raises(NotBlessed, match=r"pinned version refused: .* has no model blessing"):
        resolve_serving_version(reg, pinned=unblessed.version, digest=unblessed.digest)
    job = _batch_job(live_services, tmp_path, unblessed.version, unblessed.digest)
    assert job.returncode == 1 and "batch_score failed: NotBlessed" in job.stderr, job.stderr[-2000:]
    failed = _register(reg, tmp_path, f"failed-{uuid.uuid4().hex[:8]}", blessed=False)
    bless(reg, failed, kind="model", passed=False, reasons=["worse than the champion"], details={})
    with pytest.raises(NotBlessed, match="worse than the champion"):
        resolve_serving_version(reg, pinned=failed.version)
    blessed = _register(reg, tmp_path, f"blessed-{uuid.uuid4().hex[:8]}")
    assert resolve_serving_version(reg, pinned=blessed.version, digest=blessed.digest).version == blessed.version
    job = _batch_job(live_services, tmp_path, blessed.version, "0" * 64)  # not the planner's digest
    assert job.returncode == 1 and "batch_score failed: ChecksumMismatch" in job.stderr, job.stderr[-2000:]


def test_a_former_champion_without_a_blessing_may_be_pinned(registry: ModelRegistry, tmp_path: Path) -> None:
    """A version the chain promoted (a decision of the gate, or of a person through it) stays pinnable."""
    old = _register(registry, tmp_path, "old", blessed=False)
    registry.chain.swap(old.version, expected_champion=None, reason="first", actor="it")
    assert resolve_serving_version(registry, pinned=old.version).version == old.version


def test_a_blessing_planted_outside_its_place_or_copied_from_another_version_is_ignored(
    registry: ModelRegistry, live_services: Settings, tmp_path: Path
) -> None:
    """A trainer may write a version's files: a blessing it plants under ``blessings/files/`` (where a
    ``versions/*/files/*`` write grant reaches) or copies from a blessed version does not bless."""
    blessed = _register(registry, tmp_path, "blessed")
    target = _register(registry, tmp_path, "target", blessed=False)
    [real] = [o for o in registry.store.keys(registry.version_key(blessed.version, "blessings") + "/")]
    body = registry.store.get(real)
    assert body is not None
    name = real.rsplit("/", 1)[-1]
    _put(registry, live_services, registry.version_key(target.version, "blessings", name), body)  # copied
    forged = json.loads(body)
    forged.update(version=target.version, digest=target.digest)
    forged["key"] = registry.version_key(target.version, "blessings", "files", name)
    _put(registry, live_services, forged["key"], dumps(forged))  # planted one level deeper
    with pytest.raises(NotBlessed, match="has no model blessing"):
        resolve_serving_version(registry, pinned=target.version)
