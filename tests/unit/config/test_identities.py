"""The four role identities: generated once per state folder, private, distinct, never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recflow.config.credentials import local_credentials
from recflow.config.identities import FILE_NAME, ROLES, role_environment, role_identities
from recflow.config.s3 import S3Settings


def test_identities_are_generated_once_private_and_distinct(tmp_path: Path) -> None:
    first = role_identities(tmp_path)
    assert sorted(first) == sorted(ROLES)
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600
    assert role_identities(tmp_path) == first  # read back, not regenerated
    keys = [i.access_key for i in first.values()] + [local_credentials(tmp_path).s3_access_key]
    secrets = [i.secret_key for i in first.values()] + [local_credentials(tmp_path).s3_secret_key]
    assert len(set(keys)) == len(keys) and len(set(secrets)) == len(secrets)  # no role shares the root's key
    for identity in first.values():
        assert identity.secret_key not in repr(identity)
        assert role_environment(identity)["AWS_ACCESS_KEY_ID"] == identity.access_key
    base = S3Settings("http://127.0.0.1:1", "root", "root-secret")
    signed = first["scorer"].s3(base)
    assert (signed.access_key, signed.endpoint_url) == (first["scorer"].access_key, base.endpoint_url)


def test_a_readable_or_broken_identities_file_is_refused(tmp_path: Path) -> None:
    role_identities(tmp_path)
    path = tmp_path / FILE_NAME
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        role_identities(tmp_path)
    path.chmod(0o600)
    path.write_text(json.dumps({"trainer": {}}))
    with pytest.raises(ValueError, match="delete it to generate new ones"):
        role_identities(tmp_path)


def test_a_process_gets_its_role_key_only_from_the_multi_identity_server(tmp_path: Path) -> None:
    from recflow.config.identities import process_environment

    scorer = role_identities(tmp_path)["scorer"]
    assert process_environment("scorer", {"RECFLOW_S3_SERVER": "versitygw"}, tmp_path) == role_environment(scorer)
    assert process_environment("scorer", {}, tmp_path) == {}  # S3Proxy: the one key, as before
    own = {"RECFLOW_S3_SERVER": "versitygw", "AWS_ACCESS_KEY_ID": scorer.access_key + "-deployment"}
    assert process_environment("scorer", own, tmp_path) == {}  # a deployment's own key wins
    with pytest.raises(ValueError, match="not one of"):
        process_environment("root", {}, tmp_path)
