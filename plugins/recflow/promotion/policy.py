"""Which candidate, if any, becomes champion: pure rules over metric dicts, no I/O.

The policy lives in ``models/promotion.yaml`` (a ``default`` rule set and per-family overrides), so
reviewers change thresholds without touching code. The rule kinds and their names are TFMA's (MLflow's
``MetricThreshold`` has the same shape), because users know them:

- **value thresholds** (``lower_bound`` / ``upper_bound``, inclusive): floors every candidate must reach;
- **baseline thresholds**: change thresholds against the baseline candidate (``popularity``);
- **change thresholds** against the current champion: a ``direction`` (``higher_is_better`` or
  ``lower_is_better``) and an ``absolute`` and/or ``relative`` size, all of which must be met, and the
  value must be strictly better (a tie never wins);
- **guardrails** (e.g. coverage): against the champion, the metric may not get worse by more than the
  ``absolute`` / ``relative`` tolerance.

On a cold start (no champion) only the value and baseline thresholds apply. All comparisons are meant
for metrics computed on ONE shared hold-out in one run (:mod:`recflow.promotion.compare` re-scores the champion's
artifact beside the candidates); stored metrics from another window are never compared. A candidate
listed in ``stale`` (its training window ends before the champion's) is never promoted automatically.

The winner is the eligible candidate with the best primary metric; ties go to each ``tie_breakers``
metric in turn (higher is better), then to the name, so a decision is repeatable. The baseline is a
yardstick, never a winner. Every rule outcome is a sentence with the numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from recflow.config.settings import project_root

POLICY_SCHEMA_VERSION = 2
_TOLERANCE = 1e-12

#: Metric names :mod:`recflow.evaluation.metrics` produces (``METRICS`` keys); kept here, not imported, so the
#: promotion step does not import pandas. A unit test pins the two together.
KNOWN_METRIC_NAMES: frozenset[str] = frozenset(
    {"precision", "recall", "ndcg", "map", "map_all_relevant", "hit_rate", "coverage"}
)
_METRIC_RE = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>[1-9][0-9]*)$")
Direction = Literal["higher_is_better", "lower_is_better"]
_DIRECTIONS = ("higher_is_better", "lower_is_better")


class PolicyError(ValueError):
    """The promotion policy file is missing, malformed, or names an unknown metric."""


def check_metric_name(name: str) -> str:
    """Return ``name`` if it is ``"<known metric>@<k>"``, else raise :class:`PolicyError` saying why."""
    m = _METRIC_RE.match(name) if isinstance(name, str) else None
    if m is None or m["name"] not in KNOWN_METRIC_NAMES:
        raise PolicyError(f"unknown metric {name!r}: expected '<name>@<k>' with name in {sorted(KNOWN_METRIC_NAMES)}")
    return name


@dataclass(frozen=True)
class ValueThreshold:
    """TFMA ``GenericValueThreshold``: ``lower_bound <= value <= upper_bound`` (either may be absent)."""

    lower_bound: float | None = None
    upper_bound: float | None = None

    def check(self, metric: str, value: float) -> tuple[bool, str]:
        if self.lower_bound is not None and value < self.lower_bound - _TOLERANCE:
            return False, f"value: {metric} = {_fmt(value)} is below the lower_bound {_fmt(self.lower_bound)}"
        if self.upper_bound is not None and value > self.upper_bound + _TOLERANCE:
            return False, f"value: {metric} = {_fmt(value)} is above the upper_bound {_fmt(self.upper_bound)}"
        bounds = " and ".join(
            s
            for s in (
                None if self.lower_bound is None else f">= {_fmt(self.lower_bound)}",
                None if self.upper_bound is None else f"<= {_fmt(self.upper_bound)}",
            )
            if s
        )
        return True, f"value: {metric} = {_fmt(value)} {bounds}"


@dataclass(frozen=True)
class ChangeThreshold:
    """TFMA ``GenericChangeThreshold`` / MLflow ``min_absolute_change``, ``min_relative_change``."""

    direction: Direction = "higher_is_better"
    absolute: float | None = None
    relative: float | None = None

    def _gain(self, value: float, reference: float) -> float:
        return value - reference if self.direction == "higher_is_better" else reference - value

    def check(self, who: str, metric: str, value: float, reference: float) -> tuple[bool, str]:
        gain = self._gain(value, reference)
        rel = math.inf if reference == 0 and gain > 0 else (gain / abs(reference) if reference else 0.0)
        ok = gain > 0
        needs = ["strictly better"]
        if self.absolute is not None:
            ok = ok and gain >= self.absolute - _TOLERANCE
            needs.append(f"absolute >= {_fmt(self.absolute)}")
        if self.relative is not None:
            ok = ok and rel >= self.relative - _TOLERANCE
            needs.append(f"relative >= {self.relative:+.1%}")
        return ok, (
            f"{who}: {metric} = {_fmt(value)} vs {_fmt(reference)} ({self.direction.replace('_', ' ')}): "
            f"change {gain:+.6g} absolute, {rel:+.1%} relative; needs {', '.join(needs)}"
        )


@dataclass(frozen=True)
class Guardrail:
    """May not get worse than the champion by more than ``absolute`` (and/or ``relative``)."""

    direction: Direction = "higher_is_better"
    absolute: float | None = None
    relative: float | None = None

    def check(self, metric: str, value: float, reference: float) -> tuple[bool, str]:
        worse = reference - value if self.direction == "higher_is_better" else value - reference
        rel = worse / abs(reference) if reference else 0.0
        ok = True
        allowed = []
        if self.absolute is not None:
            ok = ok and worse <= self.absolute + _TOLERANCE
            allowed.append(f"{_fmt(self.absolute)} absolute")
        if self.relative is not None:
            ok = ok and rel <= self.relative + _TOLERANCE
            allowed.append(f"{self.relative:.1%} relative")
        change = f"regression {max(worse, 0.0):.6g}" if worse > 0 else "no regression"
        return ok, (
            f"guardrail: {metric} = {_fmt(value)} vs champion {_fmt(reference)}: {change}; "
            f"tolerance {' and '.join(allowed)}"
        )


@dataclass(frozen=True)
class FamilyRules:
    """The rules one family's candidates are judged by."""

    value_thresholds: Mapping[str, ValueThreshold] = field(default_factory=dict)
    baseline_thresholds: Mapping[str, ChangeThreshold] = field(default_factory=dict)
    change_thresholds: Mapping[str, ChangeThreshold] = field(default_factory=dict)
    guardrails: Mapping[str, Guardrail] = field(default_factory=dict)

    def metrics(self) -> set[str]:
        return {*self.value_thresholds, *self.baseline_thresholds, *self.change_thresholds, *self.guardrails}

    def to_dict(self) -> dict[str, Any]:
        def plain(rules: Mapping[str, Any]) -> dict[str, Any]:
            return {m: {k: v for k, v in vars(r).items() if v is not None} for m, r in rules.items()}

        return {
            "value_thresholds": plain(self.value_thresholds),
            "baseline_thresholds": plain(self.baseline_thresholds),
            "change_thresholds": plain(self.change_thresholds),
            "guardrails": plain(self.guardrails),
        }


_RULE_KEYS = {"value_thresholds", "baseline_thresholds", "change_thresholds", "guardrails"}


@dataclass(frozen=True)
class PromotionPolicy:
    """The validated ``models/promotion.yaml``; build it with :meth:`from_yaml` or :meth:`from_dict`."""

    primary_metric: str
    baseline: str | None
    default: FamilyRules
    families: Mapping[str, FamilyRules] = field(default_factory=dict)
    tie_breakers: tuple[str, ...] = ()

    def rules(self, family: str) -> FamilyRules:
        return self.families.get(family, self.default)

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
        top.only({"schema_version", "primary_metric", "baseline", "tie_breakers", "default", "families"})
        schema = top.require("schema_version", int)
        if schema != POLICY_SCHEMA_VERSION:
            top.fail("schema_version", f"is {schema}, this code reads version {POLICY_SCHEMA_VERSION}")
        primary = top.metric(top.require("primary_metric", str), "primary_metric")
        baseline = top.optional("baseline", str)
        tie_raw = top.optional("tie_breakers", list) or []
        tie_breakers = tuple(top.metric(t, f"tie_breakers[{i}]") for i, t in enumerate(tie_raw))
        default_raw = top.section("default")
        default = _rules(default_raw, {})
        families: dict[str, FamilyRules] = {}
        if top.raw.get("families") is not None:
            fams = top.section("families")
            for name in fams.raw:
                # a family section overrides the default's rule kinds it names, keeping the others
                families[str(name)] = _rules(fams.section(name), default_raw.raw)
        return cls(primary, baseline, default, families, tie_breakers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary_metric": self.primary_metric,
            "baseline": self.baseline,
            "tie_breakers": list(self.tie_breakers),
            "default": self.default.to_dict(),
            "families": {name: rules.to_dict() for name, rules in self.families.items()},
        }


def _rules(sec: _Section, inherited: Mapping[str, Any]) -> FamilyRules:
    sec.only(_RULE_KEYS)
    merged = {**inherited, **sec.raw}
    view = _Section(merged, sec.source, sec.path)

    def table(key: str) -> _Section | None:
        return None if merged.get(key) is None else view.section(key)

    values: dict[str, ValueThreshold] = {}
    base: dict[str, ChangeThreshold] = {}
    change: dict[str, ChangeThreshold] = {}
    guard: dict[str, Guardrail] = {}
    if (t := table("value_thresholds")) is not None:
        for metric in t.raw:
            s = t.section(metric)
            s.only({"lower_bound", "upper_bound"})
            lo, hi = s.optional_number("lower_bound"), s.optional_number("upper_bound")
            if lo is None and hi is None:
                s.fail("lower_bound", "a value threshold needs lower_bound and/or upper_bound")
            values[t.metric(metric, f"{t.path}.{metric}")] = ValueThreshold(lo, hi)
    for key, out in (("baseline_thresholds", base), ("change_thresholds", change)):
        if (t := table(key)) is not None:
            for metric in t.raw:
                direction, absolute, relative = _sized(t.section(metric))
                out[t.metric(metric, f"{t.path}.{metric}")] = ChangeThreshold(direction, absolute, relative)
    if (t := table("guardrails")) is not None:
        for metric in t.raw:
            direction, absolute, relative = _sized(t.section(metric))
            if absolute is None and relative is None:
                t.fail(metric, "a guardrail needs an absolute and/or relative tolerance")
            guard[t.metric(metric, f"{t.path}.{metric}")] = Guardrail(direction, absolute, relative)
    return FamilyRules(values, base, change, guard)


def _sized(s: _Section) -> tuple[Direction, float | None, float | None]:
    s.only({"direction", "absolute", "relative"})
    direction = s.require("direction", str)
    if direction not in _DIRECTIONS:
        s.fail("direction", f"must be one of {list(_DIRECTIONS)}, got {direction!r}")
    absolute, relative = s.optional_number("absolute"), s.optional_number("relative")
    for name, v in (("absolute", absolute), ("relative", relative)):
        if v is not None and v < 0:
            s.fail(name, f"must be >= 0, got {v!r}")
    return direction, absolute, relative  # type: ignore[return-value]


def default_policy_path() -> Path:
    return project_root() / "models" / "promotion.yaml"


def load_policy(path: str | Path | None = None) -> PromotionPolicy:
    """The policy in ``path`` (default: ``models/promotion.yaml`` in the project root)."""
    return PromotionPolicy.from_yaml(default_policy_path() if path is None else path)


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


def decide(
    candidates: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, float] | None,
    policy: PromotionPolicy,
    *,
    families: Mapping[str, str] | None = None,
    stale: Mapping[str, str] | None = None,
) -> Decision:
    """Pick the champion-to-be among ``candidates`` (name to metrics on the shared hold-out), or none.

    ``champion`` holds the current champion's metrics re-scored on the SAME hold-out (``None`` on a
    cold start). ``families`` maps a candidate name to its family for the per-family rules (default:
    the name). ``stale`` maps names to a sentence saying why their training window is older than the
    champion's: those are rejected.
    """
    pm = policy.primary_metric
    stale = stale or {}
    base_metrics = candidates.get(policy.baseline, {}) if policy.baseline else {}
    verdicts: list[CandidateVerdict] = []
    for name in sorted(candidates):
        metrics = candidates[name]
        if name == policy.baseline:
            shown = _fmt(metrics.get(pm))
            verdicts.append(
                CandidateVerdict(name, False, (f"baseline: the yardstick, never promoted ({pm} = {shown})",))
            )
            continue
        rules = policy.rules((families or {}).get(name, name))
        passed, failed = _check(metrics, champion, base_metrics, rules, pm)
        if name in stale:
            failed.append(f"window: {stale[name]}")
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
    return Decision(winner=winner, primary_metric=pm, verdicts=tuple(final), cold_start=champion is None)


def _check(
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float],
    rules: FamilyRules,
    pm: str,
) -> tuple[list[str], list[str]]:
    """(passed, failed) rule sentences for one candidate; every rule is checked, none short-circuits."""
    passed: list[str] = []
    failed: list[str] = []

    def record(ok: bool, text: str) -> None:
        (passed if ok else failed).append(text)

    if _finite(metrics.get(pm)) is None:
        failed.append(f"{pm} is missing or not a finite number ({metrics.get(pm)!r})")
    for metric, threshold in sorted(rules.value_thresholds.items()):
        got = _finite(metrics.get(metric))
        if got is None:
            failed.append(f"value: {metric} is missing or not a finite number ({metrics.get(metric)!r})")
        else:
            record(*threshold.check(metric, got))
    _against(metrics, baseline, rules.baseline_thresholds, "baseline", record, failed)
    if champion is None:
        passed.append("champion: none yet (cold start): only value thresholds and the baseline apply")
        return passed, failed
    _against(metrics, champion, rules.change_thresholds, "champion", record, failed)
    for metric, guard in sorted(rules.guardrails.items()):
        got, ref = _finite(metrics.get(metric)), _finite(champion.get(metric))
        if got is None or ref is None:
            failed.append(f"guardrail: {metric} missing for the candidate or the champion, so it cannot pass")
        else:
            record(*guard.check(metric, got, ref))
    return passed, failed


def _against(
    metrics: Mapping[str, float],
    reference: Mapping[str, float],
    thresholds: Mapping[str, ChangeThreshold],
    who: str,
    record: Any,
    failed: list[str],
) -> None:
    for metric, threshold in sorted(thresholds.items()):
        got, ref = _finite(metrics.get(metric)), _finite(reference.get(metric))
        if got is None or ref is None:
            failed.append(f"{who}: {metric} missing for the candidate or the {who}, so the rule cannot pass")
        else:
            record(*threshold.check(who, metric, got, ref))


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

    def optional_number(self, key: str) -> float | None:
        value = self.optional(key, (int, float))
        if value is not None and not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {value!r}")
        return None if value is None else float(value)

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


def metric_names(policy: PromotionPolicy) -> Sequence[str]:
    """Every metric the policy reads, so the evaluation step can be asked for exactly these."""
    names = {policy.primary_metric, *policy.tie_breakers, *policy.default.metrics()}
    for rules in policy.families.values():
        names |= rules.metrics()
    return sorted(names)
