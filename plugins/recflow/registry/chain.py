"""The champion chain: which version serves, since when, and the compare-and-swap that changes it.

``chain/after-<champion's audit name>.json`` is created with ``If-None-Match: *``; only one promoter can
become the successor of a given champion. :meth:`ChampionChain.swap` takes the champion its decision was
made against (``expected_champion``) and raises :class:`ChampionMoved` when that is no longer the
champion, so the chain never forks and a decision is never applied to a champion it did not see.
``champion.json`` is overwritten afterwards with a plain PUT: it is a hint for humans and other S3 clients
that can lag; the chain is resolved from it forward along the links, so it never reports a superseded
one. The chain is the promotion history: each link holds the wall-clock ``promoted_at``, the data
interval, actor, reason, kind, previous champion and digest, and :meth:`ChampionChain.champion_at`
answers "which version served at time T" from it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from recflow.registry.audit import AuditLog
from recflow.registry.layout import RegistryLayout
from recflow.registry.objects import ObjectStore
from recflow.registry.records import (
    ChampionMoved,
    ChampionPointerMismatch,
    ModelVersion,
    PromotionRecord,
    RegistryError,
    dumps,
    utc,
)
from recflow.registry.version_store import VersionStore

log = logging.getLogger(__name__)

#: Bound on chain walks, so a corrupted (cyclic) chain fails loudly instead of hanging.
_MAX_CHAIN = 100_000
_TICK = timedelta(microseconds=1)


class ChampionChain:
    """The links and the pointer of one registry; every link points at a committed version."""

    def __init__(self, store: ObjectStore, layout: RegistryLayout, versions: VersionStore, audit: AuditLog) -> None:
        self.store = store
        self.layout = layout
        self.versions = versions
        self.audit = audit

    # ----------------------------------------------------------------- read
    def champion(self) -> ModelVersion | None:
        """The current champion version, or ``None`` before the first promotion."""
        record = self.champion_record()
        return None if record is None else self.versions.get(record.version)

    def champion_record(self) -> PromotionRecord | None:
        """The current champion's promotion record: the pointer, resolved forward along the chain."""
        tip, _ = self._tip()
        return tip

    def history(self) -> list[PromotionRecord]:
        """Promotions that took effect, oldest first: the chain from the first promotion to the champion."""
        return list(self._successors(None))

    def champion_at(self, when: datetime) -> PromotionRecord | None:
        """The promotion that was serving at wall-clock time ``when`` (``None`` before the first one)."""
        at = utc(when, "when")
        serving = None
        for record in self.history():  # promoted_at increases along the chain (swap enforces it)
            if record.promoted_at > at:
                break
            serving = record
        return serving

    # ----------------------------------------------------------------- compare-and-swap
    def swap(
        self,
        version: str,
        *,
        expected_champion: str | None,
        reason: str,
        actor: str,
        kind: str = "promote",
        interval_end: datetime | None = None,
        decision_id: str | None = None,
    ) -> PromotionRecord:
        """Make ``version`` the champion, if the champion is still ``expected_champion`` (None: no champion).

        1. The audit record ``audit/<promoted_at>-<version>.json`` is created (create-only).
        2. The chain link after the expected champion is created with ``If-None-Match: *``: the
           compare-and-swap. Losing it, or finding another champion already, raises :class:`ChampionMoved`.
        3. ``champion.json`` is overwritten (a hint; a failure here is logged, the promotion stands).

        ``promoted_at`` is the wall clock, kept strictly after the previous link's so the history is
        ordered in time. A retry of the same promotion (same ``decision_id``, version and expected
        champion) that finds it already done returns the stored record instead of failing.
        Checks on *what* may be promoted (blessings, canary) belong to :mod:`recflow.promotion.gate`.
        """
        if not reason.strip():
            raise ValueError("a promotion needs a reason")
        model = self.versions.get(version)  # refuses incomplete and unknown versions
        tip, pointer = self._tip()
        if tip is not None and _is_done(tip, version, expected_champion, decision_id):
            self._refresh_pointer(tip, pointer)
            return tip  # this very promotion took effect before (a retry after a crash or lost answer)
        current = None if tip is None else tip.version
        if current != expected_champion:
            raise ChampionMoved(
                f"champion moved: the decision to promote {version!r} was made against champion "
                f"{expected_champion!r}, but the registry now serves {current!r}; decide again"
            )
        record = self._successor(
            tip, model, reason=reason, actor=actor, kind=kind, interval_end=interval_end, decision_id=decision_id
        )
        self.audit.write(record)
        self._link(tip, record)
        self._refresh_pointer(record, pointer)
        return record

    def _successor(self, tip: PromotionRecord | None, model: ModelVersion, *, reason: str, actor: str, kind: str,
                   interval_end: datetime | None, decision_id: str | None) -> PromotionRecord:  # fmt: skip
        """The record that would follow ``tip``, stamped strictly after it."""
        when = datetime.now(UTC)
        if tip is not None and when <= tip.promoted_at:
            when = tip.promoted_at + _TICK
        return PromotionRecord(
            version=model.version,
            family=model.family,
            uri=model.uri,
            digest=model.digest,
            promoted_at=when,
            interval_end=None if interval_end is None else utc(interval_end, "interval_end"),
            reason=reason,
            actor=actor,
            kind=kind,
            previous=None if tip is None else tip.version,
            previous_digest=None if tip is None else tip.digest,
            audit_key=self.layout.audit_key(when, model.version),
            previous_audit_key=None if tip is None else tip.audit_key,
            decision_id=decision_id or uuid.uuid4().hex,
        )

    def _link(self, tip: PromotionRecord | None, record: PromotionRecord) -> None:
        """The compare-and-swap: create the link after ``tip``; someone else's link there is :class:`ChampionMoved`."""
        link_key = self.layout.link_key(tip)
        if self.store.create(link_key, dumps(record.to_dict()), content_type="application/json"):
            return
        linked = self._read_record(link_key)
        if linked is None or linked.audit_key != record.audit_key:  # else: our own link, stored before a lost answer
            winner = "?" if linked is None else repr(linked.version)
            raise ChampionMoved(
                f"champion moved: {winner} became the successor of {record.previous!r} while {record.version!r} "
                f"was being promoted ({self.store.uri(link_key)}); the attempt stays in "
                f"{self.store.uri(record.audit_key)}; decide again"
            )

    # ----------------------------------------------------------------- internals
    def _refresh_pointer(self, record: PromotionRecord, pointer: PromotionRecord | None) -> None:
        if pointer is not None and pointer.audit_key == record.audit_key:
            return
        try:
            self.store.overwrite(self.layout.champion_key, dumps(record.to_dict()))
        except RegistryError as exc:  # the link is the commit; the pointer is only a hint
            log.warning("promotion of %s took effect but champion.json was not refreshed: %s", record.version, exc)

    def _read_record(self, key: str) -> PromotionRecord | None:
        body = self.store.get(key)
        return None if body is None else PromotionRecord.from_bytes(body, where=self.store.uri(key))

    def _successors(self, start: PromotionRecord | None) -> Iterator[PromotionRecord]:
        """The links after ``start`` (``None``: from the first promotion), in order."""
        record = start
        for _ in range(_MAX_CHAIN):
            nxt = self._read_record(self.layout.link_key(record))
            if nxt is None:
                return
            yield nxt
            record = nxt
        raise RegistryError(f"{self.store.uri(self.layout.key('chain'))}/: more than {_MAX_CHAIN} links, or a cycle")

    def _tip(self) -> tuple[PromotionRecord | None, PromotionRecord | None]:
        """(the champion's record, the pointer as stored): start at the pointer, follow links forward.

        The pointer is only a shortcut into the chain, so it must equal, field for field, the link it
        claims to be (the one after its ``previous_audit_key``). Why: rewriting that one file to name
        another registered version, with its own digest, used to make it serve, bypassing the blessing,
        the canary and the compare-and-swap. A pointer that is not its link raises
        :class:`ChampionPointerMismatch` (logged as an error, which fails the asking task and alerts);
        it is never followed, and never silently repaired: someone with write access changed it.
        """
        pointer = self._read_record(self.layout.champion_key)
        if pointer is not None:
            self._check_pointer(pointer)
        walked = list(self._successors(pointer))
        return (walked[-1] if walked else pointer), pointer

    def _check_pointer(self, pointer: PromotionRecord) -> None:
        link_key = self.layout.link_after(pointer.previous_audit_key)
        link = self._read_record(link_key)
        if link is not None and link.to_dict() == pointer.to_dict():
            return
        found = "no link" if link is None else f"a link promoting {link.version!r} (digest {link.digest[:16]}...)"
        message = (
            f"{self.store.uri(self.layout.champion_key)} names {pointer.version!r} (digest {pointer.digest[:16]}...) "
            f"but {self.store.uri(link_key)} holds {found}: the pointer was changed outside the promotion gate; "
            "refusing to serve. Runbook: docs/runbook.md, 'The champion pointer does not match the chain'"
        )
        log.error("ALERT registry integrity: %s", message)
        raise ChampionPointerMismatch(message)


def _is_done(tip: PromotionRecord, version: str, expected_champion: str | None, decision_id: str | None) -> bool:
    """Whether ``tip`` is this very promotion (same decision, version and expected champion), already linked."""
    return (
        decision_id is not None
        and tip.decision_id == decision_id
        and tip.version == version
        and tip.previous == expected_champion
    )
