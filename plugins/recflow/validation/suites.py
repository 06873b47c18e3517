"""Suites as data: read ``expectations/<name>.json`` and build the GX suite, failing loudly on a drop.

GX silently drops an invalid entry when a suite is built from a dict, so :func:`build_suite` fails when
the loaded count differs from the file's. The same :class:`SuiteSpec` feeds GX and the pandas row rules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from great_expectations.core.expectation_suite import ExpectationSuite

from recflow.config.settings import project_root

ENV_EXPECTATIONS: Final = "RECFLOW_EXPECTATIONS_DIR"
RAW_SUITE: Final = "raw_interactions"
TRAINING_SUITE: Final = "training_features"
SCORES_SUITE: Final = "batch_scores"


class SuiteLoadError(ValueError):
    """A suite file is missing, malformed, or GX did not accept every expectation in it."""


@dataclass(frozen=True)
class SuiteSpec:
    """A suite as written in ``expectations/<name>.json``; the source of both GX and pandas rules."""

    name: str
    expectations: tuple[dict[str, Any], ...]
    path: str

    def level(self, exp: Mapping[str, Any]) -> str:
        """``schema``, ``row`` or ``batch`` (``meta.level``; default ``batch``: fail, never filter)."""
        return str(exp.get("meta", {}).get("level", "batch"))

    def reason(self, exp: Mapping[str, Any]) -> str:
        return str(exp.get("meta", {}).get("reason", exp["type"]))


def expectations_dir() -> Path:
    """Folder of the suite JSON files (env ``RECFLOW_EXPECTATIONS_DIR`` wins)."""
    raw = os.environ.get(ENV_EXPECTATIONS)
    return Path(raw) if raw else project_root() / "expectations"


def load_suite_spec(name_or_path: str | Path) -> SuiteSpec:
    """Read ``expectations/<name>.json`` (or a path) and check its outline."""
    p = Path(name_or_path)
    if p.suffix != ".json":
        p = expectations_dir() / f"{name_or_path}.json"
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteLoadError(f"cannot read suite {p}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or "expectations" not in doc:
        raise SuiteLoadError(f"suite {p} must be an object with 'name' and 'expectations'")
    exps = doc["expectations"]
    if not isinstance(exps, list) or not all(isinstance(e, dict) and "type" in e for e in exps):
        raise SuiteLoadError(f"suite {p}: every expectation needs a 'type'")
    return SuiteSpec(name=doc["name"], expectations=tuple(exps), path=str(p))


def build_suite(spec: SuiteSpec) -> ExpectationSuite:
    """The GX suite for ``spec``; raises :class:`SuiteLoadError` if GX dropped any expectation."""
    suite = ExpectationSuite(
        name=spec.name,
        expectations=[
            {"type": e["type"], "kwargs": e.get("kwargs", {}), "meta": e.get("meta", {})} for e in spec.expectations
        ],
    )
    if len(suite.expectations) != len(spec.expectations):
        loaded = {e.expectation_type for e in suite.expectations}
        dropped = [e["type"] for e in spec.expectations if e["type"] not in loaded]
        raise SuiteLoadError(
            f"GX loaded {len(suite.expectations)} of {len(spec.expectations)} expectations from {spec.path}; "
            f"invalid or unknown: {dropped or 'see the GX log'}"
        )
    return suite
