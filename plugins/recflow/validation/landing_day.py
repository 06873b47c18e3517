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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow.parquet as pq

from recflow.constants import COL_EVENT
from recflow.data.contract import day_bounds
from recflow.data.lake import LakeStore, basename, copy_to_local, input_size, join_uri, open_store, upload_tree
from recflow.data.landing import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_ROWS, LandingError, iter_landing
from recflow.data.prefetch import prefetched
from recflow.validation.gx_runner import GxRunner
from recflow.validation.hashing import HashSample, _SeenHashes, hash_values
from recflow.validation.landing_day_gx import run_gx_once
from recflow.validation.output import (
    ACCEPTED_SCHEMA,
    COL_REASON,
    LINES_SCHEMA,
    REJECT_SCHEMA,
    LazyWriter,
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
from recflow.validation.row_judge import RowJudge, held_back_rows, typed_chunks
from recflow.validation.suites import RAW_SUITE, SuiteSpec, load_suite_spec

if TYPE_CHECKING:
    from recflow.config.s3 import S3Settings

log = logging.getLogger(__name__)

REASON_BATCH: Final = "batch_rejected"
#: Rows GX validates per partition (see :func:`validate_partition`); smaller partitions are seen whole.
DEFAULT_GX_SAMPLE_ROWS: Final = 100_000


@dataclass(frozen=True)
class LandingDayRequest:
    """One day to validate: its landing file, where the outputs go, and the knobs of the run.

    ``day`` fixes the data interval ``[day 00:00 UTC, day+1 00:00 UTC)``; timestamps outside it are
    rejected (never compared with the wall clock). ``threshold`` overrides ``policy.threshold``.
    ``landing_file``, ``lake_root``, ``quarantine_root`` (default ``<lake_root>/quarantine``) and
    ``reports_root`` may be local paths or ``s3://`` URIs (``s3`` gives the endpoint and keys; a
    ``store_factory`` replaces :func:`~recflow.data.lake.open_store`). With ``reports_root``, the GX Data
    Docs and both reports are also uploaded to ``<reports_root>/raw_interactions/date=<day>/<run>/``: one
    folder per run, so the link logged by a failed run keeps working after the file is fixed and re-validated.
    ``history_counts`` (date -> rows, or a sequence, oldest first) defaults to the lake's previous
    partitions; ``seen_event_ids`` defaults to the ids in the lake's previous ``dedup_lookback_days``
    partitions. ``known_users`` / ``known_items`` enable the unknown-rate checks. ``chunk_bytes`` /
    ``chunk_rows`` bound one chunk of the landing file; ``data_docs`` builds the GX Data Docs;
    ``gx_sample_rows`` caps the rows GX sees (see :func:`validate_partition`).
    """

    landing_file: str | Path
    _: KW_ONLY
    day: date
    lake_root: str | Path
    threshold: float | None = None
    known_users: Iterable[str] | None = None
    known_items: Iterable[str] | None = None
    history_counts: Mapping[Any, int] | Sequence[int] | None = None
    seen_event_ids: Iterable[str] | None = None
    policy: Policy | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    store_factory: Callable[[str | Path], LakeStore] | None = None
    quarantine_root: str | Path | None = None
    reports_root: str | None = None
    s3: S3Settings | None = None
    data_docs: bool = True
    gx_sample_rows: int = DEFAULT_GX_SAMPLE_ROWS


def validate_partition(request: LandingDayRequest) -> ValidationResult:
    """Validate one day's landing file; publish accepted rows and the quarantine; raise on batch failure.

    Returns the :class:`ValidationResult` on success; raises :class:`ValidationFailed` (carrying it)
    when the batch is quarantined. Either way ``report.json`` / ``report.html`` are written to
    ``<quarantine>/date=<day>/``, with GX Data Docs under ``data_docs/`` when ``request.data_docs`` is true.

    What GX sees: the row rules run on **every** row as pandas masks (they decide what is quarantined);
    GX runs **once** per partition on :class:`HashSample` of at most ``gx_sample_rows`` rows (the whole
    partition when it is smaller), which gives the schema verdict, the official suite result and the
    Data Docs. The report's ``gx_scope`` states the sample size, and each row-level GX result carries
    ``rows_flagged``, the count over the whole batch. Why: one GX run per chunk cost about half of the
    end-to-end time (and rebuilt the Data Docs each time) while the masks already cover every row.
    """
    t0 = time.perf_counter()
    setup = _set_up(request)
    staging = _stage(request, setup, _prior_event_ids(request, setup))
    judge = staging.judge
    try:
        error = _judge_landing_file(request, staging)
        gx_results, gx_scope = run_gx_once(staging.runner, setup.params, staging.judge, staging.sample, setup.policy)
        judge.accepted_w.close()  # after GX: the last chunk's Parquet is encoded while GX runs on the sample
        judge.lines_w.close()
        verdict = _batch_verdict(setup, judge, error, gx_results)
        if not verdict.success:
            _quarantine_whole_batch(request, judge, verdict.failed)
        judge.rejects_w.close()
        outcome = _reconcile(request.day, judge, error, verdict, gx_results, gx_scope)
        has_docs = _finish_data_docs(staging.docs_dir)
        reports_dest = _reports_destination(request, setup.spec)
        result = _result(request, setup, outcome, has_docs, reports_dest)
        result.seconds = round(time.perf_counter() - t0, 3)
        _publish(request, setup, staging, _report(request, setup, outcome, result, has_docs), reports_dest)
    finally:
        staging.discard()

    log.info("%s", result.summary())
    if not result.success:
        raise ValidationFailed(result)
    return result


# ------------------------------------------------------------------------------------ before the rows


@dataclass(frozen=True)
class _Setup:
    """What a run resolves before it reads a row: the policy in force, the stores, the suite and the history."""

    policy: Policy
    lake: LakeStore
    quarantine: LakeStore
    spec: SuiteSpec
    params: dict[str, Any]
    history_counts: Mapping[Any, int] | Sequence[int]


def _set_up(request: LandingDayRequest) -> _Setup:
    """Resolve the run: the effective policy, the stores, the raw suite's parameters and the volume history.

    ``threshold`` wins over the policy's; the parameters are the day's interval and the caps; the history
    is the lake's previous partitions unless the request gives one.
    """
    policy = request.policy or Policy()
    if request.threshold is not None:
        policy = Policy(**{**asdict(policy), "threshold": request.threshold})
    factory = request.store_factory or (lambda uri: open_store(uri, request.s3))
    lake = factory(request.lake_root)
    q_root = request.quarantine_root
    quarantine = factory(q_root if q_root is not None else join_uri(request.lake_root, "quarantine"))
    spec = load_suite_spec(RAW_SUITE)
    start, end = day_bounds(request.day)
    params = {
        "interval_start": start,
        "interval_end": end,
        "amount_cap": policy.amount_cap,
        "quantity_cap": policy.quantity_cap,
    }
    history = request.history_counts
    if history is None:
        history = lake_history_counts(lake, request.day, policy.volume_window_days)
    return _Setup(policy, lake, quarantine, spec, params, history)


def _prior_event_ids(request: LandingDayRequest, setup: _Setup) -> _SeenHashes:
    """Hashes of the event ids of earlier days: those given, else the lake's last ``dedup_lookback_days``."""
    if request.seen_event_ids is not None:
        return _SeenHashes(request.seen_event_ids)
    prior = _SeenHashes()  # earlier days' ids, hashed batch by batch: never a whole column in memory
    for i in range(1, setup.policy.dedup_lookback_days + 1):
        for ids in setup.lake.read_column(lake_partition(request.day - timedelta(days=i)), COL_EVENT):
            prior.add(hash_values(ids))
    return prior


@dataclass(frozen=True)
class _Staging:
    """The staged folders of one run and what writes into them; :meth:`discard` removes them all."""

    lake_stage: Path
    q_stage: Path
    lines_stage: Path
    scratch: Path | None
    docs_dir: Path
    runner: GxRunner
    sample: HashSample
    judge: RowJudge
    writes: ThreadPoolExecutor

    def discard(self) -> None:
        """Release the judge's files and delete every staging folder (after a publish or an error alike)."""
        self.judge.release()
        self.writes.shutdown(wait=True)
        for folder in (self.scratch, self.lake_stage, self.lines_stage, self.q_stage):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _stage(request: LandingDayRequest, setup: _Setup, prior: _SeenHashes) -> _Staging:
    """Create the staging folders, their writers, the GX runner and the judge that fills them.

    GX runs on Spark over every parsed row for a landing file of at least ``gx_spark_min_bytes``, else on
    pandas over a hash sample of the rows (:func:`~recflow.validation.landing_day_gx.run_gx_once`).
    """
    users = frozenset(request.known_users) if request.known_users is not None else None
    items = frozenset(request.known_items) if request.known_items is not None else None
    min_bytes = setup.policy.gx_spark_min_bytes
    use_spark = min_bytes is not None and input_size(request.landing_file, request.s3) >= min_bytes
    sample = HashSample(request.gx_sample_rows)
    lake_stage, q_stage = setup.lake.staging(), setup.quarantine.staging()
    # Spark path: parsed rows that were rejected are also kept here (the quarantine file is still open
    # when GX runs and may get the batch rejects appended), so Spark can read accepted + rejected rows.
    scratch = setup.lake.staging() if use_spark else None
    # Parquet is encoded in a thread of its own while the next chunk is judged (same files, same bytes)
    writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recflow-write")
    gx_rejects_w = (
        LazyWriter(scratch / "gx-rejects.parquet", REJECT_SCHEMA, executor=writes) if scratch is not None else None
    )
    docs_dir = q_stage / "data_docs"
    runner = GxRunner(setup.spec, docs_dir if request.data_docs else None, engine="spark" if use_spark else "pandas")
    accepted_w = LazyWriter(lake_stage / "part-0.parquet", ACCEPTED_SCHEMA, executor=writes)
    # The line number of each accepted row, in the same order: a failed batch re-reads their raw text.
    lines_stage = setup.lake.staging()
    judge = RowJudge(
        spec=setup.spec,
        params=setup.params,
        prior=prior,
        users=users,
        items=items,
        sample=sample if gx_rejects_w is None else None,
        accepted_w=accepted_w,
        lines_w=LazyWriter(lines_stage / "accepted-lines.parquet", LINES_SCHEMA, executor=writes),
        rejects_w=LazyWriter(q_stage / "rejects.parquet", REJECT_SCHEMA, executor=writes),
        gx_rejects_w=gx_rejects_w,
    )
    return _Staging(lake_stage, q_stage, lines_stage, scratch, docs_dir, runner, sample, judge, writes)


# ------------------------------------------------------------------------------------ judging the rows


def _judge_landing_file(request: LandingDayRequest, staging: _Staging) -> str | None:
    """Stream the landing file through the judge; returns the file error (the accepted rows' files stay open).

    A file that cannot be read to the end (empty, wrong columns, truncated gzip) keeps the rows judged so
    far, is copied verbatim next to the report, and its reason is counted (listed even with no row read).
    """
    judge = staging.judge
    error: str | None = None
    # the next chunk is read and cast in a thread while this one is judged (two chunks alive at most)
    landing = iter_landing(
        request.landing_file, chunk_bytes=request.chunk_bytes, chunk_rows=request.chunk_rows, s3=request.s3
    )
    chunks = prefetched(typed_chunks(landing))
    try:
        while (chunk := next(chunks, None)) is not None:
            judge.take(chunk)
            del chunk  # free it (and its text block) before the next is taken: peak = two chunks
    except LandingError as exc:
        error = str(exc)
        judge.reasons[exc.reason] += 0  # listed in the report even when no row was read
        copy_to_local(request.landing_file, staging.q_stage / f"source-{basename(request.landing_file)}", request.s3)
    finally:
        chunks.close()  # stops the reader thread when judging failed
    return error


# ------------------------------------------------------------------------------------ the batch verdict


@dataclass(frozen=True)
class _Verdict:
    """The batch-level decision: the batch checks, pass or fail, and the names of what failed."""

    checks: list[dict[str, Any]]
    success: bool
    failed: list[str]


def _batch_verdict(
    setup: _Setup, judge: RowJudge, error: str | None, gx_results: list[dict[str, Any]] | None
) -> _Verdict:
    """The batch passes when the file was read whole, GX's schema checks pass and every batch check passes."""
    checks = batch_checks(
        landed=judge.landed,
        rejected=judge.rejects_w.rows,
        policy=setup.policy,
        history_counts=setup.history_counts,
        unknown=judge.unknown_counts(),
    )
    schema_ok = all(r["success"] for r in (gx_results or []) if r["level"] == "schema")
    success = error is None and schema_ok and all(c["success"] for c in checks)
    failed = (["file_error"] if error else []) + (["schema"] if not schema_ok else [])
    failed += [c["check"] for c in checks if not c["success"]]
    return _Verdict(checks, success, failed)


def _quarantine_whole_batch(request: LandingDayRequest, judge: RowJudge, failed: list[str]) -> None:
    """Whole batch to quarantine: rows that passed the row rules follow, marked as batch rejects."""
    tag = f"{REASON_BATCH}:{','.join(failed)}"
    held_rows = held_back_rows(
        judge.accepted_w.path,
        judge.lines_w.path,
        request.landing_file,
        request.chunk_bytes,
        request.chunk_rows,
        request.s3,
    )
    for held in held_rows:
        held[COL_REASON] = tag
        judge.rejects_w.write(reject_table(held))
    judge.reasons[REASON_BATCH] += judge.accepted_w.rows


@dataclass(frozen=True)
class _Outcome:
    """What one run found, reconciled: the counts, the verdict, GX's results and the reject reasons."""

    landed: int
    accepted: int
    quarantined: int
    error: str | None
    verdict: _Verdict
    gx_results: list[dict[str, Any]] | None
    gx_scope: dict[str, Any]
    reasons: Counter[str]


def _reconcile(
    day: date,
    judge: RowJudge,
    error: str | None,
    verdict: _Verdict,
    gx_results: list[dict[str, Any]] | None,
    gx_scope: dict[str, Any],
) -> _Outcome:
    """Check ``landed == accepted + quarantined`` against the rows written; nothing is published otherwise."""
    landed = judge.landed
    accepted = judge.accepted_w.rows if verdict.success else 0
    quarantined = pq.ParquetFile(judge.rejects_w.path).metadata.num_rows
    if landed != accepted + quarantined:
        raise AssertionError(
            f"reconciliation failed for {day}: landed {landed} != accepted {accepted} + quarantined "
            f"{quarantined}; nothing was published"
        )
    return _Outcome(landed, accepted, quarantined, error, verdict, gx_results, gx_scope, judge.reasons)


# ------------------------------------------------------------------------------------ writing it up


def _finish_data_docs(docs_dir: Path) -> bool:
    """Whether GX built Data Docs; if so, drop the assets the pages do not use."""
    has_docs = (docs_dir / "index.html").is_file()
    if has_docs:
        prune_docs_assets(docs_dir)
    return has_docs


def _reports_destination(request: LandingDayRequest, spec: SuiteSpec) -> str | None:
    """``<reports_root>/<suite>/date=<day>/<time>-<id>``: a folder of its own per run (None without a root)."""
    if not request.reports_root:
        return None
    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    return join_uri(request.reports_root, spec.name, quarantine_partition(request.day), run)


def _result(
    request: LandingDayRequest, setup: _Setup, outcome: _Outcome, has_docs: bool, reports_dest: str | None
) -> ValidationResult:
    """The result returned (or carried by :class:`ValidationFailed`): counts, verdict and where things went."""
    qpart, quarantine, success = quarantine_partition(request.day), setup.quarantine, outcome.verdict.success
    gx_results = outcome.gx_results
    return ValidationResult(
        day=str(request.day),
        landing_file=str(request.landing_file),
        landed=outcome.landed,
        accepted=outcome.accepted,
        quarantined=outcome.quarantined,
        success=success,
        report_path=quarantine.uri(f"{qpart}/report.html"),
        report_json_path=quarantine.uri(f"{qpart}/report.json"),
        quarantine_path=quarantine.uri(qpart),
        lake_path=setup.lake.uri(lake_partition(request.day)) if success else None,
        failed_expectations=[r for r in (gx_results or []) if not r["success"]],
        batch_checks=outcome.verdict.checks,
        reason_counts=dict(outcome.reasons.most_common()),
        error=outcome.error,
        data_docs_path=quarantine.uri(f"{qpart}/data_docs/index.html") if has_docs else None,
        report_uri=join_uri(reports_dest, "report.html") if reports_dest else None,
        data_docs_uri=join_uri(reports_dest, "data_docs", "index.html") if reports_dest and has_docs else None,
    )


def _report(
    request: LandingDayRequest, setup: _Setup, outcome: _Outcome, result: ValidationResult, has_docs: bool
) -> dict[str, Any]:
    """The content of ``report.json`` (and the HTML report rendered from it)."""
    gx_results = outcome.gx_results
    return {
        "suite": setup.spec.name,
        "suite_path": setup.spec.path,
        "day": str(request.day),
        "interval": [setup.params["interval_start"].isoformat(), setup.params["interval_end"].isoformat()],
        "landing_file": str(request.landing_file),
        "success": outcome.verdict.success,
        "gx_success": all(r["success"] for r in (gx_results or [])) and gx_results is not None,
        "counts": {"landed": outcome.landed, "accepted": outcome.accepted, "quarantined": outcome.quarantined},
        "policy": asdict(setup.policy),
        "batch_checks": outcome.verdict.checks,
        "expectations": gx_results or [],
        "gx_scope": outcome.gx_scope,
        "reason_counts": result.reason_counts,
        "error": outcome.error,
        "data_docs": "data_docs/index.html" if has_docs else None,
        "seconds": result.seconds,
        "validated_at": datetime.now(UTC).isoformat(),  # informational only, never used in a rule
    }


def _publish(
    request: LandingDayRequest, setup: _Setup, staging: _Staging, report: dict[str, Any], reports_dest: str | None
) -> None:
    """Write the reports and upload them (with the Data Docs), then publish whole partitions.

    The lake's partition is published only on success, the quarantine's always.
    """
    write_reports(staging.q_stage, report)
    if reports_dest:
        upload_tree(staging.q_stage, reports_dest, request.s3, include=is_report_file)
    if report["success"]:
        setup.lake.publish(staging.lake_stage, lake_partition(request.day))
    setup.quarantine.publish(staging.q_stage, quarantine_partition(request.day))
