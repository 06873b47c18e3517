"""Validate a whole in-memory frame (training features, batch scores) against a suite: no row policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recflow.validation.gx_runner import GxRunner
from recflow.validation.rules import row_masks
from recflow.validation.suites import load_suite_spec


@dataclass
class FrameValidation:
    """The outcome of :func:`validate_frame`: GX results plus pandas row-rule counts."""

    suite: str
    success: bool
    rows: int
    expectations: list[dict[str, Any]]
    reason_counts: dict[str, int]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.expectations if not r["success"]]


class FrameValidationFailed(Exception):
    """A whole frame (training features, batch scores) broke its suite; ``validation`` has details."""

    def __init__(self, validation: FrameValidation) -> None:
        self.validation = validation
        parts = [
            f"{f['expectation']}({f['column']}) [{f['reason']}]: {f.get('unexpected_count')} unexpected, "
            f"sample {f.get('sample')}, observed {f.get('observed_value')}"
            + (f", error {f['error']}" if f.get("error") else "")
            for f in validation.failed
        ]
        super().__init__(f"suite {validation.suite} failed on {validation.rows} rows: " + "; ".join(parts))


def validate_frame(
    df: pd.DataFrame,
    suite: str | Path,
    params: Mapping[str, Any] | None = None,
    *,
    raise_on_failure: bool = True,
) -> FrameValidation:
    """Validate an in-memory frame against a suite (e.g. ``training_features``, ``batch_scores``).

    No row policy: any failed expectation fails the frame (raises :class:`FrameValidationFailed`
    unless ``raise_on_failure`` is false).
    """
    spec = load_suite_spec(suite)
    results = GxRunner(spec).run(df, params)
    masks = row_masks(df, spec, params) if all(
        r["success"] for r in results if r["level"] == "schema"
    ) else {}  # fmt: skip
    outcome = FrameValidation(
        suite=spec.name,
        success=all(r["success"] for r in results),
        rows=len(df),
        expectations=results,
        reason_counts={k: int(v.sum()) for k, v in masks.items() if v.any()},
    )
    if raise_on_failure and not outcome.success:
        raise FrameValidationFailed(outcome)
    return outcome
