"""Where each registry document lives under the prefix: the one key scheme the version store, the champion
chain and the audit log share (the layout table is in :mod:`recflow.registry.core`).

Why its own module: the chain names its links after audit records, and a blessing or report is written
into a version's folder; three writers spelling keys by hand would drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from recflow.registry.records import PromotionRecord, compact

#: Version ids become one S3 "folder" name: no slashes, nothing that needs URL quoting.
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_version(version: str) -> None:
    """Refuse an id that is not one safe S3 folder name (``ValueError``)."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):  # "$" alone accepts a final "\n"
        raise ValueError(f"version {version!r} must match {VERSION_RE.pattern} (e.g. 'als-20261124T0000-3f9a2c1b7e04')")


@dataclass(frozen=True)
class RegistryLayout:
    """The keys of one registry: everything under ``prefix`` ("" for the bucket's root)."""

    prefix: str

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def version_key(self, version: str, *parts: str) -> str:
        """A key inside the version's folder (``versions/<version>/<parts>``); the id is checked first."""
        check_version(version)
        return self.key("versions", version, *parts)

    @property
    def champion_key(self) -> str:
        """The champion pointer (a hint: the chain is the truth)."""
        return self.key("champion.json")

    def audit_key(self, promoted_at: datetime, version: str) -> str:
        """``audit/<promoted_at>-<version>.json``: sorts by time, one per promotion attempt."""
        return self.key("audit", f"{compact(promoted_at)}-{version}.json")

    def link_key(self, record: PromotionRecord | None) -> str:
        """The link naming the promotion that followed ``record`` (``None``: the first promotion ever)."""
        return self.link_after(None if record is None else record.audit_key)

    def link_after(self, audit_key: str | None) -> str:
        """The link of the promotion that followed the one audited at ``audit_key`` (``None``: genesis).

        A record names its predecessor by ``previous_audit_key``, so ``link_after(r.previous_audit_key)``
        is where ``r`` itself must be stored as a link: how the champion pointer is checked.
        """
        name = "genesis.json" if audit_key is None else audit_key.rsplit("/", 1)[-1]
        return self.key("chain", f"after-{name}")
