"""Declarative model specs (``models/*.yaml``): defaults, search space and resources per family.

A new model family is a new spec plus its fit in :data:`recflow.training.fitters.FITTERS`; every spec's
``entry_point`` is the one trainer, ``spark_jobs/train.py --family <name>``. The training DAG lists the
specs, so it needs no edit.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recflow.config.settings import project_root
from recflow.scoring.explore_policy import ExplorePolicy
from recflow.scoring.seen import SeenPolicy
from recflow.training.segmentation import Segmentation

T = TypeVar("T")
_REQUIRED = ("name", "entry_point")
_KNOWN = {
    *_REQUIRED,
    "description",
    "params",
    "search_space",
    "resources",
    "baseline",
    "scoring",
    "exploration",
    "segmentation",
}


class SpecError(ValueError):
    """A model spec is missing, malformed or names something that does not exist."""


@dataclass(frozen=True)
class ModelSpec:
    """One model family's spec, validated on load."""

    name: str
    entry_point: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, list[Any]] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    baseline: bool = False
    #: Scoring policy: ``exclude_seen`` (``lake`` or ``none``) and ``seen_lookback_days`` (see recflow.scoring.seen).
    scoring: dict[str, Any] = field(default_factory=dict)
    #: Exploration slots for new items (recflow.scoring.explore); None: the model never explores.
    exploration: ExplorePolicy | None = None
    #: KMeans segments with a model of ``family`` per segment (recflow.training.segments); None: one model.
    segmentation: Segmentation | None = None

    def candidates(self, budget: int, seed: int) -> list[dict[str, Any]]:
        """Up to ``budget`` parameter sets: the defaults first, then seeded samples of the grid.

        Why defaults first: a budget of 1 means "no search", and the defaults are the tuned choice.
        """
        configs = [dict(self.params)]
        if budget <= 1 or not self.search_space:
            return configs[: max(budget, 1)]
        keys = sorted(self.search_space)
        grid = [
            dict(zip(keys, values, strict=True)) for values in itertools.product(*(self.search_space[k] for k in keys))
        ]
        random.Random(seed).shuffle(grid)
        for point in grid:
            config = {**self.params, **point}
            if config not in configs:
                configs.append(config)
            if len(configs) >= budget:
                break
        return configs


def models_dir() -> Path:
    return project_root() / "models"


def load_spec(name: str, directory: Path | None = None) -> ModelSpec:
    """Load ``<directory>/<name>.yaml``; unknown names list the specs that do exist."""
    directory = directory or models_dir()
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_specs(directory)) or "none"
        raise SpecError(f"unknown model {name!r}: no {path} (known models: {known})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path} must hold a mapping, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED if key not in raw]
    unknown = sorted(set(raw) - _KNOWN)
    if missing or unknown:
        raise SpecError(f"{path}: missing keys {missing}, unknown keys {unknown}")
    if raw["name"] != name:
        raise SpecError(f"{path} declares name {raw['name']!r}; the file name says {name!r}")
    space = raw.get("search_space") or {}
    bad = [key for key, values in space.items() if not isinstance(values, list) or not values]
    if bad:
        raise SpecError(f"{path}: search_space entries must be non-empty lists: {bad}")
    if not (project_root() / raw["entry_point"]).is_file():
        raise SpecError(f"{path}: entry_point {raw['entry_point']} does not exist")
    return ModelSpec(
        name=raw["name"],
        entry_point=raw["entry_point"],
        description=raw.get("description", ""),
        params=dict(raw.get("params") or {}),
        search_space=dict(space),
        resources={k: str(v) for k, v in (raw.get("resources") or {}).items()},
        baseline=bool(raw.get("baseline", False)),
        scoring=_section(path, "scoring", raw.get("scoring"), _seen_policy) or {},
        exploration=_section(path, "exploration", raw.get("exploration"), ExplorePolicy.from_dict),
        segmentation=_section(path, "segmentation", raw.get("segmentation"), Segmentation.from_dict),
    )


def _section(path: Path, name: str, raw: Any, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """A spec section read by its own parser at load, so a typo fails before Spark starts: None when the
    spec has no such section, else ``parse(raw)``, with its error (or a non-mapping) as a :class:`SpecError`
    that names the file and the section."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: {name} must be a mapping, got {raw!r}")
    try:
        return parse(raw)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{path}: {name}: {exc}") from exc


def _seen_policy(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``scoring`` mapping as the seen policy reads it (only its two keys: a typo must not pass)."""
    unknown = sorted(set(raw) - {"exclude_seen", "seen_lookback_days"})
    if unknown:
        raise ValueError(f"takes exclude_seen and seen_lookback_days, got unknown keys {unknown}")
    return SeenPolicy.from_dict(raw).as_dict()


#: Files of ``models/`` that are not model specs: the promotion policy and the evaluation slices.
NOT_SPECS = frozenset({"promotion", "slices"})


def available_specs(directory: Path | None = None) -> list[str]:
    """Names of the specs in ``directory`` (the promotion policy and slices files are not models)."""
    directory = directory or models_dir()
    return sorted(p.stem for p in directory.glob("*.yaml") if p.stem not in NOT_SPECS)


def plan_models(
    names: Sequence[str], *, baseline: str | None = "popularity", directory: Path | None = None
) -> list[ModelSpec]:
    """The specs to train for the models chosen in the DAG's Params, baseline last, each once.

    Why a pure function: this is where a typo in the UI form must fail, before any Spark job starts,
    and it has to be testable without Airflow. Names are checked against the spec files that exist
    (not turned into paths first), so ``"../x"`` is just another unknown name; every unknown name is
    reported at once, with the list to choose from.
    """
    if isinstance(names, str) or not names:
        raise SpecError(f"choose at least one model as a list of names, got {names!r}")
    known = available_specs(directory)
    bad = [name for name in names if not isinstance(name, str) or name not in known]
    if bad:
        raise SpecError(f"unknown model(s) {bad}; known models: {', '.join(known) or 'none'}")
    chosen = list(dict.fromkeys([*names, *([baseline] if baseline else [])]))
    return [load_spec(name, directory) for name in chosen]
