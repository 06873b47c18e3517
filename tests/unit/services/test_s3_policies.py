"""The role policies and the versitygw set-up files, read as data (the server test enforces them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recflow.config.identities import Identity, role_identities
from recflow.config.s3 import S3Settings
from recflow.services import manager
from recflow.services.process import ServiceError
from recflow.services.s3_policies import bucket_policies
from recflow.services.versitygw import binary_path, render_iam, versitygw_argv

S3 = S3Settings("http://127.0.0.1:1", "root-key", "root-secret")


@pytest.fixture
def roles(tmp_path: Path) -> dict[str, Identity]:
    return role_identities(tmp_path)


def _grants(policy: dict[str, Any], identity: Identity, effect: str = "Allow") -> dict[str, set[str]]:
    """action -> resources granted (or denied) to ``identity`` by ``policy``."""
    out: dict[str, set[str]] = {}
    for st in policy["Statement"]:
        if st["Effect"] == effect and identity.access_key in st["Principal"]["AWS"]:
            for action in st["Action"]:
                out.setdefault(action, set()).update(st["Resource"])
    return out


def test_only_the_promoter_writes_the_gate_and_nobody_deletes_in_the_registry(roles: dict[str, Identity]) -> None:
    models = bucket_policies(S3, roles)[S3.models_bucket]
    gate = {f"arn:aws:s3:::recflow-models/registry/{k}" for k in ("audit/*", "chain/*", "champion.json")}
    assert gate <= _grants(models, roles["promoter"])["s3:PutObject"]
    for role in ("trainer", "batch", "scorer"):
        assert not gate & _grants(models, roles[role]).get("s3:PutObject", set()), role
    for role in roles:
        assert "s3:DeleteObject" not in _grants(models, roles[role]), role
    assert _grants(models, roles["trainer"])["s3:PutObject"] == {
        "arn:aws:s3:::recflow-models/registry/versions/*/files/*",
        "arn:aws:s3:::recflow-models/registry/versions/*/manifest.json",
    }
    denied = _grants(models, roles["trainer"], "Deny")["s3:PutObject"]
    assert "arn:aws:s3:::recflow-models/registry/versions/*/blessings/*" in denied


def test_the_scorer_writes_nowhere_and_batch_only_its_outputs(roles: dict[str, Identity]) -> None:
    policies = bucket_policies(S3, roles, lake_prefix="lake")
    for policy in policies.values():
        assert set(_grants(policy, roles["scorer"])) == {
            "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions"
        }  # fmt: skip
    lake_writes = _grants(policies[S3.lake_bucket], roles["batch"])["s3:PutObject"]
    assert all(r.startswith("arn:aws:s3:::recflow-lake/lake/") for r in lake_writes)
    assert "arn:aws:s3:::recflow-lake/lake/scores/*" in lake_writes
    assert not any("interactions" in r for r in lake_writes)


def test_the_iam_file_holds_the_four_roles_as_plain_users(roles: dict[str, Identity], tmp_path: Path) -> None:
    accounts = json.loads(render_iam(roles))["accessAccounts"]
    assert sorted(accounts) == sorted(i.access_key for i in roles.values())
    assert {a["role"] for a in accounts.values()} == {"user"}  # no admin: only the root may bypass policies
    argv = versitygw_argv(binary_path(tmp_path), port=7070, iam_dir=tmp_path / "iam", data=tmp_path / "d",
                          versions=tmp_path / "v")  # fmt: skip
    assert argv[1:3] == ["--port", "127.0.0.1:7070"]
    assert not any(i.secret_key in " ".join(argv) for i in roles.values())  # secrets never on the command line
    assert binary_path(tmp_path).parent.name.startswith("versitygw-v")


def test_the_s3_server_is_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECFLOW_S3_SERVER", raising=False)
    assert manager.s3_server_name() == "s3proxy"
    monkeypatch.setenv("RECFLOW_S3_SERVER", "versitygw")
    assert manager.s3_server_name() == "versitygw"
    monkeypatch.setenv("RECFLOW_S3_SERVER", "minio")
    with pytest.raises(ServiceError, match="s3proxy, versitygw"):
        manager.s3_server_name()


def test_a_go_toolchain_zip_that_is_not_the_checksummed_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy (or a man in the middle) serving another zip: nothing from it is unpacked or run.

    The forged answer is a stub: the real Go proxy cannot be made to serve a wrong toolchain.
    """
    import io
    import zipfile

    from recflow.services import versitygw

    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as zf:
        zf.writestr(
            f"golang.org/toolchain@v0.0.1-{versitygw.GO_TOOLCHAIN}.linux-amd64/bin/go", "#!/bin/sh\necho pwned\n"
        )
    monkeypatch.setattr(versitygw.shutil, "which", lambda _name: None)  # no usable go on PATH
    monkeypatch.setattr(versitygw.urllib.request, "urlopen", lambda *_a, **_k: io.BytesIO(forged.getvalue()))
    with pytest.raises(ServiceError, match="checksum database"):
        versitygw.go_toolchain(tmp_path)
    assert not (tmp_path / "go").exists()


def test_airflow_gets_one_connection_per_role_only_with_the_multi_identity_server(tmp_path: Path) -> None:
    from dataclasses import replace

    from recflow.config.settings import load_settings
    from recflow.services.local_airflow import role_connections

    settings = replace(load_settings(), state=tmp_path)
    assert role_connections(settings, {"RECFLOW_S3_SERVER": "s3proxy"}) == {}
    conns = role_connections(settings, {"RECFLOW_S3_SERVER": "versitygw"})
    roles = role_identities(tmp_path)
    assert {name: json.loads(c)["login"] for name, c in conns.items()} == {
        f"AIRFLOW_CONN_RECFLOW_S3_{role.upper()}": identity.access_key for role, identity in roles.items()
    }
