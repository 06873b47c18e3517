"""The records the promotion steps exchange: the compare step's judgement (candidates, champion, metrics,
decision) that the report renders and the gate acts on.

Kept below the compare step and the report, so neither imports the other to learn the record's shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recflow.registry.records import ModelVersion

CHAMPION = "champion"


class JudgingError(RuntimeError):
    """The shared hold-out cannot be built (no data for the window)."""


@dataclass(frozen=True)
class Judgement:
    """What one run compared and decided; everything the blessing and the report show."""

    decision: Decision
    metrics: Mapping[str, Mapping[str, float]]  # candidate names and "champion" -> metrics on the hold-out
    candidates: Mapping[str, ModelVersion]
    champion: ModelVersion | None
    holdout: Mapping[str, Any]
    stale: Mapping[str, str] = field(default_factory=dict)
    policy: Mapping[str, Any] = field(default_factory=dict)
    #: Per model name, its calibration figures on the hold-out's evaluation fold (``before`` / ``after``).
    calibration: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Per model name, the per-category table of its offer decision (one record per item).
    categories: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate's outcome: for an eligible one a ranking note first, then every rule outcome,
    ``FAIL ...`` before ``ok ...``; ``failures`` holds the failed rules alone, unprefixed."""

    name: str
    eligible: bool
    reasons: tuple[str, ...]
    failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The winner (or ``None``) and, per candidate in name order, why."""

    winner: str | None
    primary_metric: str
    verdicts: tuple[CandidateVerdict, ...] = field(default_factory=tuple)
    cold_start: bool = False

    @property
    def reasons(self) -> dict[str, list[str]]:
        return {v.name: list(v.reasons) for v in self.verdicts}

    @property
    def eligible(self) -> list[str]:
        return [v.name for v in self.verdicts if v.eligible]

    def verdict(self, name: str) -> CandidateVerdict:
        return next(v for v in self.verdicts if v.name == name)

    def summary(self) -> str:
        """A multi-line log message: the outcome, then each candidate's reasons."""
        head = f"promote {self.winner!r}" if self.winner else "promote nothing: no candidate passed every rule"
        lines = [head + (" (cold start: floors and baseline only)" if self.cold_start else "")]
        for v in self.verdicts:
            lines.append(f"  {v.name}: {'eligible' if v.eligible else 'rejected'}")
            lines.extend(f"    - {r}" for r in v.reasons)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "primary_metric": self.primary_metric,
            "cold_start": self.cold_start,
            "candidates": {
                v.name: {"eligible": v.eligible, "reasons": list(v.reasons), "failures": list(v.failures)}
                for v in self.verdicts
            },
        }
