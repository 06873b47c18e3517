"""Run a suite with GX's pandas engine on the driver over group-complete chunks of a frame.

Why the driver, why pandas: the frames validated this way are already reduced to one row per group
(``batch_scores``: one row per user, :mod:`recflow.batch.checks`), so they are ten times smaller than
the rows they describe. GX is imported once, in the driver; running it on the Python workers cost a GX
import in every worker (seconds each, ~25 s under load). GX's Spark engine runs several Spark jobs per
expectation (about 12 s for the 22 rules of ``batch_scores`` over 10^5 cached rows on 2 cores, against
~0.5 s for pandas).

Bounded memory: the caller hands the frame over in chunks of about :data:`CHUNK_ROWS` rows, each holding
every row of its groups (``batch_scores``: buckets by a hash of the user id). Row rules and column-pair
rules are per row; uniqueness of ``group_col`` (or of column sets that include it) holds globally once it
holds within each chunk; ``expect_table_columns_to_match_set`` sees the same columns in every chunk.
Suites with other table-level rules (row counts, column means, uniqueness without the group column)
would differ chunk by chunk, and :func:`check_decomposable` refuses them. Per-chunk ``facts`` (e.g.
users scored) are added up, so counts per group are exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from recflow.validation.gx_runner import SAMPLE_SIZE, GxRunner
from recflow.validation.suites import SuiteSpec

if TYPE_CHECKING:
    import pandas as pd

#: Rows per GX run: a chunk of the per-user ``batch_scores`` frame is ~360 bytes a row in pandas, so
#: 250k rows keep the driver's frame under ~100 MB; GX's fixed cost per run (~0.1 s) stays small.
CHUNK_ROWS: Final = 250_000
#: Expectation types whose result over group-complete chunks equals the result over the whole frame
#: (uniqueness only when its columns include the group column).
ROW_DECOMPOSABLE: Final = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_pair_values_to_be_equal",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
    }
)
_UNIQUE: Final = frozenset({"expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"})
Facts = Callable[["pd.DataFrame"], Mapping[str, int]]
log = logging.getLogger(__name__)


class NotDecomposable(ValueError):
    """The suite has a rule whose chunked result could differ from the whole frame's."""


def check_decomposable(spec: SuiteSpec, group_col: str) -> None:
    for e in spec.expectations:
        kind, kwargs = e["type"], e.get("kwargs", {})
        columns = kwargs.get("column_list") or ([kwargs["column"]] if "column" in kwargs else [])
        if kind not in ROW_DECOMPOSABLE or (kind in _UNIQUE and group_col not in columns):
            raise NotDecomposable(
                f"suite {spec.name}: {kind}({columns}) cannot be checked chunk by chunk of {group_col}; "
                "run it on the whole frame"
            )


def merge_results(results: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One result per expectation over all chunks: counts added, failure if any chunk failed, samples
    (values and ids) taken from the failed chunks."""
    merged: list[dict[str, Any]] = []
    for per_chunk in zip(*results, strict=True):
        first = dict(per_chunk[0])
        failed = [r for r in per_chunk if not r["success"]]
        first["success"] = not failed
        for field in ("element_count", "unexpected_count"):
            values = [r[field] for r in per_chunk if r.get(field) is not None]
            first[field] = sum(values) if values else None
        if failed:
            first["observed_value"] = failed[0]["observed_value"]
            first["error"] = next((r["error"] for r in failed if r.get("error")), None)
        for field in ("sample", "sample_ids"):
            if field in first:
                sample = [v for r in failed for v in r.get(field) or []]
                first[field] = sample[:SAMPLE_SIZE]
        merged.append(first)
    return merged


def run_suite_in_chunks(
    chunks: Iterable[pd.DataFrame],
    spec: SuiteSpec,
    params: Mapping[str, Any] | None,
    *,
    group_col: str,
    facts: Facts | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """GX results (one dict per expectation, as :meth:`GxRunner.run`, with ``sample_ids`` naming the
    ``group_col`` values of unexpected rows) and the summed ``facts`` over all ``chunks``.

    The caller guarantees the chunks are group-complete: every row of a ``group_col`` value is in one
    chunk. Chunks are read one at a time, so the driver holds one chunk's rows.
    """
    check_decomposable(spec, group_col)
    chosen = dict(params or {})
    runner = GxRunner(spec, id_columns=(group_col,))
    results: list[list[dict[str, Any]]] = []
    totals: dict[str, int] = {}
    spent = {"fetch": 0.0, "gx": 0.0}
    rows = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        t1 = time.perf_counter()
        spent["fetch"] += t1 - t0
        rows += len(chunk)
        results.append(runner.run(chunk, chosen))
        for name, value in (facts(chunk) if facts else {}).items():
            totals[name] = totals.get(name, 0) + int(value)
        t0 = time.perf_counter()
        spent["gx"] += t0 - t1
    if rows == 0:
        raise ValueError(f"suite {spec.name}: there are no rows to validate")
    log.info(
        "suite %s over %d rows in %d chunk(s): fetch %.1f s, GX %.1f s",
        spec.name, rows, len(results), spent["fetch"], spent["gx"],
    )  # fmt: skip
    return merge_results(results), totals
