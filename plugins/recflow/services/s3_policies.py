"""What each pipeline role may do on S3: the bucket policies the multi-identity server enforces.

Why bucket policies named by access key: the local server (versitygw, :mod:`recflow.services.versitygw`)
evaluates AWS-shaped bucket policies whose ``Principal`` is an account's access key, so the same
statements a reader finds as IAM policies in ``docs/deployment.md`` are the ones the tests run against.
Every bucket is owned by the administrator (root); a role gets exactly what a statement grants it here:

- trainer: read the lake and the registry; ``PutObject`` on a version's ``files/`` and ``manifest.json``,
  with an explicit ``Deny`` on blessings and reports (``*`` in a resource matches ``/`` too, so the
  ``versions/*/files/*`` grant alone would reach ``versions/<v>/blessings/files/x``); never a delete;
- promoter: read everything; the only writer of blessings, reports, ``audit/``, ``chain/`` and
  ``champion.json``; never a delete;
- batch: read everything; write and delete only its outputs (``scores``, ``offers``, their commit records
  and attempts, quarantine);
- scorer: read only.

Ingestion (landing files into the lake, validation reports) is not one of the four roles: it signs with
the administrator's key, as ``recflow services`` does.

Create-only versions: S3 policies have no "create, never overwrite" action, and this server does not
evaluate AWS's ``s3:if-none-match`` condition. The models bucket is therefore versioned with Object Lock
(governance retention, :data:`RETENTION_DAYS`): an overwrite leaves the original version in place and no
role may delete a version, and every load recomputes the content digest against the version id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recflow.config.identities import Identity
from recflow.config.s3 import S3Settings

#: Governance-mode retention of every object version in the models bucket (days).
RETENTION_DAYS = 30
READ = ["s3:GetObject", "s3:GetObjectVersion"]
LIST = ["s3:ListBucket", "s3:ListBucketVersions"]


def _arn(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"


def _statement(sid: str, effect: str, who: Identity, actions: list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": effect, "Principal": {"AWS": [who.access_key]}, "Action": actions,
            "Resource": resources}  # fmt: skip


def _readers(sid: str, bucket: str, who: list[Identity]) -> list[dict[str, Any]]:
    return [_statement(f"{sid}List{i.role.title()}", "Allow", i, LIST, [_arn(bucket)]) for i in who] + [
        _statement(f"{sid}Read{i.role.title()}", "Allow", i, READ, [_arn(bucket, "*")]) for i in who
    ]


def bucket_policies(
    s3: S3Settings, identities: Mapping[str, Identity], *, registry_prefix: str = "registry",
    lake_prefix: str = "lake",
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The policy document of each bucket (models, lake, reports) for the four role ``identities``."""
    trainer, promoter, batch, scorer = (identities[r] for r in ("trainer", "promoter", "batch", "scorer"))
    everyone = [trainer, promoter, batch, scorer]
    reg = f"{registry_prefix}/" if registry_prefix else ""
    lake = f"{lake_prefix}/" if lake_prefix else ""
    models = s3.models_bucket
    versions = [_arn(models, f"{reg}versions/*/files/*"), _arn(models, f"{reg}versions/*/manifest.json")]
    gated = [_arn(models, f"{reg}versions/*/blessings/*"), _arn(models, f"{reg}versions/*/reports/*")]
    chain = [_arn(models, f"{reg}audit/*"), _arn(models, f"{reg}chain/*"), _arn(models, f"{reg}champion.json")]
    outputs = [
        _arn(s3.lake_bucket, f"{lake}{part}")
        for part in ("scores/*", "offers/*", "_attempts/scores/*", "_commits/scores/*", "quarantine/*")
    ]
    return {
        models: _policy(
            *_readers("Models", models, everyone),
            _statement("TrainerCreatesVersions", "Allow", trainer, ["s3:PutObject"], versions),
            _statement("TrainerNeverGates", "Deny", trainer, ["s3:PutObject", "s3:DeleteObject"], gated + chain),
            _statement("PromoterGates", "Allow", promoter, ["s3:PutObject"], gated + chain),
        ),
        s3.lake_bucket: _policy(
            *_readers("Lake", s3.lake_bucket, everyone),
            _statement("BatchOutputs", "Allow", batch, ["s3:PutObject", "s3:DeleteObject"], outputs),
        ),
        s3.reports_bucket: _policy(*_readers("Reports", s3.reports_bucket, everyone)),
    }


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def object_lock_configuration(days: int = RETENTION_DAYS) -> dict[str, Any]:
    """The models bucket's default retention: governance mode, so nobody deletes a version unaided."""
    return {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": days}}}
