"""Run a suite with GX Core 1.x: an ephemeral context, a pandas or Spark data source, optional Data Docs.

Results come back as plain dicts (one per expectation, JSON-safe) so reports and summaries do not depend
on GX's classes. The Spark engine needs Spark type names in ``expect_column_values_to_be_of_type``: the
suite JSON stays written for pandas and is translated here (:data:`SPARK_TYPE_NAMES`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import great_expectations as gx
import numpy as np
import pandas as pd
from great_expectations.checkpoint import Checkpoint, UpdateDataDocsAction
from great_expectations.data_context.types.base import ProgressBarsConfig

from recflow.data.contract import INTERACTION_COLUMNS
from recflow.spark.session import get_spark
from recflow.validation.suites import SuiteSpec, build_suite

SAMPLE_SIZE: Final = 10


def jsonable(value: Any) -> Any:
    """GX results hold numpy scalars and Timestamps; reports want plain JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


DOCS_SITE: Final = "recflow"
_RESULT_FORMAT: Final = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}


#: ``expect_column_values_to_be_of_type``'s ``type_`` is engine-specific: pandas compares dtype or value
#: type names (``str``, ``float64``), GX's Spark engine wants a ``pyspark.sql.types`` class name and raises
#: "No recognized spark types" on anything else. The suite JSON stays written for pandas (its
#: source of truth) and is translated with this table for Spark. The lake's Parquet types map as below.
SPARK_TYPE_NAMES: Final = {
    "str": "StringType",
    "object": "StringType",
    "float64": "DoubleType",
    "int64": "LongType",
    "Int64": "LongType",
    "datetime64[ns, UTC]": "TimestampType",
}


def spark_suite_spec(spec: SuiteSpec) -> SuiteSpec:
    """``spec`` with pandas type names translated for GX's Spark engine (:data:`SPARK_TYPE_NAMES`)."""
    out = []
    for e in spec.expectations:
        kw = e.get("kwargs", {})
        if e["type"] == "expect_column_values_to_be_of_type" and kw.get("type_") in SPARK_TYPE_NAMES:
            e = {**e, "kwargs": {**kw, "type_": SPARK_TYPE_NAMES[kw["type_"]]}}
        out.append(e)
    return SuiteSpec(name=spec.name, expectations=tuple(out), path=spec.path)


class GxRunner:
    """An ephemeral GX context wired to one suite: data source, whole-dataframe batch, definition.

    ``engine="pandas"`` (default) validates a pandas frame in this process; ``engine="spark"`` registers a
    GX Spark data source (``add_spark``) and validates a Spark DataFrame, so GX's metrics run as Spark jobs
    over data that need not fit in memory. With ``docs_dir``, runs go through a Checkpoint whose
    ``UpdateDataDocsAction`` builds GX Data Docs into that folder (a filesystem site: relative links, so the
    folder can be moved or uploaded).

    ``id_columns`` (pandas engine) name the columns that identify a row, e.g. ``user_id``: each result's
    ``sample_ids`` then lists them for the sampled unexpected rows (GX's ``unexpected_index_column_names``),
    so a report says which rows failed, not only which values.
    """

    def __init__(
        self,
        spec: SuiteSpec,
        docs_dir: Path | None = None,
        *,
        engine: str = "pandas",
        id_columns: Sequence[str] = (),
    ) -> None:
        if engine not in ("pandas", "spark"):
            raise ValueError(f"engine must be 'pandas' or 'spark', not {engine!r}")
        self.spec = spark_suite_spec(spec) if engine == "spark" else spec
        self.engine = engine
        self.docs_dir = docs_dir
        self.id_columns = tuple(id_columns)
        self.result_format: dict[str, Any] = dict(_RESULT_FORMAT)
        if self.id_columns:
            self.result_format["unexpected_index_column_names"] = list(self.id_columns)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        uid = uuid.uuid4().hex[:8]
        sources = self.context.data_sources
        source = sources.add_spark(f"spark-{uid}") if engine == "spark" else sources.add_pandas(f"pandas-{uid}")
        batch = source.add_dataframe_asset(spec.name).add_batch_definition_whole_dataframe("whole_dataframe")
        suite = self.context.suites.add(build_suite(self.spec))
        self.definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{spec.name}-{uid}", data=batch, suite=suite)
        )
        self.checkpoint: Checkpoint | None = None
        if docs_dir is not None:
            self.context.add_data_docs_site(
                site_name=DOCS_SITE,
                site_config={  # type: ignore[typeddict-unknown-key]  # SiteBuilder accepts it; GX's TypedDict lags
                    "class_name": "SiteBuilder",
                    "show_how_to_buttons": False,
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
            self.checkpoint = self.context.checkpoints.add(
                Checkpoint(
                    name=f"{spec.name}-{uid}",
                    validation_definitions=[self.definition],
                    actions=[UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
                    result_format=self.result_format,
                )
            )

    def run(self, df: Any, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Validate ``df`` (pandas, or a Spark DataFrame for ``engine="spark"``); one dict per expectation."""
        if self.checkpoint is not None:
            outcome = self.checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=dict(params or {}))
            result = next(iter(outcome.run_results.values()))
        else:
            result = self.definition.run(
                batch_parameters={"dataframe": df},
                expectation_parameters=dict(params or {}),
                result_format=self.result_format,
            )
        out = []
        for r in result.results:
            cfg = r.expectation_config
            if cfg is None:  # GX always sets it on suite runs; guard for the type checker
                continue
            res = r.result or {}
            exc = r.exception_info or {}
            raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
            meta = dict(cfg.meta or {})
            ids = {"sample_ids": self._ids(res.get("partial_unexpected_index_list") or [])} if self.id_columns else {}
            out.append(
                {
                    "expectation": cfg.type,
                    "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
                    "reason": meta.get("reason", cfg.type),
                    "level": meta.get("level", "batch"),
                    "success": bool(r.success) and not raised,
                    "element_count": res.get("element_count"),
                    "unexpected_count": res.get("unexpected_count"),
                    "observed_value": jsonable(res.get("observed_value")),
                    "sample": jsonable(res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
                    "error": exc.get("exception_message") if raised else None,
                    **ids,
                }
            )
        return out

    def _ids(self, rows: list[Any]) -> list[Any]:
        """The ``id_columns`` of GX's sampled unexpected rows (a value each, or a list for several)."""
        one = len(self.id_columns) == 1
        picked = [row[self.id_columns[0]] if one else [row[c] for c in self.id_columns] for row in rows]
        return jsonable(picked[:SAMPLE_SIZE])


#: Spark master of the GX Spark path: two local cores, the size of a worker slot in this deployment.
GX_SPARK_MASTER: Final = "local[2]"


def spark_rows(paths: Sequence[Path]) -> Any:
    """A Spark DataFrame of the contract columns of the given staged Parquet files (accepted + rejected).

    Why read back the staged Parquet rather than the landing file: those rows are already parsed and
    cast by :func:`~recflow.data.landing.coerce_chunk`, so GX's Spark engine judges exactly the values the
    pandas masks judged (Spark's own CSV parsing and casting would differ on edge cases). Lazy: GX's
    metrics are what run it. The pandas path never loads pyspark: :func:`get_spark` imports it when called.
    """
    spark = get_spark("recflow-validate", master=GX_SPARK_MASTER)
    frames = [spark.read.parquet(str(p)).select(*INTERACTION_COLUMNS) for p in paths]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out
