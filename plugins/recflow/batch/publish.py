"""Publish only valid batch scores: stage, check with the ``batch_scores`` GX suite, then commit.

Staging: the scoring tasks write the day's Parquet files into a fresh staging folder and check each
file they wrote, read back from disk, against the input users it was scored for
(:mod:`recflow.batch.staging`, :mod:`recflow.batch.checks`): one check row per user, bucketed by a
stable hash of the user id. The suite (``expectations/batch_scores.json``) then runs with GX's pandas
engine on the driver, one bucket at a time (:mod:`recflow.validation.chunked`); every check row of a
user is in one bucket, so each chunk's verdict is the whole frame's. The summary's counts come from the
same rows. GX is imported in a background thread while Spark works (:func:`preload_suite_engine`).

Commit: the lake's :meth:`~recflow.data.lake.LakeStore.publish_together` under the day's scores
partition as the commit key (a symlink flip on a local lake, one commit record written last on S3), so
a table that must appear with the scores (a day's offers) joins the same commit by adding a part. The
fault point ``batch.publish.before_commit`` (:mod:`recflow.services.faults`) sits between the checked
attempt and the commit. A failed suite publishes nothing,
so the previous partition stays, and writes ``score_reports/event_date=<day>/report.json`` with the
failed rules, the users they name and those users' staged rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from recflow.batch.layout import SCORE_COLUMNS, SUMMARY_FILE, ScoringRequest, scores_partition
from recflow.batch.staging import TMP_SUFFIX, StagingPlan, stage_scores
from recflow.constants import COL_RANK, COL_USER
from recflow.data.lake import LakeStore, open_store
from recflow.scoring.core import SOURCE_FALLBACK, ScoringError
from recflow.scoring.seen import SeenPolicy

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    from pyspark.sql import DataFrame

    from recflow.models.base import Recommender

log = logging.getLogger(__name__)
SUITE: Final = "batch_scores"
#: Families whose model scores are probabilities or popularity shares; the others are unbounded reals.
UNIT_SCORE_FAMILIES: Final = frozenset({"ncf", "popularity"})
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
#: Users whose staged rows a failure report carries (from the failed rules' samples).
REPORT_USERS: Final = 5


class ScoresRejected(ScoringError):
    """The staged scores failed the suite; nothing was published (see ``report``)."""

    def __init__(self, message: str, report: dict[str, Any], report_uri: str) -> None:
        super().__init__(f"{message} (report: {report_uri})")
        self.report = report
        self.report_uri = report_uri


def reports_partition(day: date) -> str:
    return f"score_reports/event_date={day}"


def user_facts(chunk: pd.DataFrame) -> dict[str, int]:
    """The summary's counts over a chunk of the per-user frame (one row per user, so they add up)."""
    requested = chunk["expected_rows"].notna()
    return {
        "rows": int(chunk["user_rows"].sum()),
        "users_scored": int((chunk["user_rows"] > 0).sum()),
        "users_exhausted": int((chunk["expected_rows"] == 0).sum()),
        "users_fallback": int((requested & (chunk["expected_source"] == SOURCE_FALLBACK)).sum()),
        "active_users": int(requested.sum()),
    }


def suite_params(model: Recommender, request: ScoringRequest) -> dict[str, Any]:
    """The suite's ``$PARAMETER`` values: k, the one version allowed, the model's score range."""
    unit = model.family in UNIT_SCORE_FAMILIES
    return {
        "k": request.k,
        "version_set": [request.version],
        "score_min": 0.0 if unit else -_FLOAT32_MAX,
        "score_max": 1.0 if unit else _FLOAT32_MAX,
    }


def failed_rows(scores_dir: Path, failed: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The staged rows (by rank) of the first :data:`REPORT_USERS` users the failed rules sampled."""
    import pyarrow.parquet as pq

    from recflow.validation.gx_runner import jsonable  # deferred: great_expectations (gx_runner imports it)

    users: list[str] = []
    for result in failed:
        users += [u for u in result.get("sample_ids") or [] if isinstance(u, str) and u not in users]
    users = users[:REPORT_USERS]
    if not users:
        return {}
    rows = pq.read_table(scores_dir, filters=[(COL_USER, "in", users)]).sort_by(
        [(COL_USER, "ascending"), (COL_RANK, "ascending")]
    )
    out: dict[str, list[dict[str, Any]]] = {user: [] for user in users}
    for values in rows.to_pylist():
        out[values.pop(COL_USER)].append(jsonable(values))
    return out


def preload_suite_engine() -> None:
    """Import GX (seconds) in a background thread, so it overlaps the Spark work before the suite runs;
    the suite's own import then waits for it (Python's import lock) instead of starting over.

    That is why this module imports the suite engine (:mod:`recflow.validation`) only inside functions: a
    top-level import would pay those seconds up front, before Spark starts, and leave nothing to overlap."""
    import threading

    def load() -> None:
        try:
            # deferred: the point of this thread: the suite engine imports great_expectations (seconds)
            import recflow.validation.chunked  # noqa: F401  (loaded for the suite, not used here)
        except Exception:  # e.g. an import deadlock between threads: the suite imports it again itself
            log.debug("background import of the suite engine failed", exc_info=True)

    threading.Thread(target=load, daemon=True).start()


def _check_chunks(plan: StagingPlan) -> Iterator[pd.DataFrame]:
    """The check rows bucket by bucket (each bucket holds every row of its users)."""
    import pyarrow.parquet as pq

    for b in range(plan.buckets):
        folder = Path(plan.checks_dir) / f"bucket={b}"
        if folder.is_dir():
            yield pq.read_table(folder).to_pandas()


def _staged_files(plan: StagingPlan, reports: list[Any]) -> list[str]:
    """The staged files the tasks reported, checked against the folder and the output schema.

    Temporary files of attempts that were killed mid-write (never renamed into place) are removed; any
    other file the tasks did not report is refused, as is a file whose columns are not the output's.
    """
    import pyarrow.parquet as pq

    folder = Path(plan.scores_dir)
    for leftover in folder.glob(f".*{TMP_SUFFIX}"):
        log.warning("removing %s, left by a killed scoring attempt", leftover.name)
        leftover.unlink()
    reported = sorted(str(r["file"]) for r in reports)
    present = sorted(p.name for p in folder.iterdir())
    if reported != present:
        raise ScoringError(f"staged files {present} differ from the files the scoring tasks reported {reported}")
    for name in reported:
        columns = tuple(pq.read_schema(folder / name).names)
        if columns != SCORE_COLUMNS:
            raise ScoringError(f"staged file {name} has columns {list(columns)}, expected {list(SCORE_COLUMNS)}")
    return reported


def _reconcile(reports: list[Any], facts: dict[str, int], n_users: int) -> None:
    """The check rows must account for exactly the users and rows the tasks staged, and the users for
    every input user: a missing or stale check file would otherwise go unnoticed."""
    users, rows = sum(int(r["users"]) for r in reports), sum(int(r["rows"]) for r in reports)
    if not users == facts.get("active_users") == n_users or rows != facts.get("rows"):
        raise ScoringError(
            f"the checks cover {facts.get('active_users')} users and {facts.get('rows')} rows, the staged files "
            f"{users} users and {rows} rows, the inputs {n_users} users"
        )


def _write_report(store: LakeStore, day: date, report: dict[str, Any]) -> str:
    folder = store.staging()
    try:
        (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
        return str(store.publish(folder, reports_partition(day)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_scores(
    inputs: DataFrame,
    *,
    n_users: int,
    partitions: int,
    model: Recommender,
    request: ScoringRequest,
    policy: SeenPolicy,
    lake_root: Path | str,
) -> dict[str, Any]:
    """Score ``inputs`` into a staging folder, run the suite on the staged files' checks, publish them
    and return the summary."""
    # deferred: great_expectations, through the suite engine (preload_suite_engine imports it meanwhile)
    from recflow.validation.chunked import CHUNK_ROWS

    store = open_store(str(lake_root))
    staging = store.staging()
    out = staging / "scores"
    plan = StagingPlan(str(out), str(staging / "checks"), buckets=max(1, -(-n_users // CHUNK_ROWS)))
    try:
        out.mkdir()
        reports, files = _stage(inputs, model, request, partitions, plan)
        results, facts = _run_suite(plan, model, request, reports, n_users)
        summary = _summary(model, request, policy, facts)
        failed = [r for r in results if not r["success"]]
        if failed:
            raise _rejected(store, request, summary, failed, results, out)
        summary["files"] = files
        summary["path"] = store.uri(scores_partition(request.day))
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        partition = scores_partition(request.day)
        store.publish_together({partition: out}, key=partition, point="batch.publish.before_commit")
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(
    inputs: DataFrame, model: Recommender, request: ScoringRequest, partitions: int, plan: StagingPlan
) -> tuple[list[Any], list[str]]:
    """Score and stage ``inputs`` (the tasks check what they wrote): the tasks' reports and the staged files."""
    t0 = time.perf_counter()
    reports = stage_scores(inputs, model, version=request.version, k=request.k, partitions=partitions,
                           plan=plan).collect()  # fmt: skip
    files = _staged_files(plan, reports)
    log.info("scored and staged %s in %.1f s", request.day, time.perf_counter() - t0)
    return reports, files


def _run_suite(
    plan: StagingPlan, model: Recommender, request: ScoringRequest, reports: list[Any], n_users: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The suite's results on the staged check rows and the summary's counts, which must add up to what
    the tasks reported staging (:func:`_reconcile`)."""
    # deferred: great_expectations, through recflow.validation (preload_suite_engine imports it meanwhile)
    from recflow.validation import load_suite_spec
    from recflow.validation.chunked import run_suite_in_chunks  # deferred: great_expectations, as above

    t0 = time.perf_counter()
    results, facts = run_suite_in_chunks(
        _check_chunks(plan),
        load_suite_spec(SUITE),
        suite_params(model, request),
        group_col=COL_USER,
        facts=user_facts,
    )
    _reconcile(reports, facts, n_users)
    log.info(
        "suite %s on %d rows (%d users): %.1f s",
        SUITE,
        facts["rows"],
        facts["active_users"],
        time.perf_counter() - t0,
    )
    return results, facts


def _summary(model: Recommender, request: ScoringRequest, policy: SeenPolicy, facts: dict[str, int]) -> dict[str, Any]:
    """What was scored, by which model, under which seen-items policy, and the suite's counts."""
    return {
        "day": str(request.day),
        "model_version": request.version,
        "family": model.family,
        "k": request.k,
        "active_days": request.active_days,
        "user_subset": None if request.users is None else len(request.users),
        **{
            name: int(facts[name])
            for name in ("active_users", "users_scored", "users_exhausted", "users_fallback", "rows")
        },
        **policy.as_dict(),
    }


def _rejected(
    store: LakeStore,
    request: ScoringRequest,
    summary: dict[str, Any],
    failed: list[dict[str, Any]],
    results: list[dict[str, Any]],
    scores_dir: Path,
) -> ScoresRejected:
    """Write the failure report (the failed rules, the rows of the users they name) and return the error
    that says so; nothing is published."""
    report = {**summary, "suite": SUITE, "published": False, "failed": failed, "results": results,
              "failed_rows": failed_rows(scores_dir, failed)}  # fmt: skip
    uri = _write_report(store, request.day, report)
    reasons = ", ".join(sorted({str(r["reason"]) for r in failed}))
    return ScoresRejected(
        f"scores for {request.day} by {request.version} failed {len(failed)} check(s) of {SUITE}: "
        f"{reasons}; the previous partition is kept",
        report,
        uri,
    )
