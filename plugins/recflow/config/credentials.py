"""Credentials of the local services: generated once per state folder, never a literal in the code.

Why: fixed defaults (an S3 key pair and a PostgreSQL password written in ``config.py``) are the same on
every machine that runs recflow, so anyone who reads the repository holds the keys of every local
set-up that forgot to change them. Now the first process that needs them writes
``<state>/credentials.json`` (mode 0600, created atomically: concurrent first starts agree on one file)
with random values, and every later one reads it. ``recflow airflow-env`` exports them to Airflow (the
``recflow_s3`` Connection). Environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``RECFLOW_PG_PASSWORD``) still win: that is how a deployment passes its own.

:func:`refuse_placeholders` is the start-up check: a value copied from ``.env.example`` (``change-me-*``)
would sign Airflow's tokens or guard S3 with a published key, so it stops the process, naming the
variables (never their values).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "credentials.json"
PLACEHOLDER_PREFIX = "change-me"
#: Variables that hold a credential: a placeholder in any of them is refused at start.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "RECFLOW_PG_PASSWORD",
    "RECFLOW_KAFKA_SASL_USERNAME",
    "RECFLOW_KAFKA_SASL_PASSWORD",
    "RECFLOW_KAFKA_SSL_KEY_PASSWORD",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW_DB_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_FERNET_KEY",
)


class PlaceholderCredential(ValueError):
    """A credential still holds a ``change-me`` placeholder; the message names the variables only."""


@dataclass(frozen=True)
class LocalCredentials:
    """The generated secrets of one state folder (kept out of ``repr``)."""

    s3_access_key: str
    s3_secret_key: str
    postgres_password: str

    def __repr__(self) -> str:
        return "LocalCredentials(***)"


def _generate() -> dict[str, str]:
    return {
        "s3_access_key": f"recflow-{secrets.token_hex(8)}",
        "s3_secret_key": secrets.token_urlsafe(32),
        "postgres_password": secrets.token_urlsafe(24),
    }


def create_once(path: Path, render: Callable[[], str]) -> None:
    """Create ``path`` (mode 0600) holding ``render()`` unless it exists; concurrent first starts agree on one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)  # mkstemp creates it with mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render())
        with contextlib.suppress(FileExistsError):  # a concurrent first start made it: keep theirs
            os.link(tmp, path)  # atomic, and never overwrites
    finally:
        os.unlink(tmp)


def check_private(path: Path) -> None:
    """Refuse a secrets file that others can read (``PermissionError`` with the fix)."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")


def local_credentials(state: Path) -> LocalCredentials:
    """Read ``<state>/credentials.json``, creating it (0600, random values) on first use."""
    path = state / FILE_NAME
    create_once(path, lambda: json.dumps(_generate()))
    check_private(path)
    try:
        doc = json.loads(path.read_text())
        return LocalCredentials(
            s3_access_key=str(doc["s3_access_key"]),
            s3_secret_key=str(doc["s3_secret_key"]),
            postgres_password=str(doc["postgres_password"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a recflow credentials file ({exc!r}); delete it to generate new ones") from exc


def placeholder_variables(environ: Mapping[str, str]) -> list[str]:
    """The credential variables of ``environ`` that hold a ``change-me`` placeholder (names only)."""
    return [name for name in CREDENTIAL_VARIABLES if PLACEHOLDER_PREFIX in environ.get(name, "").lower()]


def refuse_placeholders(environ: Mapping[str, str] | None = None) -> None:
    """Stop (:class:`PlaceholderCredential`) when a credential still holds a value from ``.env.example``."""
    found = placeholder_variables(os.environ if environ is None else environ)
    if found:
        raise PlaceholderCredential(
            f"{', '.join(found)} still hold the '{PLACEHOLDER_PREFIX}' placeholder of .env.example: set real, "
            'secret values (e.g. python -c "import secrets; print(secrets.token_hex(32))") before starting'
        )
