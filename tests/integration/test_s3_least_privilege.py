"""Least privilege on a real S3 server with one identity per role (versitygw, issue 21 Build item 3).

The server is a second one of this session (its own folder, port, root key and four generated role keys),
provisioned the way ``recflow services up`` provisions it with ``RECFLOW_S3_SERVER=versitygw``: buckets,
the models bucket versioned with Object Lock, and :func:`recflow.services.s3_policies.bucket_policies`.
Each role then drives the project's own code (the registry, ``bless``, the chain's compare-and-swap,
the serving resolve) with its own key, and replays the writes an attacker holding that key would try:

- the scorer's key rewriting ``champion.json``, a chain link or a blessing;
- the trainer's key writing the chain, the pointer, an audit record or a blessing, or deleting a version;
- the batch key writing the registry or the lake outside its outputs;
- the promoter's key deleting an audit record; anyone deleting an object version under Object Lock.

The allowed writes of each role succeed on the same server, so a refusal is the policy, not a broken key.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from recflow.config.identities import Identity, role_identities
from recflow.config.s3 import S3Settings, s3_client
from recflow.config.settings import load_settings, state_dir
from recflow.registry import ModelRegistry, ModelVersion, resolve_serving_version
from recflow.registry.blessing import bless
from recflow.registry.objects import RegistryError
from recflow.registry.records import dumps
from recflow.services import manager
from recflow.services.process import LOCALHOST
from recflow.services.versitygw import VersityService, ensure_binary

pytestmark = pytest.mark.slow
DAY = datetime(2026, 11, 24, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """The running server: the root's settings and each role's identity."""

    root: S3Settings
    roles: dict[str, Identity]

    def s3(self, role: str) -> S3Settings:
        return self.roles[role].s3(self.root)

    def registry(self, role: str, prefix: str) -> ModelRegistry:
        return ModelRegistry.from_settings(self.s3(role), prefix=prefix)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A fresh versitygw server per test (a few seconds), so each test has the default registry prefix, whose
    keys the policies name, to itself. The binary is built once per machine into the state folder's ``bin/``."""
    settings = load_settings()
    ensure_binary(state_dir())  # the one-time build happens here, not inside the start timeout
    port = _free_port()
    root = replace(settings.s3, endpoint_url=f"http://{LOCALHOST}:{port}")
    roles = role_identities(tmp_path_factory.mktemp("identities"))
    service = VersityService(root, state_dir(), port, roles, name=f"s3-versitygw-{uuid.uuid4().hex[:6]}")
    try:
        assert manager.ensure_services_up(replace(settings, s3=root), services=[service], timeout=120) == (
            service.name,
        )
        yield Server(root, roles)
    finally:
        manager.services_down(replace(settings, s3=root), services=[service])
        shutil.rmtree(service.home, ignore_errors=True)


def _denied(call: Callable[[], object]) -> str:
    """Run ``call``; it must be refused with AccessDenied (raw S3 or through the registry). The code."""
    with pytest.raises((ClientError, RegistryError)) as info:
        call()
    text = str(info.value)
    assert "AccessDenied" in text, text
    return "AccessDenied"


def _model(tmp_path: Path, tag: str) -> Path:
    folder = tmp_path / tag
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"family": "popularity", "tag": tag}))
    (folder / "items.json").write_text(json.dumps(["i1", "i2", tag]))
    return folder


@pytest.fixture
def prefix() -> str:
    """The registry prefix the policies are written for (``recflow.services.s3_policies``)."""
    return "registry"


def _trainer_registers(server: Server, prefix: str, tmp_path: Path, tag: str) -> ModelVersion:
    return server.registry("trainer", prefix).register(
        _model(tmp_path, tag), family="popularity", metrics={"ndcg@10": 0.2}, lineage={"run": tag}, created_at=DAY
    )


def test_each_role_does_its_own_step_of_a_promotion(server: Server, prefix: str, tmp_path: Path) -> None:
    """trainer registers, promoter blesses and swaps, scorer and batch resolve: the allowed path works."""
    mv = _trainer_registers(server, prefix, tmp_path, "a")
    promoter = server.registry("promoter", prefix)
    bless(promoter, promoter.get(mv.version), kind="model", passed=True, reasons=["test"], details={})
    promoter.chain.swap(mv.version, expected_champion=None, reason="first", actor="promoter")
    for reader in ("scorer", "batch", "trainer"):
        assert resolve_serving_version(server.registry(reader, prefix)).version == mv.version


def test_the_scorer_cannot_write_the_pointer_the_chain_or_a_blessing(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    mv = _trainer_registers(server, prefix, tmp_path, "s")
    scorer = server.registry("scorer", prefix)
    client = s3_client(server.s3("scorer"))
    bucket = server.root.models_bucket
    _denied(lambda: client.put_object(Bucket=bucket, Key=scorer.champion_key, Body=b"{}"))
    _denied(lambda: scorer.store.overwrite(scorer.champion_key, b"{}"))
    _denied(lambda: client.put_object(Bucket=bucket, Key=scorer.key("chain", "after-genesis.json"), Body=b"{}"))
    _denied(lambda: bless(scorer, mv, kind="model", passed=True, reasons=["planted"], details={}))
    _denied(lambda: client.delete_object(Bucket=bucket, Key=scorer.version_key(mv.version, "manifest.json")))
    _denied(lambda: s3_client(server.s3("scorer")).put_object(Bucket=server.root.lake_bucket, Key="lake/x", Body=b"x"))
    assert scorer.get(mv.version).digest == mv.digest  # reading is what it may do


def test_the_trainer_cannot_write_the_chain_the_pointer_the_audit_log_or_a_blessing(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    mv = _trainer_registers(server, prefix, tmp_path, "t")
    trainer = server.registry("trainer", prefix)
    client = s3_client(server.s3("trainer"))
    bucket = server.root.models_bucket
    _denied(lambda: trainer.chain.swap(mv.version, expected_champion=None, reason="self-promote", actor="trainer"))
    _denied(lambda: client.put_object(Bucket=bucket, Key=trainer.key("chain", "after-genesis.json"), Body=b"{}"))
    _denied(lambda: client.put_object(Bucket=bucket, Key=trainer.champion_key, Body=b"{}"))
    _denied(lambda: client.put_object(Bucket=bucket, Key=trainer.key("audit", f"x-{mv.version}.json"), Body=b"{}"))
    _denied(lambda: bless(trainer, mv, kind="model", passed=True, reasons=["self-blessed"], details={}))
    # "*" matches "/": the files grant must not reach a blessings folder dressed as files
    _denied(lambda: client.put_object(Bucket=bucket, Key=trainer.version_key(mv.version, "blessings", "files", "x"),
                                      Body=b"{}"))  # fmt: skip
    _denied(lambda: client.delete_object(Bucket=bucket, Key=trainer.version_key(mv.version, "manifest.json")))
    assert server.registry("promoter", prefix).history() == []  # nothing moved


def test_batch_writes_its_outputs_and_nothing_else(server: Server) -> None:
    client = s3_client(server.s3("batch"))
    lake, models = server.root.lake_bucket, server.root.models_bucket
    key = f"lake/scores/event_date=2026-11-24/part-{uuid.uuid4().hex[:6]}.parquet"
    client.put_object(Bucket=lake, Key=key, Body=b"scores")  # its own output
    client.delete_object(Bucket=lake, Key=key)  # the all-or-nothing publish replaces a day's files
    _denied(lambda: client.put_object(Bucket=lake, Key="lake/interactions/event_date=2026-11-24/x", Body=b"x"))
    _denied(lambda: client.put_object(Bucket=models, Key="registry/champion.json", Body=b"{}"))
    _denied(lambda: client.put_object(Bucket=models, Key="registry/versions/v/files/model.json", Body=b"{}"))


def test_no_role_deletes_a_registry_version_and_object_lock_keeps_the_originals(
    server: Server, prefix: str, tmp_path: Path
) -> None:
    mv = _trainer_registers(server, prefix, tmp_path, "o")
    promoter = server.registry("promoter", prefix)
    bless(promoter, promoter.get(mv.version), kind="model", passed=True, reasons=["test"], details={})
    record = promoter.chain.swap(mv.version, expected_champion=None, reason="first", actor="promoter")
    bucket = server.root.models_bucket
    for role in ("promoter", "trainer", "batch", "scorer"):
        client = s3_client(server.s3(role))
        _denied(lambda: client.delete_object(Bucket=bucket, Key=record.audit_key))  # noqa: B023 (called at once)
    # an overwrite with the trainer's key (around the registry's If-None-Match) is a new object version: the
    # original stays, and the registry's create-only write still reports the key as taken
    manifest = promoter.version_key(mv.version, "manifest.json")
    s3_client(server.s3("trainer")).put_object(Bucket=bucket, Key=manifest, Body=dumps({"forged": True}))
    root = s3_client(server.root)
    versions = root.list_object_versions(Bucket=bucket, Prefix=manifest)["Versions"]
    assert len(versions) == 2
    (original,) = [v for v in versions if not v["IsLatest"]]
    # Object Lock (governance): even the root cannot delete the original version without the bypass header
    with pytest.raises(ClientError) as info:
        root.delete_object(Bucket=bucket, Key=manifest, VersionId=original["VersionId"])
    assert info.value.response["Error"]["Code"] == "AccessDenied", info.value.response
    assert "object lock" in info.value.response["Error"]["Message"], info.value.response  # not a policy refusal
    assert not server.registry("trainer", prefix).store.create(manifest, b"{}")  # create-only: the key is taken
