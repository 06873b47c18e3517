"""Run a suite with GX's pandas engine on the Spark executors, one run per group-complete chunk.

Why not GX's Spark engine or one driver-side ``toPandas``: GX's Spark engine runs several Spark jobs per
expectation (about 40 scans for the 17 rules of ``batch_scores``), and a driver-side frame grows with the
night. Here every Python worker validates the rows it already holds, in chunks of about
:data:`CHUNK_ROWS`, and sends back one small JSON summary per chunk; the driver adds them up. The whole
suite is one Spark pass, on all cores, in memory bounded by the chunk size.

When the chunked result equals the whole-frame result: the frame must be partitioned by ``group_col``
(every row of a group in one Spark partition, as a ``Window.partitionBy`` or a join on that key
leaves it) and sorted by it within each partition; chunks are then cut only between groups. Row-level
rules and column-pair rules are per row; uniqueness of column sets that include ``group_col`` holds
globally once it holds within each group; ``expect_table_columns_to_match_set`` sees the same columns
in every chunk. Suites with other table-level rules (row counts, column means, uniqueness without the
group column) must not run this way, and :func:`check_decomposable` refuses them.

Per-chunk ``facts`` (e.g. users scored) are added up too, so distinct counts per group are exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from recflow.validation.suites import SuiteSpec

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from recflow.validation.gx_runner import GxRunner

#: Rows per GX run on a worker: large enough that GX's fixed cost per run (~0.2 s) is small, small
#: enough that a worker's pandas frame stays around 100 MB.
CHUNK_ROWS: Final = 200_000
#: Expectation types whose result over group-complete chunks equals the result over the whole frame
#: (compound uniqueness only when its columns include the group column).
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
        "expect_compound_columns_to_be_unique",
    }
)
Facts = Callable[["pd.DataFrame"], Mapping[str, int]]

_worker_runners: dict[str, GxRunner] = {}


class NotDecomposable(ValueError):
    """The suite has a rule whose chunked result could differ from the whole frame's."""


def check_decomposable(spec: SuiteSpec, group_col: str) -> None:
    for e in spec.expectations:
        kind = e["type"]
        columns = e.get("kwargs", {}).get("column_list") or []
        compound = kind == "expect_compound_columns_to_be_unique"
        if kind not in ROW_DECOMPOSABLE or (compound and group_col not in columns):
            raise NotDecomposable(
                f"suite {spec.name}: {kind}({columns or e.get('kwargs', {}).get('column')}) cannot be checked "
                f"chunk by chunk of {group_col}; run it on the whole frame"
            )


def _runner(spec: SuiteSpec) -> GxRunner:
    """One GX context per Python worker and suite (building one costs about a second)."""
    from recflow.validation.gx_runner import GxRunner

    key = f"{spec.name}:{spec.path}:{hash(spec.expectations.__repr__())}"
    if key not in _worker_runners:
        _worker_runners[key] = GxRunner(spec)
    return _worker_runners[key]


def group_chunks(batches: Iterator[pd.DataFrame], group_col: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Frames of at least ``chunk_rows`` rows (the last may be smaller), cut only between groups.

    ``batches`` must be sorted by ``group_col`` (nulls first); a chunk that is not is an error, because
    a group split across chunks could hide a duplicate.
    """
    import pandas as pd

    pending: list[pd.DataFrame] = []
    size = 0
    last_key: str | None = None
    for batch in batches:
        if not len(batch):
            continue
        pending.append(batch)
        size += len(batch)
        if size < chunk_rows:
            continue
        frame = pd.concat(pending, ignore_index=True)
        keys = frame[group_col].fillna("")  # nulls sort first, as "" does: order checks see them as one key
        tail = keys.iloc[-1]
        start = len(frame) - int((keys.to_numpy()[::-1] != tail).argmax()) if (keys != tail).any() else 0
        if start == 0:  # one group so far: keep collecting
            pending, size = [frame], len(frame)
            continue
        done = frame.iloc[:start]
        last_key = _check_sorted(keys.iloc[:start], last_key, group_col)
        yield done
        pending, size = [frame.iloc[start:].reset_index(drop=True)], len(frame) - start
    if pending:
        frame = pd.concat(pending, ignore_index=True)
        _check_sorted(frame[group_col].fillna(""), last_key, group_col)
        yield frame


def _check_sorted(keys: pd.Series, after: str | None, group_col: str) -> str:
    if not keys.is_monotonic_increasing or (after is not None and keys.iloc[0] <= after):
        raise ValueError(f"rows are not sorted by {group_col} within the partition: chunks would split a group")
    return str(keys.iloc[-1])


def _merge(results: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One result per expectation over all chunks: counts added, failure if any chunk failed."""
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
        sample = [v for r in failed for v in r.get("sample") or []]
        first["sample"] = sample[: len(per_chunk[0].get("sample") or []) or 10]
        merged.append(first)
    return merged


def run_suite_on_partitions(
    frame: DataFrame,
    spec: SuiteSpec,
    params: Mapping[str, Any] | None,
    *,
    group_col: str,
    facts: Facts | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """GX results (one dict per expectation, as :meth:`GxRunner.run`) and summed ``facts`` for ``frame``.

    ``frame`` must be partitioned and sorted by ``group_col`` (module docstring). One Spark job.
    """
    check_decomposable(spec, group_col)
    chosen = dict(params or {})

    def validate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pandas as pd

        runner = _runner(spec)
        for chunk in group_chunks(batches, group_col, chunk_rows):
            results = runner.run(chunk, chosen)
            counted = {name: int(v) for name, v in (facts(chunk) if facts else {}).items()}
            yield pd.DataFrame({"results": [json.dumps(results)], "facts": [json.dumps(counted)]})

    rows = frame.mapInPandas(validate, schema="results string, facts string").collect()
    if not rows:
        raise ValueError(f"suite {spec.name}: the frame has no rows to validate")
    results = _merge([json.loads(r["results"]) for r in rows])
    totals: dict[str, int] = {}
    for r in rows:
        for name, value in json.loads(r["facts"]).items():
            totals[name] = totals.get(name, 0) + value
    return results, totals
