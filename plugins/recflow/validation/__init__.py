"""Validate interaction data against versioned Great Expectations suites; accept, quarantine, reconcile.

Why this shape:

* **Suites are data, not code.** They live as JSON in ``expectations/`` and are loaded with GX Core 1.x.
  GX silently drops an invalid entry when a suite is built from a dict, so :func:`build_suite` fails
  loudly when the loaded count differs from the file's.
* **One rule, two engines.** Every expectation whose ``meta.level`` is ``"row"`` is also translated into a
  pandas mask (:func:`row_masks`), so each rejected row carries its ``reject_reason`` while GX produces the
  official result for the report. Rules are written once, in the JSON.
* **Row policy vs batch policy.** If the share of rejected rows is at most ``threshold`` (default 1 %)
  and the batch-level checks pass, rejected rows go to quarantine and the rest to the lake; otherwise the
  whole batch is quarantined, the lake is left untouched and :class:`ValidationFailed` is raised with a
  summary naming the failed expectations with counts and sample values.
* **Nothing is lost.** ``landed == accepted + quarantined`` is checked against the rows actually written.
  A file that cannot be read as a whole (empty, wrong columns, truncated gzip) is copied verbatim into the
  quarantine next to the report.
* **Idempotent per data interval.** Outputs are staged and published as a whole partition by a
  :class:`~recflow.data.lake.LakeStore` (an attempt made visible in one step on disk and on S3), so a
  re-run replaces ``interactions/event_date=D`` and ``quarantine/date=D``, never appends.
* **Bounded memory.** The landing file is processed chunk by chunk; duplicate detection keeps 64-bit
  hashes of event ids (collision odds ~ n^2 / 2^65, about 3e-6 at 10^7 rows), not the ids.

Batch-level checks (volume vs the trailing 7-day mean, unknown user/item rates, reject share) need the
whole batch, so they are computed in pandas and reported next to the GX results in the same shape.

The package, one job per module: :mod:`~recflow.validation.suites` (suite JSON -> GX),
:mod:`~recflow.validation.rules` (the same rules as pandas masks), :mod:`~recflow.validation.hashing`
(duplicates and the GX sample in bounded memory), :mod:`~recflow.validation.gx_runner` (GX runs),
:mod:`~recflow.validation.policy` (policy knobs, batch checks), :mod:`~recflow.validation.output`
(schemas, writers), :mod:`~recflow.validation.report` (result, reports), :mod:`~recflow.validation.row_judge`
(every row of a landing file judged and written out), :mod:`~recflow.validation.landing_day_gx` (GX once per
landing partition), :mod:`~recflow.validation.landing_day` (the pipeline of one day, asked for with a
:class:`LandingDayRequest`), :mod:`~recflow.validation.frame` (whole-frame suites) and
:mod:`~recflow.validation.chunked` (a suite on the driver over group-complete chunks of a frame).
"""

from recflow.data.casting import join_reasons
from recflow.validation.frame import FrameValidation, FrameValidationFailed, validate_frame
from recflow.validation.gx_runner import GX_SPARK_MASTER, SPARK_TYPE_NAMES, GxRunner, spark_rows, spark_suite_spec
from recflow.validation.hashing import HashSample, _SeenHashes, hash_values
from recflow.validation.landing_day import (
    DEFAULT_GX_SAMPLE_ROWS,
    REASON_BATCH,
    LandingDayRequest,
    validate_partition,
)
from recflow.validation.output import (
    ACCEPTED_SCHEMA,
    COL_LINE_NO,
    COL_RAW_LINE,
    COL_REASON,
    REJECT_SCHEMA,
    lake_partition,
    quarantine_partition,
)
from recflow.validation.policy import Policy, batch_checks, lake_history_counts
from recflow.validation.report import ValidationFailed, ValidationResult, render_html
from recflow.validation.row_judge import REASON_SEEN
from recflow.validation.rules import UnsupportedRowRule, row_masks
from recflow.validation.suites import (
    ENV_EXPECTATIONS,
    RAW_SUITE,
    SCORES_SUITE,
    TRAINING_SUITE,
    SuiteLoadError,
    SuiteSpec,
    build_suite,
    expectations_dir,
    load_suite_spec,
)

__all__ = [
    "ACCEPTED_SCHEMA",
    "COL_LINE_NO",
    "COL_RAW_LINE",
    "COL_REASON",
    "DEFAULT_GX_SAMPLE_ROWS",
    "ENV_EXPECTATIONS",
    "GX_SPARK_MASTER",
    "RAW_SUITE",
    "REASON_BATCH",
    "REASON_SEEN",
    "REJECT_SCHEMA",
    "SCORES_SUITE",
    "SPARK_TYPE_NAMES",
    "TRAINING_SUITE",
    "FrameValidation",
    "FrameValidationFailed",
    "GxRunner",
    "HashSample",
    "LandingDayRequest",
    "Policy",
    "SuiteLoadError",
    "SuiteSpec",
    "UnsupportedRowRule",
    "ValidationFailed",
    "ValidationResult",
    "_SeenHashes",
    "batch_checks",
    "build_suite",
    "expectations_dir",
    "hash_values",
    "join_reasons",
    "lake_history_counts",
    "lake_partition",
    "load_suite_spec",
    "quarantine_partition",
    "render_html",
    "row_masks",
    "spark_rows",
    "spark_suite_spec",
    "validate_frame",
    "validate_partition",
]
