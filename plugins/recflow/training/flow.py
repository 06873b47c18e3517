"""The one training flow every model family goes through, so their numbers are comparable.

read the lake window -> check it -> split by time (train | hold-out) -> optional hyperparameter search
on a validation split carved from the *training* part -> fit -> score the hold-out with
:mod:`recflow.evaluation.metrics` -> fit the score-to-propensity map on one fold of the hold-out users and
measure it on the other (:mod:`recflow.evaluation.calibration`) -> write artifact (with ``calibration.json``),
``metrics.json`` and ``lineage.json`` -> register the
candidate in the S3 registry. The Spark entry point (``spark_jobs/train.py``, :mod:`recflow.training.entry`)
only parses arguments and calls :func:`run_training`.

Hold-out definition: events with ``holdout_start <= event_ts < end`` are the test set; events with
``start <= event_ts < holdout_start`` train. Test pairs whose user or item is absent from training
are dropped (no model can rank an item it never saw; cold users are scored by popularity elsewhere),
and the test keeps only pairs the user did not already have in training (seen items are removed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recflow.config.settings import load_settings
from recflow.constants import COL_TS, COL_USER, DEFAULT_K
from recflow.data.item_history import catalog_history, item_history, item_tags, read_items
from recflow.data.window import TrainingDataError, TrainingWindow, check_training_frame, read_window
from recflow.evaluation import spark_holdout
from recflow.evaluation.calibration import CalibrationResult, calibrate_on_holdout
from recflow.evaluation.canary import CANARY_FILE
from recflow.evaluation.python_holdout import record_canary
from recflow.evaluation.python_holdout import score_holdout as python_score_holdout
from recflow.models.artifact import save_candidate_index
from recflow.models.base import Recommender
from recflow.models.exploration import write_exploration
from recflow.models.segmented import SegmentedRecommender
from recflow.registry import ModelRegistry, ModelVersion
from recflow.scoring.explore_policy import ExplorePolicy
from recflow.scoring.seen import SeenPolicy
from recflow.training.fitters import Fitter

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

METRICS_SCHEMA_VERSION = 1
PRIMARY_METRIC = "ndcg"
#: Hidden sibling of the output folder a run writes into before the atomic rename.
STAGING_PREFIX = ".{name}-"


@dataclass(frozen=True)
class TrainingResult:
    """What a run produced: where, and the metrics the compare step reads."""

    family: str
    version: str | None  # the registry's id (content-derived), None when not registered
    output_dir: Path
    metrics: dict[str, float]
    params: dict[str, Any]
    registry_uri: str | None


@dataclass(frozen=True)
class _Run:
    """What one run was asked for: the steps read it, ``metrics.json`` and ``lineage.json`` record it."""

    family: str
    run_id: str
    lake_root: Path | str
    window: TrainingWindow
    k: int
    also_k: Sequence[int]
    policy: SeenPolicy
    exploration: ExplorePolicy | None = None

    @property
    def exclude_seen(self) -> bool:
        return self.policy.exclude_seen != "none"


@dataclass(frozen=True)
class _Chosen:
    """The parameters the search chose, the model fitted with them on the training part, and its judgement."""

    params: dict[str, Any]
    trials: list[dict[str, Any]]
    model: Recommender
    metrics: dict[str, float]
    truth: pd.DataFrame  # the judged hold-out pairs
    calibration: CalibrationResult


def code_version() -> str:
    """The git commit of the running code (``RECFLOW_CODE_VERSION`` wins, e.g. in a packaged job)."""
    if os.environ.get("RECFLOW_CODE_VERSION"):
        return os.environ["RECFLOW_CODE_VERSION"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def search(
    spark: SparkSession,
    fit: Fitter,
    train: DataFrame,
    window: TrainingWindow,
    candidates: list[dict[str, Any]],
    *,
    k: int,
    work_dir: Path,
    exclude_seen: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick the parameters with the best validation nDCG@k; the hold-out is never touched.

    The validation split is the last ~20% of the training days (at least one day).
    """
    if len(candidates) == 1:
        return candidates[0], []
    n_days = (window.holdout_start - window.start).days
    if n_days < 2:
        raise TrainingDataError("hyperparameter search needs at least 2 training days to carve a validation split")
    cut = window.holdout_start - timedelta(days=max(1, n_days // 5))
    inner = TrainingWindow(window.start, cut, window.holdout_start)
    from pyspark.sql import functions as F

    inner_train = train.where(F.col(COL_TS) < F.lit(TrainingWindow.ts(cut))).cache()
    validation = train.where(F.col(COL_TS) >= F.lit(TrainingWindow.ts(cut)))
    trials = []
    try:
        check_training_frame(inner_train, inner)  # once: the data is the same for every candidate
        for i, params in enumerate(candidates):
            model = fit(spark, inner_train, params, work_dir / f"trial-{i}")
            judged = spark_holdout.evaluate_on_holdout(spark, model, validation, k, exclude_seen=exclude_seen)
            trials.append({"params": params, "validation": judged.metrics})
    finally:
        inner_train.unpersist()
    best = max(trials, key=lambda t: t["validation"][f"{PRIMARY_METRIC}@{k}"])
    return dict(best["params"]), trials


def run_training(
    spark: SparkSession,
    *,
    family: str,
    fit: Fitter,
    lake_root: Path | str,
    window: TrainingWindow,
    candidates: list[dict[str, Any]],
    output_dir: Path,
    run_id: str,
    k: int = DEFAULT_K,
    also_k: Sequence[int] = (),
    register: bool = False,
    seen_policy: SeenPolicy | None = None,
    exploration: ExplorePolicy | None = None,
) -> TrainingResult:
    """Train one family on ``window`` and leave a complete candidate in ``output_dir`` (and the registry).

    The output folder is replaced atomically (:func:`_staging`), so a crashed run never leaves a partial
    artifact where the promote step could pick it up. Registration happens only after the rename, and the
    registry writes the version's manifest after its files, so the promote step (which reads manifests
    only) never sees a half-uploaded candidate. A model fitted into Parquet tables (ALS, NCF) is evaluated
    and canaried on executors (:func:`recflow.evaluation.spark_holdout.evaluate_on_holdout`), so no step of
    the run collects its training pairs or user factors to the driver.

    With ``exploration`` (a spec's ``exploration:``), the artifact also gets ``exploration.json``: the
    policy, each item's first day in the window and its interactions in the training part (an item first
    bought in the hold-out is listed with 0: the model cannot score it, exploration can show it), every
    item of the lake's ``items/`` without an event (0 interactions, first seen on its launch day or the
    window's end), and the item tags when the lake has them (:mod:`recflow.models.exploration`).

    Raises :class:`TrainingDataError` for data no model should train on (empty window, fewer than two
    users or items, null keys, NaN amounts, an empty hold-out).
    """
    run = _Run(family, run_id, lake_root, window, k, also_k, seen_policy or SeenPolicy(), exploration)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    train, test = _split(spark, lake_root, window)
    try:
        counts = check_training_frame(train, window)
        with _staging(output_dir) as staging:
            chosen = _fit_and_judge(spark, run, fit, train, test, candidates, staging / "work", timings)
            holdout = TrainingWindow.ts(window.holdout_start)
            history = item_history(train.unionByName(test), holdout) if exploration is not None else None
            train.unpersist()
            _save_artifact(spark, chosen.model, staging / "artifact")
            if exploration is not None and history is not None:
                items = read_items(spark, lake_root)
                catalog = catalog_history(history, items, window.end)
                write_exploration(staging / "artifact", exploration, catalog, item_tags(items))
            shutil.rmtree(staging / "work", ignore_errors=True)
            timings["total_s"] = time.perf_counter() - started
            report = _metrics_report(run, chosen)
            lineage = _lineage(spark, run, counts, chosen, timings)
            (staging / "metrics.json").write_text(json.dumps(report, indent=2, sort_keys=True))
            (staging / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
    except BaseException:
        train.unpersist()
        raise
    if not register:
        return TrainingResult(family, None, output_dir, chosen.metrics, chosen.params, None)
    version = _register(output_dir, family, chosen.metrics, lineage, window)
    return TrainingResult(family, version.version, output_dir, chosen.metrics, chosen.params, version.uri)


def _split(spark: SparkSession, lake_root: Path | str, window: TrainingWindow) -> tuple[DataFrame, DataFrame]:
    """The window's training part (cached: the search and the fit read it again) and its hold-out."""
    from pyspark.sql import functions as F

    data = read_window(spark, lake_root, window)
    holdout_ts = F.lit(TrainingWindow.ts(window.holdout_start))
    return data.where(F.col(COL_TS) < holdout_ts).cache(), data.where(F.col(COL_TS) >= holdout_ts)


@contextmanager
def _staging(output_dir: Path) -> Iterator[Path]:
    """A hidden sibling of ``output_dir`` to write into, renamed to ``output_dir`` when the block succeeds.

    A failure before the rename removes the staging folder and leaves any earlier ``output_dir`` untouched.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX.format(name=output_dir.name), dir=output_dir.parent))
    try:
        yield staging
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fit_and_judge(
    spark: SparkSession,
    run: _Run,
    fit: Fitter,
    train: DataFrame,
    test: DataFrame,
    candidates: list[dict[str, Any]],
    work_dir: Path,
    timings: dict[str, float],
) -> _Chosen:
    """Search (on the training part only), fit the chosen parameters, judge on the hold-out; time each step."""
    with _timed(timings, "search_s"):
        params, trials = search(
            spark, fit, train, run.window, candidates, k=run.k, work_dir=work_dir, exclude_seen=run.exclude_seen
        )
    with _timed(timings, "fit_s"):
        model = fit(spark, train, params, work_dir)
    with _timed(timings, "evaluate_s"):
        judged = spark_holdout.evaluate_on_holdout(spark, model, test, run.k, run.also_k, exclude_seen=run.exclude_seen)
    with _timed(timings, "calibrate_s"):
        calibration = calibrate_on_holdout(judged.recs, judged.truth, k=run.k)
    model.calibration = calibration.calibration
    return _Chosen(params, trials, model, judged.metrics, judged.truth, calibration)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the wall seconds of the block under ``key`` (only when it succeeds: a failed run has no timings)."""
    t0 = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t0


def _save_artifact(spark: SparkSession, model: Recommender, folder: Path) -> None:
    """Save the model, its calibration map, its item index (a large catalog's, :mod:`recflow.scoring.ann`)
    and, beside them, what the canary must reproduce from the registered bytes in a fresh process
    (:mod:`recflow.evaluation.canary`)."""
    model.save(folder)  # type: ignore[attr-defined]
    if model.calibration is not None:
        model.calibration.save(folder)
    save_candidate_index(model, folder)  # large catalogs only: the index the scoring core retrieves from
    canary = spark_holdout.record_canary(spark, model) if spark_holdout.in_tables(model) else record_canary(model)
    (folder / CANARY_FILE).write_text(json.dumps(canary, sort_keys=True))


def _segment_metrics(run: _Run, chosen: _Chosen) -> dict[str, Any] | None:
    """A segmented model's hold-out metrics per segment (the same definitions, on each segment's users);
    None for any other model."""
    model = chosen.model
    if not isinstance(model, SegmentedRecommender):
        return None
    segments = model.segments_of(chosen.truth[COL_USER].to_numpy())
    out: dict[str, Any] = {}
    for s in range(len(model.segments)):
        truth = chosen.truth[segments == s]
        metrics = (
            python_score_holdout(model, truth, run.k, run.also_k, exclude_seen=run.exclude_seen) if len(truth) else {}
        )
        out[str(s)] = {"holdout_users": int(truth[COL_USER].nunique()), "pairs": len(truth), "metrics": metrics}
    return out


def _metrics_report(run: _Run, chosen: _Chosen) -> dict[str, Any]:
    """``metrics.json``: the hold-out metrics with their definitions, read by the compare step (and, for a
    segmented model, the same metrics per segment)."""
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "family": run.family,
        "run_id": run.run_id,
        "k": run.k,
        "metrics": chosen.metrics,
        "holdout": {"users": int(chosen.truth[COL_USER].nunique()), "pairs": len(chosen.truth)},
        "segments": _segment_metrics(run, chosen),
        "segmentation": chosen.model.router.selection if isinstance(chosen.model, SegmentedRecommender) else None,
        "calibration": chosen.calibration.report(),
        "definitions": {
            "ranking": "binary relevance over the full catalog, training items removed; users = hold-out "
            "users with >= 1 relevant item; map@k divides by min(#relevant, k)",
        },
    }


def _lineage(
    spark: SparkSession, run: _Run, counts: dict[str, int], chosen: _Chosen, timings: dict[str, float]
) -> dict[str, Any]:
    """``lineage.json``: what the candidate was trained on, with which parameters and code, and how long it took."""
    window = run.window
    return {
        "family": run.family,
        "run_id": run.run_id,
        "window": {"start": str(window.start), "holdout_start": str(window.holdout_start), "end": str(window.end)},
        "input": {"lake": f"{str(run.lake_root).rstrip('/')}/interactions", "partitions": window.days(), **counts},
        "params": chosen.params,
        "scoring": run.policy.as_dict(),
        "exploration": run.exploration.as_dict() if run.exploration is not None else None,
        "search": chosen.trials,
        "code_version": code_version(),
        "spark_application_id": spark.sparkContext.applicationId,
        "timings": timings,
    }


def _register(
    output_dir: Path,
    family: str,
    metrics: dict[str, float],
    lineage: dict[str, Any],
    window: TrainingWindow,
) -> ModelVersion:
    """Upload the finished candidate; the registry writes its manifest last, so it is all or nothing.

    The registry derives the version id from the content, so a re-run of the interval is a new version.
    """
    registry = ModelRegistry.from_settings(load_settings())
    for name in ("metrics.json", "lineage.json"):
        shutil.copy(output_dir / name, output_dir / "artifact" / name)
    return registry.register(
        output_dir / "artifact",
        family=family,
        metrics=metrics,
        lineage=lineage,
        created_at=TrainingWindow.ts(window.end),
    )
