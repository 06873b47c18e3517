"""Which version serves: the one question batch scoring, the streaming scorer and the CLI all ask.

Why one function: three copies of "read the champion" drifted apart (one downloaded into a folder it
could not replace, one swallowed the error), so batch and stream could serve different bits under one
label. :func:`resolve_serving_version` answers with the version *and* the sha256 of its manifest; every
load goes through :meth:`ModelRegistry.fetch`, which verifies that digest and every file, into a fresh
folder.

**Which champion scores a data interval.** A backfill of last month must score each day with the
champion *of that day*, and a re-run must get the same answer whenever it runs, so the answer is keyed
on the data interval, never on the wall clock (``promoted_at`` is when a person or a run acted, not
which data the decision was about). Each link of the promotion chain gets an *effective data time*:

    effective(link) = max(effective(previous link), data time of link)
    data time       = the link's ``interval_end`` (the training run's data interval), or, for a promotion
                      made outside any data interval (``recflow registry promote`` / ``rollback``,
                      ``interval_end`` None), the end of the promoted model's training data
                      (``ModelVersion.created_at``)

and the champion for an interval ending at ``E`` is the **last** link with ``effective <= E``; before the
first one there is none (:class:`NoChampion`). Consequences, on purpose:

- a rollback (to an older version) takes effect from the rolled-back link's time, so it overrides the
  bad version for backfills too, not only from now on;
- a manual promotion never scores data from before its model's training data ended (no backfill scores
  day 3 with a model trained on day 5's data); the effective times never go backwards, so a later
  decision always wins from its own time on, and the answer for any ``E`` depends only on the chain;
- promotions made for later intervals cannot change what an earlier, already scored day gets, so a
  backfill run twice scores identically; a later rollback can (that is what it is for).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from recflow.config.settings import load_settings
from recflow.registry.blessing import NotBlessed, require_model_blessing
from recflow.registry.core import ModelRegistry
from recflow.registry.records import (
    ChecksumMismatch,
    ModelVersion,
    NoChampion,
    PromotionRecord,
    iso,
    utc,
)


@dataclass(frozen=True)
class ServingVersion:
    """The version to serve, the sha256 of its manifest, the manifest itself and, unless pinned, the
    promotion that made it champion."""

    version: str
    digest: str
    model: ModelVersion
    record: PromotionRecord | None = None

    @property
    def uri(self) -> str:
        return self.model.uri


def effective_times(
    history: Sequence[PromotionRecord], trained_until: Callable[[str], datetime]
) -> list[tuple[datetime, PromotionRecord]]:
    """Each link of ``history`` (oldest first) with the data time from which it serves (module docstring).

    ``trained_until(version)`` is the end of that version's training data; it is asked only for links
    without an ``interval_end`` (manual promotions and rollbacks).
    """
    timeline: list[tuple[datetime, PromotionRecord]] = []
    for record in history:
        own = record.interval_end if record.interval_end is not None else trained_until(record.version)
        effective = max(timeline[-1][0], own) if timeline else own
        timeline.append((effective, record))
    return timeline


def champion_for_interval(
    history: Sequence[PromotionRecord], interval_end: datetime, trained_until: Callable[[str], datetime]
) -> PromotionRecord | None:
    """The promotion whose champion scores the data interval ending at ``interval_end`` (None: no champion).

    Pure: the same history and interval give the same answer, whenever it is asked.
    """
    end = utc(interval_end, "interval_end")
    serving = None
    for effective, record in effective_times(history, trained_until):
        if effective > end:
            break  # effective times never decrease along the chain
        serving = record
    return serving


def resolve_serving_version(
    registry: ModelRegistry,
    pinned: str | None = None,
    at: datetime | None = None,
    *,
    interval_end: datetime | None = None,
    digest: str | None = None,
) -> ServingVersion:
    """The version that serves now, the ``pinned`` one, the champion at wall-clock time ``at``, or the
    champion for the data interval ending at ``interval_end``.

    - ``pinned``: that version, if the gate decided for it (:func:`require_gate_decision`; ``ModelNotFound``
      / ``IncompleteModelVersion`` when it is not committed, ``NotBlessed`` when nobody blessed it);
    - ``at``: the champion serving at that wall-clock instant, from the promotion history (for people
      asking "what served at 10:00"; ``recflow registry champion --at``);
    - ``interval_end``: the champion of that data interval by the rule in this module's docstring: what
      batch scoring uses for every run, scheduled or backfill, so a past day gets that day's champion;
    - none of them: the current champion.

    ``digest``, when given, must equal the manifest's sha256 (a planner passes the digest it resolved
    to the job that loads it). A champion's manifest must still hash to the digest its promotion
    recorded. Either mismatch is :class:`ChecksumMismatch`. :class:`NoChampion` when nothing serves.
    """
    if sum(x is not None and x != "" for x in (pinned, at, interval_end)) > 1:
        raise ValueError("pass at most one of pinned, at and interval_end")
    record: PromotionRecord | None = None
    if pinned:
        model = registry.get(pinned)  # recomputes the content digest against the id (check_identity)
        require_gate_decision(registry, model)
    else:
        record = _champion_record(registry, at, interval_end)
        model = registry.get(record.version)
        if model.digest != record.digest:
            raise ChecksumMismatch(
                f"{model.uri}manifest.json has sha256 {model.digest}, but its promotion recorded "
                f"{record.digest}: the version changed after it was promoted; refusing to serve it"
            )
    if digest is not None and model.digest != digest:
        raise ChecksumMismatch(f"{model.uri}manifest.json has sha256 {model.digest}, expected {digest}")
    return ServingVersion(version=model.version, digest=model.digest, model=model, record=record)


def require_gate_decision(registry: ModelRegistry, model: ModelVersion) -> None:
    """Refuse (:class:`NotBlessed`) a version the promotion gate never accepted with these exact bits.

    Accepted: a passing model blessing of its current digest (the compare step's verdict,
    :func:`recflow.registry.blessing.require_model_blessing`), or a link of the chain that promoted this
    version with this digest (a former champion). Why: the ``version`` Param of ``batch_scoring`` and
    ``recflow score --version`` let a person pin what scores; without this, anyone who can trigger the DAG
    could publish scores from a model that was never judged.
    """
    try:
        require_model_blessing(registry, model)
    except NotBlessed as exc:
        if any(r.version == model.version and r.digest == model.digest for r in registry.history()):
            return
        raise NotBlessed(f"pinned version refused: {exc}; pin a blessed version or a former champion") from exc


def _champion_record(registry: ModelRegistry, at: datetime | None, interval_end: datetime | None) -> PromotionRecord:
    """The promotion record that answers; :class:`NoChampion`, saying for what, when there is none."""
    where = f"{registry.store.uri(registry.prefix)}/"
    if interval_end is not None:
        history = registry.history()

        def trained_until(version: str) -> datetime:
            return registry.get(version).created_at

        found = champion_for_interval(history, interval_end, trained_until)
        if found is not None:
            return found
        if history:
            first = effective_times(history[:1], trained_until)[0][0]
            raise NoChampion(
                f"no champion for the data interval ending {iso(interval_end)} in {where}: the first "
                f"promotion ({history[0].version}) serves intervals ending at or after {iso(first)}"
            )
    else:
        record = registry.champion_record() if at is None else registry.champion_at(at)
        if record is not None:
            return record
    when = "yet" if at is None else f"at {iso(at)}"
    raise NoChampion(f"no champion {when} in {where}: run the recommender_training DAG or `recflow registry "
                     "promote` first")  # fmt: skip


def fetch_artifact(version: str, digest: str, dest: Path) -> Path:
    """Download ``version`` into a fresh folder under ``dest``, verified; the registry comes from the
    environment's settings (a Spark job's only source of them).

    ``digest`` is the manifest sha256 the planner resolved: the job loads those bits or nothing
    (:class:`ChecksumMismatch`), and the version must still be one the gate decided for.
    """
    registry = ModelRegistry.from_settings(load_settings())
    serving = resolve_serving_version(registry, pinned=version, digest=digest)
    return registry.fetch(serving.model, dest)
