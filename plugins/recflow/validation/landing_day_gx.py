"""Run the raw suite's GX once for a landing partition, and say in the report what GX saw (``gx_scope``).

The row rules already ran on every row as pandas masks (:class:`~recflow.validation.row_judge.RowJudge`);
GX gives the schema verdict, the official suite result and the Data Docs. A landing file of at least
``gx_spark_min_bytes`` is judged by GX's Spark engine over every parsed row; a smaller one by the pandas
engine over the :class:`~recflow.validation.hashing.HashSample`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recflow.constants import COL_EVENT
from recflow.validation.gx_runner import GxRunner, spark_rows
from recflow.validation.hashing import HashSample
from recflow.validation.output import LazyWriter
from recflow.validation.policy import Policy
from recflow.validation.row_judge import RowJudge

GxRun = tuple[list[dict[str, Any]] | None, dict[str, Any]]  # GX's results (None: no row parsed), the gx_scope


def run_gx_once(
    runner: GxRunner, params: Mapping[str, Any], judge: RowJudge, sample: HashSample, policy: Policy
) -> GxRun:
    """GX once per partition: on Spark over every parsed row (the judge kept the rejected ones for it),
    else on the hash sample.

    Returns the GX results (None when no row was parsed) and the ``gx_scope`` of the report. Each
    row-level result also gets ``rows_flagged``: the whole batch's count next to GX's count.
    """
    if judge.gx_rejects_w is not None:
        min_bytes = policy.gx_spark_min_bytes
        gx_results, gx_scope = _gx_on_spark(runner, params, judge.accepted_w, judge.gx_rejects_w, min_bytes)
    else:
        gx_results, gx_scope = _gx_on_sample(runner, params, sample)
    for r in gx_results or []:
        if r["level"] == "row":
            r["rows_flagged"] = judge.reasons.get(r["reason"], 0)
    return gx_results, gx_scope


def _gx_on_spark(
    runner: GxRunner,
    params: Mapping[str, Any],
    accepted_w: LazyWriter,
    gx_rejects_w: LazyWriter,
    min_bytes: int | None,
) -> GxRun:
    """GX's Spark engine over every parsed row, accepted and rejected, read back from the staged Parquet."""
    accepted_w.close()  # closing twice is harmless: the caller closes it again after GX
    gx_rejects_w.close()
    parsed = accepted_w.rows + gx_rejects_w.rows
    gx_results = runner.run(spark_rows([accepted_w.path, gx_rejects_w.path]), params) if parsed else None
    return gx_results, {
        "engine": "spark",
        "rows": parsed,
        "of": parsed,
        "fraction_of_hash_range": 1.0,
        "method": f"GX Spark engine (local[2]) over every parsed row, read back from the staged Parquet "
        f"(landing file >= gx_spark_min_bytes={min_bytes})",
    }


def _gx_on_sample(runner: GxRunner, params: Mapping[str, Any], sample: HashSample) -> GxRun:
    """GX's pandas engine on the rows whose event-id hash fell below the sample's limit."""
    sampled = sample.frame()
    gx_results = runner.run(sampled, params) if sampled is not None else None
    return gx_results, {
        "engine": "pandas",
        "rows": sample.rows,
        "of": sample.seen,
        "fraction_of_hash_range": sample.fraction,
        "method": f"rows whose {COL_EVENT} hash is below a limit (at most {sample.cap} rows); row "
        "rules were applied to every row by pandas masks",
    }
