"""Local credentials: generated once per state folder (0600), read by every process, env wins; placeholders refused.

Replays issue 21: the S3 keys and the PostgreSQL password were literals in the code, the same on every
machine; a ``change-me-*`` value copied from ``.env.example`` was used as a real secret.
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recflow.config.credentials import (
    FILE_NAME,
    PlaceholderCredential,
    local_credentials,
    placeholder_variables,
    refuse_placeholders,
)
from recflow.config.settings import load_settings


def test_generated_at_first_use_private_and_stable(tmp_path: Path) -> None:
    first = local_credentials(tmp_path / "state")
    path = tmp_path / "state" / FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert local_credentials(tmp_path / "state") == first
    assert len(first.s3_secret_key) >= 40 and first.s3_secret_key != first.postgres_password
    assert first.s3_secret_key not in repr(first)
    assert local_credentials(tmp_path / "other") != first  # every state folder gets its own
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE_NAME]  # no temporary file left


def test_concurrent_first_starts_agree_on_one_file(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        found = set(pool.map(lambda _: local_credentials(tmp_path), range(16)))
    assert len(found) == 1


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    local_credentials(tmp_path)
    (tmp_path / FILE_NAME).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        local_credentials(tmp_path)


def test_a_broken_file_says_how_to_recover(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(json.dumps({"s3_access_key": "x"}))
    (tmp_path / FILE_NAME).chmod(0o600)
    with pytest.raises(ValueError, match="delete it to generate new ones"):
        local_credentials(tmp_path)


def test_settings_use_the_generated_keys_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECFLOW_STATE", str(tmp_path))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    generated = local_credentials(tmp_path)
    s3 = load_settings().s3
    assert (s3.access_key, s3.secret_key) == (generated.s3_access_key, generated.s3_secret_key)
    key, mine = f"deployment-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", mine)
    assert (load_settings().s3.access_key, load_settings().s3.secret_key) == (key, mine)


def test_placeholders_are_refused_naming_the_variables_not_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"AIRFLOW__API_AUTH__JWT_SECRET": "change-me-jwt-secret", "AWS_SECRET_ACCESS_KEY": "Change-Me-Too",
               "AWS_ACCESS_KEY_ID": secrets.token_hex(6), "UNRELATED": "change-me"}  # fmt: skip
    assert placeholder_variables(environ) == ["AWS_SECRET_ACCESS_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"]
    with pytest.raises(PlaceholderCredential, match="AWS_SECRET_ACCESS_KEY, AIRFLOW__API_AUTH__JWT_SECRET") as err:
        refuse_placeholders(environ)
    assert "change-me-jwt-secret" not in str(err.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "change-me-secret-key")
    with pytest.raises(PlaceholderCredential):
        load_settings()  # every recflow process stops at start


def test_the_env_example_is_refused_as_it_stands() -> None:
    """Each credential of .env.example, used as it is, stops the start-up."""
    example = Path(__file__).resolve().parents[3] / ".env.example"
    environ = dict(
        line.split("=", 1) for line in example.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    assert {"AIRFLOW_DB_PASSWORD", "AIRFLOW_JWT_SECRET", "AWS_SECRET_ACCESS_KEY"} <= set(placeholder_variables(environ))
