"""Ids keyed on the data interval, shared by the DAG, the demo, the registry and the tests so they
cannot disagree.

A registered model version is ``<family>-<interval key>-<content digest>``, e.g.
``als-20261110T0000-3f9a2c1b7e04``. Why the digest: two training attempts for the same interval (a
re-run, a backfill, a retried task that produced other bytes) must never share a name, or the bits
behind a name could change after they were evaluated and promoted. The digest covers the files, the
metrics and the lineage, so registering identical bytes again lands on the same id (a no-op) and
anything else is a new version. Kept free of heavy imports: DAG files reach it at parse time.
"""

from __future__ import annotations

import re
from datetime import datetime

from recflow.constants import VERSION_ID_PATTERN

#: Hex characters of the content digest kept in a version id (48 bits: collisions between the few
#: attempts of one family and interval are not a practical concern).
DIGEST_CHARS = 12
_VERSION_ID_RE = re.compile(VERSION_ID_PATTERN)


def interval_key(interval_end: datetime) -> str:
    """A compact, sortable id of a data interval (its end), e.g. ``20261110T0000``."""
    return interval_end.strftime("%Y%m%dT%H%M")


def version_prefix(family: str, interval_end: datetime) -> str:
    """What every version of ``family`` trained for this interval starts with, e.g. ``als-20261110T0000-``."""
    return f"{family}-{interval_key(interval_end)}-"


def version_id(family: str, interval_end: datetime, content_digest: str) -> str:
    """The immutable id of one training attempt: ``<family>-<interval key>-<first 12 hex of the digest>``."""
    if not re.fullmatch(r"[0-9a-f]{12,64}", content_digest):
        raise ValueError(f"content digest must be 12..64 lowercase hex characters, got {content_digest!r}")
    return version_prefix(family, interval_end) + content_digest[:DIGEST_CHARS]


def parse_version_id(version: str) -> tuple[str, str, str] | None:
    """``(family, interval key, digest)`` of an id made by :func:`version_id`, else ``None``."""
    if not _VERSION_ID_RE.fullmatch(version):  # fullmatch: "$" alone would accept a trailing newline
        return None
    family, interval, digest = version.rsplit("-", 2)  # the interval and the digest hold no "-"
    return family, interval, digest
