"""One S3 identity per pipeline role, generated once per state folder (least privilege, issue 21).

Why four keys: with one all-powerful key, any component (a trainer's Spark executor, the scorer on a
serving host) could rewrite the champion pointer, the chain or the audit log. Each role now signs with its
own key, and the S3 server refuses what the role may not do (:mod:`recflow.services.s3_policies` says
what each may do; ``docs/deployment.md`` gives the same rules as AWS IAM policies):

- ``trainer``: reads the lake, creates new model versions (files and manifest) and nothing else;
- ``promoter``: the only writer of blessings, reports, the chain, the champion pointer and the audit log;
- ``batch``: reads the registry and the lake, writes only its own outputs (scores, offers, reports);
- ``scorer``: reads the registry, writes nothing.

The keys live in ``<state>/s3-identities.json`` (mode 0600, created atomically like
``credentials.json``). The administrator key of ``credentials.json`` stays the server's root: it creates
the buckets and their policies and is what ``recflow services`` itself uses.
A role's process gets its key through its environment (:func:`role_environment`: the standard
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` every S3 client of the project already reads) or, under
Airflow, through a Connection of its own (``recflow_s3_<role>``).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recflow.config.credentials import check_private, create_once
from recflow.config.s3 import S3Settings

FILE_NAME = "s3-identities.json"
#: The pipeline roles, each with its own S3 identity.
ROLES = ("trainer", "promoter", "batch", "scorer")


@dataclass(frozen=True)
class Identity:
    """One role's S3 key pair (the secret is kept out of ``repr``)."""

    role: str
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"Identity({self.role}, {self.access_key}, ***)"

    def s3(self, base: S3Settings) -> S3Settings:
        """``base`` (endpoint, region, buckets) signed with this identity's key."""
        return dataclasses.replace(base, access_key=self.access_key, secret_key=self.secret_key)


def _generate() -> dict[str, dict[str, str]]:
    return {
        role: {"access_key": f"recflow-{role}-{secrets.token_hex(6)}", "secret_key": secrets.token_urlsafe(32)}
        for role in ROLES
    }


def role_identities(state: Path) -> dict[str, Identity]:
    """Every role's identity from ``<state>/s3-identities.json``, generating the file on first use."""
    path = state / FILE_NAME
    create_once(path, lambda: json.dumps(_generate()))
    check_private(path)
    try:
        doc = json.loads(path.read_text())
        return {role: Identity(role, str(doc[role]["access_key"]), str(doc[role]["secret_key"])) for role in ROLES}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a recflow identities file ({exc!r}); delete it to generate new ones") from exc


def role_environment(identity: Identity) -> dict[str, str]:
    """The environment variables that make a recflow process (job, scorer, CLI) sign as ``identity``."""
    return {"AWS_ACCESS_KEY_ID": identity.access_key, "AWS_SECRET_ACCESS_KEY": identity.secret_key}


def process_environment(role: str, environ: Mapping[str, str], state: Path) -> dict[str, str]:
    """The S3 keys a recflow process of ``role`` (the scorer, the HTTP API) is started with.

    Its role's key when the local server holds one identity per role (``RECFLOW_S3_SERVER=versitygw``)
    and the environment names no key of its own; otherwise nothing, and the process reads what the
    environment or ``credentials.json`` gives, as before.
    """
    if role not in ROLES:
        raise ValueError(f"S3 role {role!r} is not one of {', '.join(ROLES)}")
    if environ.get("AWS_ACCESS_KEY_ID") or (environ.get("RECFLOW_S3_SERVER") or "s3proxy") != "versitygw":
        return {}
    return role_environment(role_identities(state)[role])
