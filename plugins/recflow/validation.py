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
  :class:`~recflow.data.stores.LakeStore` (a rename swap on disk, a ``_SUCCESS`` manifest commit on S3), so a
  re-run replaces ``interactions/event_date=D`` and ``quarantine/date=D``, never appends.
* **Bounded memory.** The landing file is processed chunk by chunk; duplicate detection keeps 64-bit
  hashes of event ids (collision odds ~ n^2 / 2^65, about 3e-6 at 10^7 rows), not the ids.

Batch-level checks (volume vs the trailing 7-day mean, unknown user/item rates, reject share) need the
whole batch, so they are computed in pandas and reported next to the GX results in the same shape.
"""

from __future__ import annotations

import html
import json
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from great_expectations.checkpoint import Checkpoint, UpdateDataDocsAction
from great_expectations.core.expectation_suite import ExpectationSuite
from great_expectations.data_context.types.base import ProgressBarsConfig

from recflow.config import project_root
from recflow.constants import COL_AMOUNT, COL_EVENT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER
from recflow.data.casting import join_reasons
from recflow.data.contract import INTERACTION_COLUMNS, day_bounds, partition_dir_name
from recflow.data.landing import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_CHUNK_ROWS,
    LandingChunk,
    LandingError,
    bad_lines_frame,
    coerce_chunk,
    iter_landing,
)
from recflow.data.stores import LakeStore, basename, copy_to_local, input_size, join_uri, open_store, upload_tree

if TYPE_CHECKING:
    from recflow.config import S3Settings

log = logging.getLogger(__name__)

ENV_EXPECTATIONS: Final = "RECFLOW_EXPECTATIONS_DIR"
RAW_SUITE: Final = "raw_interactions"
TRAINING_SUITE: Final = "training_features"
SCORES_SUITE: Final = "batch_scores"

COL_REASON: Final = "reject_reason"
COL_RAW_LINE: Final = "raw_line"
COL_LINE_NO: Final = "line_no"
REASON_BATCH: Final = "batch_rejected"
REASON_SEEN: Final = "duplicate_event_id_across_days"
SAMPLE_SIZE: Final = 10
#: Rows GX validates per partition (see :func:`validate_partition`); smaller partitions are seen whole.
DEFAULT_GX_SAMPLE_ROWS: Final = 100_000

ACCEPTED_SCHEMA: Final = pa.schema(
    [
        pa.field(COL_EVENT, pa.string(), nullable=False),
        pa.field(COL_USER, pa.string(), nullable=False),
        pa.field(COL_ITEM, pa.string(), nullable=False),
        pa.field(COL_TS, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(COL_QUANTITY, pa.int64(), nullable=False),
        pa.field(COL_AMOUNT, pa.float64()),
        pa.field(COL_RATING, pa.float64()),
    ]
)
LINES_SCHEMA: Final = pa.schema([pa.field(COL_LINE_NO, pa.int64(), nullable=False)])
REJECT_SCHEMA: Final = pa.schema(
    [
        pa.field(COL_EVENT, pa.string()),
        pa.field(COL_USER, pa.string()),
        pa.field(COL_ITEM, pa.string()),
        pa.field(COL_TS, pa.timestamp("us", tz="UTC")),
        pa.field(COL_QUANTITY, pa.int64()),
        pa.field(COL_AMOUNT, pa.float64()),
        pa.field(COL_RATING, pa.float64()),
        pa.field(COL_REASON, pa.string(), nullable=False),
        pa.field(COL_RAW_LINE, pa.string()),
        pa.field(COL_LINE_NO, pa.int64()),
    ]
)


# ------------------------------------------------------------------------------------------ suites


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


# ------------------------------------------------------------------------------- pandas row rules


class UnsupportedRowRule(ValueError):
    """A ``row``-level expectation type that has no pandas translation (make it ``batch`` or add one)."""


def _param(value: Any, params: Mapping[str, Any]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        name = value["$PARAMETER"]
        if name not in params:
            raise KeyError(f"the suite needs the run parameter {name!r}")
        return params[name]
    return value


def _as_bool(mask: pd.Series | np.ndarray) -> np.ndarray:
    if isinstance(mask, pd.Series):
        return mask.fillna(False).to_numpy(dtype=bool)
    return np.asarray(mask, dtype=bool)


class _SeenHashes:
    """64-bit hashes of values already seen (earlier chunks, earlier days): 8 bytes per value, fast lookup.

    Kept as one sorted array. Appending a chunk and re-sorting is linear (NumPy's stable sort is a
    timsort, which merges the two sorted runs), and lookups are binary searches: no per-chunk
    ``np.unique`` over everything seen so far, which made a 10^7-row file quadratic.
    """

    def __init__(self, values: Iterable[str] | np.ndarray | None = None) -> None:
        self._parts: list[np.ndarray] = []
        self._merged = np.empty(0, dtype=np.uint64)
        if values is not None:
            self.add(hash_values(values))

    def add(self, hashes: np.ndarray) -> None:
        if len(hashes):
            self._parts.append(np.sort(hashes))

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        if self._parts:
            self._merged = np.concatenate([self._merged, *self._parts])
            self._merged.sort(kind="stable")
            self._parts = []
        if not len(self._merged) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool)
        idx = np.searchsorted(self._merged, hashes)
        return self._merged[np.minimum(idx, len(self._merged) - 1)] == hashes


class HashSample:
    """A bounded, deterministic sample of a stream of rows: those whose key hash is below a limit.

    The limit starts at the top of the hash range (keep everything) and halves whenever more than ``cap``
    rows are held, so memory is bounded by ``cap`` rows plus one chunk. A row's membership depends only on
    its hash and the final limit, so the sample is the same whatever the chunk size, and every copy of a
    duplicated key is in it or none is (GX's uniqueness check on the sample still sees duplicates).
    Inputs of at most ``cap`` rows are kept whole.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.limit = int(np.iinfo(np.uint64).max)
        self._parts: list[tuple[pd.DataFrame, np.ndarray]] = []
        self.rows = 0
        self.seen = 0

    @property
    def fraction(self) -> float:
        """Share of the hash range kept (1.0: every row)."""
        return (self.limit + 1) / 2.0**64

    def add(self, df: pd.DataFrame, hashes: np.ndarray) -> None:
        self.seen += len(df)
        keep = hashes <= np.uint64(self.limit)
        if keep.any():
            self._parts.append((df[keep], hashes[keep]))
            self.rows += int(keep.sum())
        while self.rows > self.cap:
            self.limit //= 2
            lim = np.uint64(self.limit)
            self._parts = [(d[h <= lim], h[h <= lim]) for d, h in self._parts]
            self.rows = sum(len(d) for d, _ in self._parts)

    def frame(self) -> pd.DataFrame | None:
        """The sampled rows in input order (None when no row was added)."""
        frames = [d for d, _ in self._parts if len(d)]
        return pd.concat(frames, ignore_index=True) if frames else None


def hash_values(values: Iterable[str] | np.ndarray | pd.Series) -> np.ndarray:
    """Stable 64-bit hashes of strings (same in every process), used for duplicate detection.

    ``categorize=False``: pandas' default factorizes first to hash each distinct value once, which only
    pays off with many repeats; event ids are (nearly) all distinct, so it was ~70 % of the hashing time.
    The hashes are identical either way.
    """
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object)
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    return pd.util.hash_array(arr, categorize=False) if len(arr) else np.empty(0, dtype=np.uint64)


def row_masks(
    df: pd.DataFrame,
    spec: SuiteSpec,
    params: Mapping[str, Any] | None = None,
    *,
    seen: Mapping[str, _SeenHashes] | None = None,
    hashes: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per ``row`` rule of ``spec``, a boolean array marking the rows that break it (keyed by reason).

    Mirrors GX semantics: nulls pass value rules (``not_null`` catches them); for uniqueness the first
    copy is kept and later copies are marked, so the accepted rows are unique. ``seen`` maps a column
    to hashes seen before this frame (earlier chunks), making uniqueness span the whole file.
    ``hashes`` maps a column to :func:`hash_values` of it, when the caller already has them: duplicate
    search on 64-bit integers is several times faster than on Python strings.
    """
    params = params or {}
    out: dict[str, np.ndarray] = {}
    for exp in spec.expectations:
        if spec.level(exp) != "row":
            continue
        kind, kw = exp["type"], exp.get("kwargs", {})
        col = kw.get("column")
        if kind == "expect_column_values_to_not_be_null":
            mask = df[col].isna().to_numpy()
        elif kind == "expect_column_values_to_be_between":
            s = df[col]
            lo, hi = _param(kw.get("min_value"), params), _param(kw.get("max_value"), params)
            bad = pd.Series(False, index=df.index)
            if lo is not None:
                lo = pd.Timestamp(lo) if isinstance(lo, datetime) else lo
                bad |= (s <= lo) if kw.get("strict_min") else (s < lo)
            if hi is not None:
                hi = pd.Timestamp(hi) if isinstance(hi, datetime) else hi
                bad |= (s >= hi) if kw.get("strict_max") else (s > hi)
            mask = _as_bool(bad & s.notna())
        elif kind == "expect_column_values_to_be_unique":
            present = df[col].notna().to_numpy()
            given = hashes.get(col) if hashes is not None else None
            if given is not None:
                mask = pd.Series(given).duplicated(keep="first").to_numpy() & present
            else:
                mask = df[col].duplicated(keep="first").to_numpy() & present
            if seen is not None and col in seen:
                h = given if given is not None else hash_values(df[col].to_numpy())
                mask |= seen[col].contains(h) & present
                seen[col].add(h[present])
        elif kind == "expect_compound_columns_to_be_unique":
            mask = df.duplicated(subset=list(kw["column_list"]), keep="first").to_numpy()
        elif kind == "expect_column_values_to_be_in_set":
            values = _param(kw["value_set"], params)
            mask = _as_bool(df[col].notna() & ~df[col].isin(values))
        elif kind == "expect_column_values_to_match_regex":
            mask = _as_bool(df[col].notna() & ~df[col].astype("string").str.match(kw["regex"]))
        else:
            raise UnsupportedRowRule(f"{kind} in {spec.path} has meta.level 'row' but no pandas translation")
        reason = spec.reason(exp)
        out[reason] = out[reason] | mask if reason in out else mask
    return out


# ------------------------------------------------------------------------------------- GX runner


def _jsonable(value: Any) -> Any:
    """GX results hold numpy scalars and Timestamps; reports want plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
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
    """

    def __init__(self, spec: SuiteSpec, docs_dir: Path | None = None, *, engine: str = "pandas") -> None:
        if engine not in ("pandas", "spark"):
            raise ValueError(f"engine must be 'pandas' or 'spark', not {engine!r}")
        self.spec = spark_suite_spec(spec) if engine == "spark" else spec
        self.engine = engine
        self.docs_dir = docs_dir
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
                    result_format=_RESULT_FORMAT,
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
                result_format=_RESULT_FORMAT,
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
            out.append(
                {
                    "expectation": cfg.type,
                    "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
                    "reason": meta.get("reason", cfg.type),
                    "level": meta.get("level", "batch"),
                    "success": bool(r.success) and not raised,
                    "element_count": res.get("element_count"),
                    "unexpected_count": res.get("unexpected_count"),
                    "observed_value": _jsonable(res.get("observed_value")),
                    "sample": _jsonable(res.get("partial_unexpected_list") or [])[:SAMPLE_SIZE],
                    "error": exc.get("exception_message") if raised else None,
                }
            )
        return out


# ----------------------------------------------------------------------------------------- store


def lake_partition(day: date) -> str:
    """``interactions/event_date=YYYY-MM-DD``, relative to the lake root."""
    return f"interactions/event_date={day}"


def quarantine_partition(day: date) -> str:
    """``date=YYYY-MM-DD``, relative to the quarantine root (default ``<lake>/quarantine``)."""
    return partition_dir_name(day)


# ------------------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class Policy:
    """The knobs of the row and batch policies (fractions are 0..1; amounts in the data's currency)."""

    threshold: float = 0.01
    """Largest share of rejected rows that still lets the rest of the batch through."""
    amount_cap: float = 1_000_000.0
    """Amounts above this are absurd for a purchase card and rejected."""
    quantity_cap: int = 100_000
    volume_tolerance: float = 0.5
    """Allowed relative deviation of the landed row count from the trailing 7-day mean."""
    volume_window_days: int = 7
    volume_min_history: int = 3
    """Fewer days of history than this: the volume check is skipped (reported as such)."""
    max_unknown_user_rate: float = 0.25
    max_unknown_item_rate: float = 0.05
    dedup_lookback_days: int = 7
    """Event ids already in the lake's previous N partitions are rejected as cross-day duplicates."""
    gx_spark_min_bytes: int | None = 512 * 1024 * 1024
    """Landing files of at least this many bytes (as stored, so gzip counts compressed) are validated by
    GX's Spark engine over every parsed row, read back from the staged Parquet, instead of GX's pandas
    engine on a bounded sample. Default 512 MiB (about 25M gzip'd CSV rows); ``None``: always the pandas
    sample; ``0``: always Spark."""


class ValidationFailed(Exception):
    """The batch broke the batch policy (or could not be read); ``result`` holds the details."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        super().__init__(result.summary())


@dataclass
class ValidationResult:
    """The outcome of validating one partition; ``to_xcom`` is the small part that travels in XCom."""

    day: str
    landing_file: str
    landed: int
    accepted: int
    quarantined: int
    success: bool
    report_path: str
    report_json_path: str
    quarantine_path: str
    lake_path: str | None
    failed_expectations: list[dict[str, Any]] = field(default_factory=list)
    batch_checks: list[dict[str, Any]] = field(default_factory=list)
    reason_counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    data_docs_path: str | None = None
    report_uri: str | None = None
    """The HTML report uploaded to the reports store (None without ``reports_root``)."""
    data_docs_uri: str | None = None
    """GX Data Docs index uploaded to the reports store (None without ``reports_root`` or GX run)."""
    seconds: float = 0.0

    @property
    def reject_share(self) -> float:
        return self.quarantined / self.landed if self.landed else 0.0

    def summary(self) -> str:
        """One paragraph for logs and exceptions: counts, failed checks, counts and sample values."""
        head = (
            f"{'accepted' if self.success else 'REJECTED'} {self.day} from {self.landing_file}: "
            f"landed={self.landed} accepted={self.accepted} quarantined={self.quarantined}"
        )
        lines = [head]
        if self.error:
            lines.append(f"file error: {self.error}")
        for c in self.batch_checks:
            if not c["success"]:
                lines.append(f"batch check {c['check']} failed: observed {c['observed']}, limit {c['limit']}")
        for f in self.failed_expectations:
            lines.append(
                f"{f['expectation']}({f['column']}) [{f['reason']}]: {f.get('unexpected_count')} unexpected "
                f"of {f.get('element_count')} validated by GX"
                + (f" ({f['rows_flagged']} rows in the whole batch)" if f.get("rows_flagged") is not None else "")
                + f", sample {f.get('sample')}"
                + (f", observed {f['observed_value']}" if f.get("observed_value") is not None else "")
            )
        if self.reason_counts:
            lines.append(f"row rejects by reason: {self.reason_counts}")
        lines.append(f"report: {self.report_uri or self.report_path}")
        if self.data_docs_uri or self.data_docs_path:
            lines.append(f"GX Data Docs: {self.data_docs_uri or self.data_docs_path}")
        return "\n".join(lines)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "success": self.success,
            "landed": self.landed,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "lake_path": self.lake_path,
            "report_path": self.report_path,
            "data_docs_path": self.data_docs_path,
            "report_uri": self.report_uri,
            "data_docs_uri": self.data_docs_uri,
            "seconds": self.seconds,
            "failed": sorted({f["reason"] for f in self.failed_expectations})
            + [c["check"] for c in self.batch_checks if not c["success"]],
        }


# ------------------------------------------------------------------------------- batch checks


def _trailing_mean(history: Mapping[Any, int] | Sequence[int] | None, window: int) -> tuple[float | None, int]:
    if history is None:
        return None, 0
    if isinstance(history, Mapping):
        values = [int(history[k]) for k in sorted(history, key=str)][-window:]
    else:
        values = [int(v) for v in history][-window:]
    return (float(np.mean(values)) if values else None), len(values)


def batch_checks(
    *,
    landed: int,
    rejected: int,
    policy: Policy,
    history_counts: Mapping[Any, int] | Sequence[int] | None,
    unknown: Mapping[str, tuple[int, int]],
) -> list[dict[str, Any]]:
    """Checks that need the whole batch; same shape as GX results (``check``, ``success``, ...)."""
    share = rejected / landed if landed else 0.0
    checks: list[dict[str, Any]] = [
        {
            "check": "row_reject_share",
            "success": share <= policy.threshold,
            "observed": round(share, 6),
            "limit": policy.threshold,
        }
    ]
    mean, days = _trailing_mean(history_counts, policy.volume_window_days)
    if mean is None or days < policy.volume_min_history:
        checks.append(
            {"check": "volume_vs_trailing_mean", "success": True, "observed": landed, "limit": None,
             "skipped": f"{days} day(s) of history, need {policy.volume_min_history}"}
        )  # fmt: skip
    else:
        deviation = abs(landed / mean - 1.0) if mean > 0 else float("inf")
        checks.append(
            {"check": "volume_vs_trailing_mean", "success": deviation <= policy.volume_tolerance,
             "observed": landed, "limit": f"{mean:.1f} +/- {policy.volume_tolerance:.0%} ({days} days)",
             "deviation": round(deviation, 4)}
        )  # fmt: skip
    for name, limit in (("user", policy.max_unknown_user_rate), ("item", policy.max_unknown_item_rate)):
        if name not in unknown:
            checks.append(
                {"check": f"unknown_{name}_rate", "success": True, "observed": None, "limit": limit,
                 "skipped": f"no known {name} set given"}
            )  # fmt: skip
            continue
        n_unknown, n = unknown[name]
        rate = n_unknown / n if n else 0.0
        checks.append(
            {"check": f"unknown_{name}_rate", "success": rate <= limit, "observed": round(rate, 6),
             "limit": limit, "unknown": n_unknown}
        )  # fmt: skip
    return checks


def lake_history_counts(lake: LakeStore, day: date, window: int) -> dict[str, int]:
    """Accepted row counts of the ``window`` days before ``day`` (Parquet metadata only: cheap)."""
    out = {}
    for i in range(window, 0, -1):
        d = day - timedelta(days=i)
        rows = lake.partition_rows(lake_partition(d))
        if rows is not None:
            out[str(d)] = rows
    return out


# ------------------------------------------------------------------------------------- reporting


def _write_reports(directory: Path, report: dict[str, Any]) -> None:
    (directory / "report.json").write_text(json.dumps(_jsonable(report), indent=2), encoding="utf-8")
    (directory / "report.html").write_text(render_html(report), encoding="utf-8")


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the validation report (GX results, batch checks, reasons)."""

    def esc(v: Any) -> str:
        return html.escape(v if isinstance(v, str) else json.dumps(_jsonable(v)))

    ok = report["success"]
    rows = "".join(
        f"<tr class={'ok' if r['success'] else 'bad'}><td>{'pass' if r['success'] else 'FAIL'}</td>"
        f"<td>{esc(r['expectation'])}</td><td>{esc(r['column'])}</td><td>{esc(r['reason'])}</td>"
        f"<td>{esc(r.get('unexpected_count'))} / {esc(r.get('element_count'))}</td>"
        f"<td>{esc(r.get('rows_flagged', ''))}</td>"
        f"<td>{esc(r.get('observed_value'))}</td><td>{esc(r.get('sample'))}</td></tr>"
        for r in report.get("expectations", [])
    )
    checks = "".join(
        f"<tr class={'ok' if c['success'] else 'bad'}><td>{'pass' if c['success'] else 'FAIL'}</td>"
        f"<td>{esc(c['check'])}</td><td>{esc(c.get('observed'))}</td><td>{esc(c.get('limit'))}</td>"
        f"<td>{esc(c.get('skipped', ''))}</td></tr>"
        for c in report.get("batch_checks", [])
    )
    reasons = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in report.get("reason_counts", {}).items())
    counts = report["counts"]
    gx_scope = report.get("gx_scope") or {}
    scope = (
        f"<p>GX validated {gx_scope.get('rows')} of {gx_scope.get('of')} parsed rows ({esc(gx_scope.get('method'))}); "
        "the <i>rows flagged</i> column counts the whole batch.</p>"
        if gx_scope
        else ""
    )
    docs = report.get("data_docs")
    docs = f'<p>GX Data Docs: <a href="{esc(docs)}">{esc(docs)}</a></p>' if docs else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>recflow validation {esc(report["day"])} {"passed" if ok else "FAILED"}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}}
tr.bad td{{background:#fde2e2}}tr.ok td:first-child{{color:#2a7}}</style></head><body>
<h1>Suite {esc(report["suite"])} on {esc(report["day"])}: {"PASSED" if ok else "FAILED"}</h1>
<p>Landing file <code>{esc(report["landing_file"])}</code>; interval {esc(report["interval"])}.</p>
<p>landed <b>{counts["landed"]}</b> = accepted <b>{counts["accepted"]}</b> + quarantined
<b>{counts["quarantined"]}</b>; threshold {report["policy"]["threshold"]}.</p>
{f"<p class=bad><b>File error:</b> {esc(report['error'])}</p>" if report.get("error") else ""}
{docs}
{scope}
<h2>Batch checks</h2><table><tr><th></th><th>check</th><th>observed</th><th>limit</th><th>note</th></tr>
{checks}</table>
<h2>Expectations (GX {esc(gx.__version__)})</h2><table><tr><th></th><th>expectation</th><th>column</th>
<th>reason</th><th>unexpected / rows (GX)</th><th>rows flagged</th><th>observed</th><th>sample</th></tr>{rows}</table>
<h2>Row rejects by reason</h2><table><tr><th>reason</th><th>rows</th></tr>{reasons}</table>
</body></html>"""


# -------------------------------------------------------------------------------------- writing


def _is_report_file(path: Path) -> bool:
    """Reports and Data Docs go to the reports store; data (rejects, the source copy) stays in quarantine."""
    return path.suffix != ".parquet" and not path.name.startswith("source-")


def _prune_docs_assets(docs_dir: Path) -> None:
    """Drop GX's tutorial images (3.4 MB of the 4 MB per site); pages only need styles and the favicon."""
    images = docs_dir / "static" / "images"
    for f in images.glob("*") if images.is_dir() else []:
        if f.name != "favicon.ico":
            f.unlink()


def _accepted_table(df: pd.DataFrame) -> pa.Table:
    out = df.loc[:, list(INTERACTION_COLUMNS)].copy()
    out[COL_QUANTITY] = out[COL_QUANTITY].astype(np.int64)
    return pa.Table.from_pandas(out, schema=ACCEPTED_SCHEMA, preserve_index=False, safe=False)


def _reject_table(df: pd.DataFrame) -> pa.Table:
    out = df.copy()
    for c in (COL_RAW_LINE, COL_LINE_NO):
        if c not in out.columns:
            out[c] = None
    out[COL_LINE_NO] = out[COL_LINE_NO].astype("Int64")
    out = out.loc[:, REJECT_SCHEMA.names]
    return pa.Table.from_pandas(out, schema=REJECT_SCHEMA, preserve_index=False, safe=False)


class _LazyWriter:
    """A Parquet writer that creates its file on first write (or an empty one on close)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path, self.schema, self.rows = path, schema, 0
        self._w: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._w is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        self._w.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._w is None:
            self.write(self.schema.empty_table())
        assert self._w is not None
        self._w.close()

    def abort(self) -> None:
        """Release the file handle after an unexpected error (the staging folder is deleted anyway)."""
        if self._w is not None:  # ParquetWriter.close is idempotent
            self._w.close()


# ------------------------------------------------------------------------------------ the pipeline

#: Spark master of the GX Spark path: two local cores, the size of a worker slot in this deployment.
GX_SPARK_MASTER: Final = "local[2]"


def _held_back(
    accepted: Path,
    lines: Path,
    landing_file: str | Path,
    chunk_bytes: int,
    chunk_rows: int,
    s3: S3Settings | None,
) -> Iterator[pd.DataFrame]:
    """The staged accepted rows of a failed batch, each with its line number and original text.

    Why re-read the landing file: keeping the text of every row in case the batch fails would cost
    the success path a copy of the whole file; a failed batch is rare, and the file reads the same way
    twice (same chunks, same line numbers), so the accepted line numbers are matched against a second
    pass, one chunk at a time (memory stays bounded).
    """
    chunks = iter_landing(landing_file, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows, s3=s3)
    current: LandingChunk | None = None
    known = np.empty(0, dtype=np.int64)
    acc = pq.ParquetFile(accepted).iter_batches(batch_size=65_536)
    nums = pq.ParquetFile(lines).iter_batches(batch_size=65_536)
    for batch, num_batch in zip(acc, nums, strict=True):
        wanted = num_batch.column(0).to_numpy()
        raws: list[str] = []
        i = 0
        while i < len(wanted):
            if current is None or not len(known) or wanted[i] > known[-1]:
                current = next(chunks)
                known = current.line_numbers() if len(current.frame) else np.empty(0, dtype=np.int64)
                continue
            j = int(np.searchsorted(wanted, known[-1], side="right"))
            raws += current.raw_lines(np.searchsorted(known, wanted[i:j]))
            i = j
        held = batch.to_pandas()
        held[COL_RAW_LINE] = raws
        held[COL_LINE_NO] = wanted
        yield held
    chunks.close()


def spark_rows(paths: Sequence[Path]) -> Any:
    """A Spark DataFrame of the contract columns of the given staged Parquet files (accepted + rejected).

    Why read back the staged Parquet rather than the landing file: those rows are already parsed and
    cast by :func:`~recflow.data.landing.coerce_chunk`, so GX's Spark engine judges exactly the values the
    pandas masks judged (Spark's own CSV parsing and casting would differ on edge cases). Lazy: GX's
    metrics are what run it. Imported here so the pandas path never loads pyspark.
    """
    from recflow.spark import get_spark

    spark = get_spark("recflow-validate", master=GX_SPARK_MASTER)
    frames = [spark.read.parquet(str(p)).select(*INTERACTION_COLUMNS) for p in paths]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def validate_partition(
    landing_file: str | Path,
    *,
    day: date,
    lake_root: str | Path,
    threshold: float | None = None,
    known_users: Iterable[str] | None = None,
    known_items: Iterable[str] | None = None,
    history_counts: Mapping[Any, int] | Sequence[int] | None = None,
    seen_event_ids: Iterable[str] | None = None,
    policy: Policy | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    store_factory: Callable[[str | Path], LakeStore] | None = None,
    quarantine_root: str | Path | None = None,
    reports_root: str | None = None,
    s3: S3Settings | None = None,
    data_docs: bool = True,
    gx_sample_rows: int = DEFAULT_GX_SAMPLE_ROWS,
) -> ValidationResult:
    """Validate one day's landing file; publish accepted rows and the quarantine; raise on batch failure.

    ``day`` fixes the data interval ``[day 00:00 UTC, day+1 00:00 UTC)``; timestamps outside it are
    rejected (never compared with the wall clock). ``threshold`` overrides ``policy.threshold``.
    ``landing_file``, ``lake_root``, ``quarantine_root`` (default ``<lake_root>/quarantine``) and
    ``reports_root`` may be local paths or ``s3://`` URIs (``s3`` gives the endpoint and keys). With
    ``reports_root``, the GX Data Docs and both reports are also uploaded to
    ``<reports_root>/raw_interactions/date=<day>/<run>/``: one folder per run, so the link logged by a
    failed run keeps working after the file is fixed and re-validated.
    ``history_counts`` (date -> rows, or a sequence, oldest first) defaults to the lake's previous
    partitions; ``seen_event_ids`` defaults to the ids in the lake's previous ``dedup_lookback_days``
    partitions. ``known_users`` / ``known_items`` enable the unknown-rate checks.

    Returns the :class:`ValidationResult` on success; raises :class:`ValidationFailed` (carrying it)
    when the batch is quarantined. Either way ``report.json`` / ``report.html`` are written to
    ``<quarantine>/date=<day>/``, with GX Data Docs under ``data_docs/`` when ``data_docs`` is true.

    What GX sees: the row rules run on **every** row as pandas masks (they decide what is quarantined);
    GX runs **once** per partition on :class:`HashSample` of at most ``gx_sample_rows`` rows (the whole
    partition when it is smaller), which gives the schema verdict, the official suite result and the
    Data Docs. The report's ``gx_scope`` states the sample size, and each row-level GX result carries
    ``rows_flagged``, the count over the whole batch. Why: one GX run per chunk cost about half of the
    end-to-end time (and rebuilt the Data Docs each time) while the masks already cover every row.
    """
    t0 = time.perf_counter()
    policy = policy or Policy()
    if threshold is not None:
        policy = Policy(**{**asdict(policy), "threshold": threshold})
    factory = store_factory or (lambda uri: open_store(uri, s3))
    lake = factory(lake_root)
    quarantine = factory(quarantine_root if quarantine_root is not None else join_uri(lake_root, "quarantine"))
    spec = load_suite_spec(RAW_SUITE)
    start, end = day_bounds(day)
    params = {
        "interval_start": start,
        "interval_end": end,
        "amount_cap": policy.amount_cap,
        "quantity_cap": policy.quantity_cap,
    }
    if history_counts is None:
        history_counts = lake_history_counts(lake, day, policy.volume_window_days)
    if seen_event_ids is None:
        ids = [lake.read_column(lake_partition(day - timedelta(days=i)), COL_EVENT)
               for i in range(1, policy.dedup_lookback_days + 1)]  # fmt: skip
        prior = _SeenHashes(np.concatenate(ids) if ids else None)
    else:
        prior = _SeenHashes(seen_event_ids)
    users = frozenset(known_users) if known_users is not None else None
    items = frozenset(known_items) if known_items is not None else None

    min_bytes = policy.gx_spark_min_bytes
    use_spark = min_bytes is not None and input_size(landing_file, s3) >= min_bytes
    sample = HashSample(gx_sample_rows)
    lake_stage, q_stage = lake.staging(), quarantine.staging()
    # Spark path: parsed rows that were rejected are also kept here (the quarantine file is still open
    # when GX runs and may get the batch rejects appended), so Spark can read accepted + rejected rows.
    scratch = lake.staging() if use_spark else None
    gx_rejects_w = _LazyWriter(scratch / "gx-rejects.parquet", REJECT_SCHEMA) if scratch is not None else None
    docs_dir = q_stage / "data_docs"
    runner = GxRunner(spec, docs_dir if data_docs else None, engine="spark" if use_spark else "pandas")
    accepted_w = _LazyWriter(lake_stage / "part-0.parquet", ACCEPTED_SCHEMA)
    # The line number of each accepted row, in the same order: a failed batch re-reads their raw text.
    lines_stage = lake.staging()
    lines_w = _LazyWriter(lines_stage / "accepted-lines.parquet", LINES_SCHEMA)
    rejects_w = _LazyWriter(q_stage / "rejects.parquet", REJECT_SCHEMA)
    seen_in_file = {COL_EVENT: _SeenHashes()}
    reasons: Counter[str] = Counter()
    landed = 0
    unknown = {"user": [0, 0], "item": [0, 0]}
    gx_results: list[dict[str, Any]] | None = None
    error: str | None = None
    try:
        try:
            chunks = iter_landing(landing_file, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows, s3=s3)
            for chunk in chunks:
                landed += chunk.rows
                if chunk.bad_lines:
                    bad = bad_lines_frame(chunk.bad_lines)
                    reasons.update(bad[COL_REASON])
                    rejects_w.write(_reject_table(bad))
                if chunk.frame.empty:
                    continue
                typed, cast_reasons = coerce_chunk(chunk.frame.reset_index(drop=True))
                id_hashes = hash_values(typed[COL_EVENT].to_numpy())
                if gx_rejects_w is None:
                    sample.add(typed, id_hashes)
                masks = row_masks(typed, spec, params, seen=seen_in_file, hashes={COL_EVENT: id_hashes})
                masks[REASON_SEEN] = prior.contains(id_hashes) & typed[COL_EVENT].notna().to_numpy()
                why = join_reasons(masks, len(typed), cast_reasons)
                for key, known, col in (("user", users, COL_USER), ("item", items, COL_ITEM)):
                    if known is not None:
                        present = typed[col].notna()
                        unknown[key][0] += int((present & ~typed[col].isin(known)).sum())
                        unknown[key][1] += int(present.sum())
                rejected = pd.notna(why)
                line_nos = chunk.line_numbers()
                if rejected.any():
                    rej = typed[rejected].copy()
                    rej[COL_REASON] = why[rejected]
                    rej[COL_RAW_LINE] = chunk.raw_lines(np.flatnonzero(rejected))
                    rej[COL_LINE_NO] = line_nos[rejected]
                    reasons.update(r for joined in why[rejected] for r in joined.split(";"))
                    rejects_w.write(_reject_table(rej))
                    if gx_rejects_w is not None:
                        gx_rejects_w.write(_reject_table(rej))
                if (~rejected).any():
                    accepted_w.write(_accepted_table(typed[~rejected]))
                    lines_w.write(pa.table({COL_LINE_NO: line_nos[~rejected]}, schema=LINES_SCHEMA))
        except LandingError as exc:
            error = str(exc)
            reasons[exc.reason] += 0  # listed in the report even when no row was read
            copy_to_local(landing_file, q_stage / f"source-{basename(landing_file)}", s3)
        accepted_w.close()
        lines_w.close()
        if gx_rejects_w is not None:
            gx_rejects_w.close()
            parsed = accepted_w.rows + gx_rejects_w.rows
            if parsed:
                gx_results = runner.run(spark_rows([accepted_w.path, gx_rejects_w.path]), params)
            gx_scope: dict[str, Any] = {
                "engine": "spark",
                "rows": parsed,
                "of": parsed,
                "fraction_of_hash_range": 1.0,
                "method": f"GX Spark engine (local[2]) over every parsed row, read back from the staged Parquet "
                f"(landing file >= gx_spark_min_bytes={min_bytes})",
            }
        else:
            sampled = sample.frame()
            if sampled is not None:
                gx_results = runner.run(sampled, params)
            gx_scope = {
                "engine": "pandas",
                "rows": sample.rows,
                "of": sample.seen,
                "fraction_of_hash_range": sample.fraction,
                "method": f"rows whose {COL_EVENT} hash is below a limit (at most {sample.cap} rows); row "
                "rules were applied to every row by pandas masks",
            }
        for r in gx_results or []:  # the whole-batch count next to GX's count
            if r["level"] == "row":
                r["rows_flagged"] = reasons.get(r["reason"], 0)

        unknown_counts = {k: (v[0], v[1]) for k, v in unknown.items() if (users if k == "user" else items)}
        checks = batch_checks(
            landed=landed,
            rejected=rejects_w.rows,
            policy=policy,
            history_counts=history_counts,
            unknown=unknown_counts,
        )
        schema_ok = all(r["success"] for r in (gx_results or []) if r["level"] == "schema")
        success = error is None and schema_ok and all(c["success"] for c in checks)
        if not success:
            # Whole batch to quarantine: rows that passed the row rules follow, marked as batch rejects.
            failed = (["file_error"] if error else []) + (["schema"] if not schema_ok else [])
            failed += [c["check"] for c in checks if not c["success"]]
            tag = f"{REASON_BATCH}:{','.join(failed)}"
            held_rows = _held_back(accepted_w.path, lines_w.path, landing_file, chunk_bytes, chunk_rows, s3)
            for held in held_rows:
                held[COL_REASON] = tag
                rejects_w.write(_reject_table(held))
            reasons[REASON_BATCH] += accepted_w.rows
        rejects_w.close()

        accepted = accepted_w.rows if success else 0
        quarantined = pq.ParquetFile(rejects_w.path).metadata.num_rows
        if landed != accepted + quarantined:
            raise AssertionError(
                f"reconciliation failed for {day}: landed {landed} != accepted {accepted} + quarantined "
                f"{quarantined}; nothing was published"
            )
        qpart = quarantine_partition(day)
        has_docs = (docs_dir / "index.html").is_file()
        if has_docs:
            _prune_docs_assets(docs_dir)
        reports_dest = (
            join_uri(reports_root, spec.name, qpart, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
            if reports_root
            else None
        )
        result = ValidationResult(
            day=str(day),
            landing_file=str(landing_file),
            landed=landed,
            accepted=accepted,
            quarantined=quarantined,
            success=success,
            report_path=quarantine.uri(f"{qpart}/report.html"),
            report_json_path=quarantine.uri(f"{qpart}/report.json"),
            quarantine_path=quarantine.uri(qpart),
            lake_path=lake.uri(lake_partition(day)) if success else None,
            failed_expectations=[r for r in (gx_results or []) if not r["success"]],
            batch_checks=checks,
            reason_counts=dict(reasons.most_common()),
            error=error,
            data_docs_path=quarantine.uri(f"{qpart}/data_docs/index.html") if has_docs else None,
            report_uri=join_uri(reports_dest, "report.html") if reports_dest else None,
            data_docs_uri=join_uri(reports_dest, "data_docs", "index.html") if reports_dest and has_docs else None,
        )
        result.seconds = round(time.perf_counter() - t0, 3)
        report = {
            "suite": spec.name,
            "suite_path": spec.path,
            "day": str(day),
            "interval": [start.isoformat(), end.isoformat()],
            "landing_file": str(landing_file),
            "success": success,
            "gx_success": all(r["success"] for r in (gx_results or [])) and gx_results is not None,
            "counts": {"landed": landed, "accepted": accepted, "quarantined": quarantined},
            "policy": asdict(policy),
            "batch_checks": checks,
            "expectations": gx_results or [],
            "gx_scope": gx_scope,
            "reason_counts": result.reason_counts,
            "error": error,
            "data_docs": "data_docs/index.html" if has_docs else None,
            "seconds": result.seconds,
            "validated_at": datetime.now(UTC).isoformat(),  # informational only, never used in a rule
        }
        _write_reports(q_stage, report)
        if reports_dest:
            upload_tree(q_stage, reports_dest, s3, include=_is_report_file)
        if success:
            lake.publish(lake_stage, lake_partition(day))
        quarantine.publish(q_stage, qpart)
    finally:
        accepted_w.abort()
        lines_w.abort()
        rejects_w.abort()
        if gx_rejects_w is not None:
            gx_rejects_w.abort()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(lake_stage, ignore_errors=True)
        shutil.rmtree(lines_stage, ignore_errors=True)
        shutil.rmtree(q_stage, ignore_errors=True)

    log.info("%s", result.summary())
    if not success:
        raise ValidationFailed(result)
    return result


# ------------------------------------------------------------------------ whole-frame validation


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
