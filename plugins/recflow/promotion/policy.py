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
            return False, f"value: {metric} = {fmt_num(value)} is below the lower_bound {fmt_num(self.lower_bound)}"
        if self.upper_bound is not None and value > self.upper_bound + _TOLERANCE:
            return False, f"value: {metric} = {fmt_num(value)} is above the upper_bound {fmt_num(self.upper_bound)}"
        bounds = " and ".join(
            s
            for s in (
                None if self.lower_bound is None else f">= {fmt_num(self.lower_bound)}",
                None if self.upper_bound is None else f"<= {fmt_num(self.upper_bound)}",
            )
            if s
        )
        return True, f"value: {metric} = {fmt_num(value)} {bounds}"


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
            needs.append(f"absolute >= {fmt_num(self.absolute)}")
        if self.relative is not None:
            ok = ok and rel >= self.relative - _TOLERANCE
            needs.append(f"relative >= {self.relative:+.1%}")
        return ok, (
            f"{who}: {metric} = {fmt_num(value)} vs {fmt_num(reference)} ({self.direction.replace('_', ' ')}): "
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
            allowed.append(f"{fmt_num(self.absolute)} absolute")
        if self.relative is not None:
            ok = ok and rel <= self.relative + _TOLERANCE
            allowed.append(f"{self.relative:.1%} relative")
        change = f"regression {max(worse, 0.0):.6g}" if worse > 0 else "no regression"
        return ok, (
            f"guardrail: {metric} = {fmt_num(value)} vs champion {fmt_num(reference)}: {change}; "
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
class SliceThreshold:
    """A rule for one metric in every slice (``models/slices.yaml``) of a higher-is-better metric: a floor
    (TFMA's ``lower_bound``) and a largest drop against the champion on the same slice of the same
    hold-out (``max_drop``, absolute); a slice with fewer than ``min_size`` users is reported, not judged."""

    lower_bound: float | None
    max_drop: float | None
    min_size: int

    def check(self, metric: str, key: str, value: float, size: float, champion: float | None) -> list[tuple[bool, str]]:
        """(passed, sentence) per rule that applies to this slice."""
        where = f"slice {key}: {metric} = {fmt_num(value)} ({int(size)} users)"
        if size < self.min_size:
            return [(True, f"{where}: below min_size {self.min_size}, reported but not blocking")]
        out = []
        if self.lower_bound is not None:
            ok = value >= self.lower_bound - _TOLERANCE
            out.append((ok, f"{where} {'>=' if ok else '<'} floor {fmt_num(self.lower_bound)}"))
        if self.max_drop is not None and champion is not None:
            drop = champion - value
            ok = drop <= self.max_drop + _TOLERANCE
            out.append((ok, f"{where}, champion {fmt_num(champion)}: drop {fmt_num(drop)} "
                            f"{'<=' if ok else '>'} max_drop {fmt_num(self.max_drop)}"))  # fmt: skip
        return out


@dataclass(frozen=True)
class PromotionPolicy:
    """The validated ``models/promotion.yaml``; build it with :meth:`from_yaml` or :meth:`from_dict`."""

    primary_metric: str
    baseline: str | None
    default: FamilyRules
    families: Mapping[str, FamilyRules] = field(default_factory=dict)
    tie_breakers: tuple[str, ...] = ()
    #: Per-slice rules by metric name, for every family (see :class:`SliceThreshold`).
    slice_thresholds: Mapping[str, SliceThreshold] = field(default_factory=dict)

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
        top.only({"schema_version", "primary_metric", "baseline", "tie_breakers", "default", "families",
                  "slice_thresholds"})  # fmt: skip
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
        slices = _slice_rules(top.section("slice_thresholds")) if top.raw.get("slice_thresholds") else {}
        return cls(primary, baseline, default, families, tie_breakers, slices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary_metric": self.primary_metric,
            "baseline": self.baseline,
            "tie_breakers": list(self.tie_breakers),
            "default": self.default.to_dict(),
            "families": {name: rules.to_dict() for name, rules in self.families.items()},
            "slice_thresholds": {m: vars(r) for m, r in self.slice_thresholds.items()},
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


def _slice_rules(t: _Section) -> dict[str, SliceThreshold]:
    out = {}
    for metric in t.raw:
        s = t.section(metric)
        s.only({"lower_bound", "max_drop", "min_size"})
        lo, drop = s.optional_number("lower_bound"), s.optional_number("max_drop")
        if lo is None and drop is None:
            s.fail("lower_bound", "a slice threshold needs lower_bound and/or max_drop")
        if drop is not None and drop < 0:
            s.fail("max_drop", f"must be >= 0, got {drop!r}")
        min_size = s.optional("min_size", int) or 0
        if min_size < 0:
            s.fail("min_size", f"must be >= 0, got {min_size!r}")
        out[t.metric(metric, f"{t.path}.{metric}")] = SliceThreshold(lo, drop, min_size)
    return out


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


def finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def fmt_num(value: Any) -> str:
    """Six significant digits: enough that a value just under a bound never prints equal to it."""
    return f"{value:.6g}" if isinstance(value, int | float) and not isinstance(value, bool) else "n/a"
