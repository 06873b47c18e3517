"""Which candidate, if any, becomes champion: pure rules over metric dicts, no I/O.

The policy lives in ``models/promotion.yaml`` so reviewers change thresholds without touching code.
A candidate is *eligible* when every rule passes:

1. **thresholds**: each listed metric is at least its minimum (inclusive);
2. **baseline**: the primary metric beats the baseline candidate's (``popularity``) by ``baseline_margin``;
3. **champion**: the primary metric beats the current champion's by ``champion.min_improvement``, a rule
   waived when there is no champion or the champion is older than ``champion.max_age_days``.

"Beat by a margin" (:class:`Margin`) means ``value > reference`` and, for ``kind: absolute``,
``value >= reference + margin``, for ``kind: relative``, ``value >= reference * (1 + margin)``. So a tie
never beats, even with a zero margin. The bounds are inclusive with a 1e-12 tolerance, so a value exactly
on the margin passes whatever the float rounding.

The winner is the eligible candidate with the highest primary metric; ties go to the higher value of
each ``tie_breakers`` metric in turn, then to the name in ascending order, so a decision is repeatable.
The baseline is a yardstick, never a winner. Every rule outcome is written as a sentence with the numbers,
so the DAG log says exactly why a model was or was not promoted.

All metrics are the ranking metrics of :mod:`recflow.evaluation`, keyed ``"<name>@<k>"`` (for example
``"ndcg@10"``), each in [0, 1] with higher being better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from recflow.config import project_root

POLICY_SCHEMA_VERSION = 1
_TOLERANCE = 1e-12

#: Metric names :mod:`recflow.evaluation` produces (``METRICS`` keys); kept here, not imported, so the
#: promotion step (run on the Airflow worker) does not import pandas. A unit test pins the two together.
KNOWN_METRIC_NAMES: frozenset[str] = frozenset(
    {"precision", "recall", "ndcg", "map", "map_all_relevant", "hit_rate", "coverage"}
)
_METRIC_RE = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>[1-9][0-9]*)$")

MarginKind = Literal["relative", "absolute"]


class PolicyError(ValueError):
    """The promotion policy file is missing, malformed, or names an unknown metric."""


def check_metric_name(name: str) -> str:
    """Return ``name`` if it is ``"<known metric>@<k>"``, else raise :class:`PolicyError` saying why."""
    m = _METRIC_RE.match(name) if isinstance(name, str) else None
    if m is None or m["name"] not in KNOWN_METRIC_NAMES:
        raise PolicyError(f"unknown metric {name!r}: expected '<name>@<k>' with name in {sorted(KNOWN_METRIC_NAMES)}")
    return name


@dataclass(frozen=True)
class Margin:
    """How much better than a reference a value must be; ``kind`` names relative vs absolute."""

    kind: MarginKind
    value: float

    def required(self, reference: float) -> float:
        """The smallest value that beats ``reference`` (besides being strictly greater)."""
        if self.kind == "absolute":
            return reference + self.value
        return reference * (1.0 + self.value)

    def beats(self, value: float, reference: float) -> bool:
        return value > reference and value >= self.required(reference) - _TOLERANCE

    def describe(self) -> str:
        return f"{self.value:+.1%} relative" if self.kind == "relative" else f"{self.value:+.6g} absolute"

    def describe_gain(self, value: float, reference: float) -> str:
        """The actual gain, in the same unit as the margin."""
        if self.kind == "absolute":
            return f"{value - reference:+.6g} absolute"
        if reference == 0:
            return "+inf relative" if value > 0 else "+0.0% relative"
        return f"{(value - reference) / reference:+.1%} relative"


@dataclass(frozen=True)
class PromotionPolicy:
    """The validated ``models/promotion.yaml``; build it with :meth:`from_yaml` or :meth:`from_dict`."""

    primary_metric: str
    thresholds: Mapping[str, float]
    baseline: str | None
    baseline_margin: Margin
    min_improvement: Margin
    max_champion_age_days: float | None
    tie_breakers: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, path: str | Path) -> PromotionPolicy:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise PolicyError(f"{path}: promotion policy file not found") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<policy>") -> PromotionPolicy:
        """Validate a parsed policy; every error names the file and the key path."""
        top = _Section(raw, source, "")
        top.only(
            {
                "schema_version",
                "primary_metric",
                "thresholds",
                "baseline",
                "baseline_margin",
                "champion",
                "tie_breakers",
            }
        )
        schema = top.require("schema_version", int)
        if schema != POLICY_SCHEMA_VERSION:
            top.fail("schema_version", f"is {schema}, this code reads version {POLICY_SCHEMA_VERSION}")
        primary = top.metric(top.require("primary_metric", str), "primary_metric")

        thresholds_raw = top.require("thresholds", dict)
        thresholds = {
            top.metric(name, f"thresholds.{name}"): top.unit_float(value, f"thresholds.{name}")
            for name, value in thresholds_raw.items()
        }

        baseline = top.optional("baseline", str)
        baseline_margin = top.margin("baseline_margin")

        champ = top.section("champion")
        champ.only({"min_improvement", "max_age_days"})
        min_improvement = champ.margin("min_improvement")
        max_age = champ.optional("max_age_days", (int, float))
        if max_age is not None and (isinstance(max_age, bool) or max_age <= 0):
            champ.fail("max_age_days", f"must be a positive number of days or null, got {max_age!r}")

        tie_raw = top.optional("tie_breakers", list) or []
        tie_breakers = tuple(top.metric(t, f"tie_breakers[{i}]") for i, t in enumerate(tie_raw))
        return cls(
            primary_metric=primary,
            thresholds=thresholds,
            baseline=baseline,
            baseline_margin=baseline_margin,
            min_improvement=min_improvement,
            max_champion_age_days=None if max_age is None else float(max_age),
            tie_breakers=tie_breakers,
        )


def default_policy_path() -> Path:
    return project_root() / "models" / "promotion.yaml"


def load_policy(path: str | Path | None = None) -> PromotionPolicy:
    """The policy in ``path`` (default: ``models/promotion.yaml`` in the project root)."""
    return PromotionPolicy.from_yaml(default_policy_path() if path is None else path)


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate's outcome.

    ``reasons`` holds, for an eligible candidate, a ranking note (winner, or why not) and then every rule
    outcome, ``FAIL ...`` before ``ok ...``; ``failures`` holds the failed rules alone, unprefixed.
    """

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

    @property
    def reasons(self) -> dict[str, list[str]]:
        return {v.name: list(v.reasons) for v in self.verdicts}

    @property
    def eligible(self) -> list[str]:
        return [v.name for v in self.verdicts if v.eligible]

    def summary(self) -> str:
        """A multi-line log message: the outcome, then each candidate's reasons."""
        head = f"promote {self.winner!r}" if self.winner else "promote nothing: no candidate passed every rule"
        lines = [head]
        for v in self.verdicts:
            lines.append(f"  {v.name}: {'eligible' if v.eligible else 'rejected'}")
            lines.extend(f"    - {r}" for r in v.reasons)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, e.g. for an XCom or the audit record's reason."""
        return {
            "winner": self.winner,
            "primary_metric": self.primary_metric,
            "candidates": {
                v.name: {"eligible": v.eligible, "reasons": list(v.reasons), "failures": list(v.failures)}
                for v in self.verdicts
            },
        }


def decide(
    candidates: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
    *,
    champion_age: timedelta | None = None,
) -> Decision:
    """Pick the champion-to-be among ``candidates`` (name to metrics), or none.

    ``champion`` holds the current champion's metrics (``None`` when there is none). ``champion_age`` is
    how old the champion is, measured by the caller against the data interval (never ``now()``), e.g.
    ``data_interval_end - champion.created_at``; ``None`` means unknown, so the age waiver never applies.
    Metrics from different hold-outs are not comparable: pass the champion's metrics re-evaluated on the
    same hold-out as the candidates when you have them.
    """
    pm = policy.primary_metric
    base_value = _finite(candidates.get(policy.baseline, {}).get(pm)) if policy.baseline else None
    verdicts: list[CandidateVerdict] = []
    for name in sorted(candidates):
        metrics = candidates[name]
        if name == policy.baseline:
            shown = _fmt(metrics.get(pm))
            verdicts.append(
                CandidateVerdict(name, False, (f"baseline: the yardstick, never promoted ({pm} = {shown})",))
            )
            continue
        passed, failed = _check(metrics, champion, policy, base_value, champion_age)
        reasons = tuple([f"FAIL {r}" for r in failed] + [f"ok {r}" for r in passed])
        verdicts.append(CandidateVerdict(name, not failed, reasons, tuple(failed)))

    eligible = [v.name for v in verdicts if v.eligible]
    ranked = sorted(eligible, key=lambda n: _rank_key(n, candidates[n], policy))
    winner = ranked[0] if ranked else None
    final: list[CandidateVerdict] = []
    for v in verdicts:
        if v.eligible and winner is not None:
            note = (
                f"winner: best {pm} = {_fmt(candidates[v.name][pm])} among {len(eligible)} eligible"
                if v.name == winner
                else _lost_to(v.name, winner, candidates, policy)
            )
            v = CandidateVerdict(v.name, v.eligible, (note, *v.reasons), v.failures)
        final.append(v)
    return Decision(winner=winner, primary_metric=pm, verdicts=tuple(final))


# --------------------------------------------------------------------- rules
def _check(
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
    base_value: float | None,
    champion_age: timedelta | None,
) -> tuple[list[str], list[str]]:
    """(passed, failed) rule sentences for one candidate; every rule is checked, none short-circuits."""
    passed: list[str] = []
    failed: list[str] = []
    pm = policy.primary_metric
    value = _finite(metrics.get(pm))
    if value is None:
        failed.append(f"{pm} is missing or not a finite number ({metrics.get(pm)!r})")

    for metric, minimum in sorted(policy.thresholds.items()):
        got = _finite(metrics.get(metric))
        if got is None:
            failed.append(f"threshold: {metric} is missing or not a finite number ({metrics.get(metric)!r})")
        elif got >= minimum:
            passed.append(f"threshold: {metric} = {_fmt(got)} >= minimum {_fmt(minimum)}")
        else:
            failed.append(f"threshold: {metric} = {_fmt(got)} is below the minimum {_fmt(minimum)}")

    if policy.baseline is not None and value is not None:
        _compare(value, base_value, f"baseline {policy.baseline!r}", pm, policy.baseline_margin, passed, failed)

    if champion is None:
        passed.append("champion: none yet, improvement rule waived")
    elif (
        policy.max_champion_age_days is not None
        and champion_age is not None
        and champion_age > timedelta(days=policy.max_champion_age_days)
    ):
        days = champion_age / timedelta(days=1)
        passed.append(f"champion: {days:.1f} days old (> {policy.max_champion_age_days:g}), improvement rule waived")
    elif value is not None:
        _compare(value, _finite(champion.get(pm)), "champion", pm, policy.min_improvement, passed, failed)
    return passed, failed


def _compare(
    value: float,
    reference: float | None,
    who: str,
    pm: str,
    margin: Margin,
    passed: list[str],
    failed: list[str],
) -> None:
    label = who.split(" ")[0]
    if reference is None:
        failed.append(f"{label}: {who} has no finite {pm} to compare with, so the rule cannot pass")
        return
    text = (
        f"{pm} = {_fmt(value)} vs {who} {_fmt(reference)}: gain {margin.describe_gain(value, reference)}, "
        f"needs {margin.describe()} (>= {_fmt(margin.required(reference))}, and strictly greater)"
    )
    (passed if margin.beats(value, reference) else failed).append(f"{label}: {text}")


def _rank_key(name: str, metrics: Mapping[str, float], policy: PromotionPolicy) -> tuple[Any, ...]:
    """Sort key: best primary first, then each tie-breaker (missing sorts last), then the name."""
    values = [_finite(metrics.get(m)) for m in (policy.primary_metric, *policy.tie_breakers)]
    return (*(-v if v is not None else math.inf for v in values), name)


def _lost_to(name: str, winner: str, candidates: Mapping[str, Mapping[str, float]], policy: PromotionPolicy) -> str:
    """Why an eligible candidate is not the winner: the first metric in ranking order that differs."""
    for metric in (policy.primary_metric, *policy.tie_breakers):
        mine, theirs = _finite(candidates[name].get(metric)), _finite(candidates[winner].get(metric))
        if mine != theirs:
            tied = "" if metric == policy.primary_metric else f"tied on {policy.primary_metric}, "
            return f"eligible, not chosen: {tied}{metric} {_fmt(mine)} < {_fmt(theirs)} of {winner!r}"
    return f"eligible, not chosen: tied with {winner!r} on every ranking metric, name order decides"


# --------------------------------------------------------------------- helpers
def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    """Six significant digits: enough that a value just under a bound never prints equal to it."""
    return f"{value:.6g}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"


class _Section:
    """One mapping of the policy file, with its location for error messages."""

    def __init__(self, raw: Any, source: str, path: str) -> None:
        if not isinstance(raw, dict):
            where = path or "top level"
            raise PolicyError(f"{source}: {where}: expected a mapping, got {type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.source = source
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> None:
        raise PolicyError(f"{self.source}: {self._where(key)}: {message}")

    def only(self, allowed: set[str]) -> None:
        unknown = sorted(set(self.raw) - allowed)
        if unknown:
            where = self.path or "top level"
            raise PolicyError(f"{self.source}: {where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.raw:
            self.fail(key, "missing required key")
        return self._typed(key, kind)

    def optional(self, key: str, kind: type | tuple[type, ...]) -> Any:
        return None if self.raw.get(key) is None else self._typed(key, kind)

    def _typed(self, key: str, kind: type | tuple[type, ...]) -> Any:
        value = self.raw[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(key, f"expected {names}, got {value!r}")
        return value

    def section(self, key: str) -> _Section:
        if key not in self.raw:
            self.fail(key, "missing required key")
        return _Section(self.raw[key], self.source, self._where(key))

    def metric(self, name: Any, where: str) -> str:
        try:
            return check_metric_name(name)
        except PolicyError as exc:
            raise PolicyError(f"{self.source}: {where}: {exc}") from None

    def unit_float(self, value: Any, where: str) -> float:
        got = _finite(value)
        if got is None or not 0.0 <= got <= 1.0:
            raise PolicyError(f"{self.source}: {where}: expected a number in [0, 1], got {value!r}")
        return got

    def margin(self, key: str) -> Margin:
        sec = self.section(key)
        sec.only({"kind", "value"})
        kind = sec.require("kind", str)
        if kind not in ("relative", "absolute"):
            sec.fail("kind", f"must be 'relative' or 'absolute', got {kind!r}")
        value = sec.require("value", (int, float))
        if not math.isfinite(value) or value < 0:
            sec.fail("value", f"must be a finite number >= 0, got {value!r}")
        return Margin(kind=kind, value=float(value))


def metric_names(policy: PromotionPolicy) -> Sequence[str]:
    """Every metric the policy reads, so the evaluation step can be asked for exactly these."""
    return sorted({policy.primary_metric, *policy.thresholds, *policy.tie_breakers})
