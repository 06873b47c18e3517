"""The audit log: one create-only record per promotion attempt, including the ones that lost the race.

Why apart from the chain: the chain holds only the promotions that took effect; the log is what a person
reads after a "champion moved" to see who tried what, and when. An attempt writes its record before it
tries to link it, so a lost compare-and-swap still leaves its trace here.
"""

from __future__ import annotations

from typing import Any

from recflow.registry.layout import RegistryLayout
from recflow.registry.objects import ObjectStore
from recflow.registry.records import PromotionRecord, RegistryError, dumps, loads


class AuditLog:
    """``audit/<promoted_at>-<version>.json`` under one registry's prefix."""

    def __init__(self, store: ObjectStore, layout: RegistryLayout) -> None:
        self.store = store
        self.layout = layout

    def write(self, record: PromotionRecord) -> None:
        """Create ``record.audit_key``; finding the same bytes there (a retried write) is success."""
        body = dumps(record.to_dict())
        key = record.audit_key
        if not self.store.create(key, body, content_type="application/json") and self.store.get(key) != body:
            raise RegistryError(f"{self.store.uri(key)} already exists for another promotion; try again")

    def entries(self) -> list[dict[str, Any]]:
        """Every promotion attempt (including lost races), oldest first."""
        out = []
        for key in self.store.keys(self.layout.key("audit") + "/"):
            body = self.store.get(key)
            if body is not None:
                out.append(loads(body, self.store.uri(key)))
        return out
