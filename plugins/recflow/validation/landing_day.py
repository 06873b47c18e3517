"""Validate one day's landing file into the lake: stream, judge every row, run GX once, reconcile, publish.

* **Row policy vs batch policy.** If the share of rejected rows is at most ``threshold`` (default 1 %)
  and the batch-level checks pass, rejected rows go to quarantine and the rest to the lake; otherwise the
  whole batch is quarantined, the lake is left untouched and :class:`ValidationFailed` is raised.
* **Nothing is lost.** ``landed == accepted + quarantined`` is checked against the rows actually written;
  every reject keeps its raw text and line number.
* **Idempotent per data interval.** Outputs are staged and published as whole partitions.
* **Bounded memory.** The landing file is processed chunk by chunk.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.constants import COL_EVENT, COL_ITEM, COL_USER
from recflow.data.casting import join_reasons
from recflow.data.contract import day_bounds
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
from recflow.validation.gx_runner import GxRunner, spark_rows
from recflow.validation.hashing import HashSample, _SeenHashes, hash_values
from recflow.validation.output import (
    ACCEPTED_SCHEMA,
    COL_LINE_NO,
    COL_RAW_LINE,
    COL_REASON,
    LINES_SCHEMA,
    REJECT_SCHEMA,
    LazyWriter,
    accepted_table,
    lake_partition,
    quarantine_partition,
    reject_table,
)
from recflow.validation.policy import Policy, batch_checks, lake_history_counts
from recflow.validation.report import (
    ValidationFailed,
    ValidationResult,
    is_report_file,
    prune_docs_assets,
    write_reports,
)
from recflow.validation.rules import row_masks
from recflow.validation.suites import RAW_SUITE, SuiteSpec, load_suite_spec

if TYPE_CHECKING:
    from recflow.config.s3 import S3Settings

log = logging.getLogger(__name__)

REASON_BATCH: Final = "batch_rejected"
REASON_SEEN: Final = "duplicate_event_id_across_days"
#: Rows GX validates per partition (see :func:`validate_partition`); smaller partitions are seen whole.
DEFAULT_GX_SAMPLE_ROWS: Final = 100_000


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


@dataclass
class _Judge:
    """Judges each chunk of a partition on every row and writes it out: accepted, or rejected with why.

    Holds what spans chunks: the ids seen in this file and in earlier days, the reject counts by reason,
    the unknown user/item counts and the rows landed.
    """

    spec: SuiteSpec
    params: Mapping[str, Any]
    prior: _SeenHashes
    users: frozenset[str] | None
    items: frozenset[str] | None
    sample: HashSample | None
    accepted_w: LazyWriter
    lines_w: LazyWriter
    rejects_w: LazyWriter
    gx_rejects_w: LazyWriter | None
    seen_in_file: dict[str, _SeenHashes] = field(default_factory=lambda: {COL_EVENT: _SeenHashes()})
    reasons: Counter[str] = field(default_factory=Counter)
    unknown: dict[str, list[int]] = field(default_factory=lambda: {"user": [0, 0], "item": [0, 0]})
    landed: int = 0

    def take(self, chunk: LandingChunk) -> None:
        self.landed += chunk.rows
        if chunk.bad_lines:
            bad = bad_lines_frame(chunk.bad_lines)
            self.reasons.update(bad[COL_REASON])
            self.rejects_w.write(reject_table(bad))
        if chunk.frame.empty:
            return
        typed, cast_reasons = coerce_chunk(chunk.frame.reset_index(drop=True))
        id_hashes = hash_values(typed[COL_EVENT].to_numpy())
        if self.sample is not None:
            self.sample.add(typed, id_hashes)
        masks = row_masks(typed, self.spec, self.params, seen=self.seen_in_file, hashes={COL_EVENT: id_hashes})
        masks[REASON_SEEN] = self.prior.contains(id_hashes) & typed[COL_EVENT].notna().to_numpy()
        why = join_reasons(masks, len(typed), cast_reasons)
        for key, known, col in (("user", self.users, COL_USER), ("item", self.items, COL_ITEM)):
            if known is not None:
                present = typed[col].notna()
                self.unknown[key][0] += int((present & ~typed[col].isin(known)).sum())
                self.unknown[key][1] += int(present.sum())
        rejected = pd.notna(why)
        line_nos = chunk.line_numbers()
        if rejected.any():
            rej = typed[rejected].copy()
            rej[COL_REASON] = why[rejected]
            rej[COL_RAW_LINE] = chunk.raw_lines(np.flatnonzero(rejected))
            rej[COL_LINE_NO] = line_nos[rejected]
            self.reasons.update(r for joined in why[rejected] for r in joined.split(";"))
            self.rejects_w.write(reject_table(rej))
            if self.gx_rejects_w is not None:
                self.gx_rejects_w.write(reject_table(rej))
        if (~rejected).any():
            self.accepted_w.write(accepted_table(typed[~rejected]))
            self.lines_w.write(pa.table({COL_LINE_NO: line_nos[~rejected]}, schema=LINES_SCHEMA))


def _run_gx(
    runner: GxRunner,
    params: Mapping[str, Any],
    sample: HashSample,
    accepted_w: LazyWriter,
    gx_rejects_w: LazyWriter | None,
    min_bytes: int | None,
) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """GX once per partition: on Spark over every parsed row (``gx_rejects_w`` given), else on the sample.

    Returns the GX results (None when no row was parsed) and the ``gx_scope`` of the report.
    """
    gx_results: list[dict[str, Any]] | None = None
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
    return gx_results, gx_scope


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
        prior = _SeenHashes()  # earlier days' ids, hashed batch by batch: never a whole column in memory
        for i in range(1, policy.dedup_lookback_days + 1):
            for ids in lake.read_column(lake_partition(day - timedelta(days=i)), COL_EVENT):
                prior.add(hash_values(ids))
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
    gx_rejects_w = LazyWriter(scratch / "gx-rejects.parquet", REJECT_SCHEMA) if scratch is not None else None
    docs_dir = q_stage / "data_docs"
    runner = GxRunner(spec, docs_dir if data_docs else None, engine="spark" if use_spark else "pandas")
    accepted_w = LazyWriter(lake_stage / "part-0.parquet", ACCEPTED_SCHEMA)
    # The line number of each accepted row, in the same order: a failed batch re-reads their raw text.
    lines_stage = lake.staging()
    lines_w = LazyWriter(lines_stage / "accepted-lines.parquet", LINES_SCHEMA)
    rejects_w = LazyWriter(q_stage / "rejects.parquet", REJECT_SCHEMA)
    judge = _Judge(
        spec=spec,
        params=params,
        prior=prior,
        users=users,
        items=items,
        sample=sample if gx_rejects_w is None else None,
        accepted_w=accepted_w,
        lines_w=lines_w,
        rejects_w=rejects_w,
        gx_rejects_w=gx_rejects_w,
    )
    reasons, unknown = judge.reasons, judge.unknown
    error: str | None = None
    try:
        try:
            chunks = iter_landing(landing_file, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows, s3=s3)
            while (chunk := next(chunks, None)) is not None:
                judge.take(chunk)
                del chunk  # free it (and its text block) before the reader makes the next: peak = one chunk
        except LandingError as exc:
            error = str(exc)
            reasons[exc.reason] += 0  # listed in the report even when no row was read
            copy_to_local(landing_file, q_stage / f"source-{basename(landing_file)}", s3)
        accepted_w.close()
        lines_w.close()
        gx_results, gx_scope = _run_gx(runner, params, sample, accepted_w, gx_rejects_w, min_bytes)
        for r in gx_results or []:  # the whole-batch count next to GX's count
            if r["level"] == "row":
                r["rows_flagged"] = reasons.get(r["reason"], 0)

        unknown_counts = {k: (v[0], v[1]) for k, v in unknown.items() if (users if k == "user" else items)}
        landed = judge.landed
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
                rejects_w.write(reject_table(held))
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
            prune_docs_assets(docs_dir)
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
        write_reports(q_stage, report)
        if reports_dest:
            upload_tree(q_stage, reports_dest, s3, include=is_report_file)
        if success:
            lake.publish(lake_stage, lake_partition(day))
        quarantine.publish(q_stage, qpart)
    finally:
        prior.close()
        judge.seen_in_file[COL_EVENT].close()
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
