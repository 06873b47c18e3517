"""The one training flow every model family goes through, so their numbers are comparable.

read the lake window -> check it -> split by time (train | hold-out) -> optional hyperparameter search
on a validation split carved from the *training* part -> fit -> score the hold-out with
:mod:`recflow.evaluation.metrics` -> write artifact, ``metrics.json`` and ``lineage.json`` -> register the
candidate in the S3 registry. The Spark entry points only parse arguments and call :func:`run_training`.

Hold-out definition: events with ``holdout_start <= event_ts < end`` are the test set; events with
``start <= event_ts < holdout_start`` train. Test pairs whose user or item is absent from training
are dropped (no model can rank an item it never saw; cold users are scored by popularity elsewhere),
and the test keeps only pairs the user did not already have in training (seen items are removed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER, DEFAULT_K
from recflow.evaluation.canary import CANARY_FILE, record_canary
from recflow.evaluation.metrics import evaluate
from recflow.models.artifact import Recommender
from recflow.scoring.seen import SeenPolicy

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from recflow.registry import ModelVersion

METRICS_SCHEMA_VERSION = 1
PRIMARY_METRIC = "ndcg"
#: Hidden sibling of the output folder a run writes into before the atomic rename.
STAGING_PREFIX = ".{name}-"

Fitter = Callable[["SparkSession", "DataFrame", Mapping[str, Any], Path], Recommender]


class TrainingDataError(ValueError):
    """The training window cannot produce a meaningful model (empty, one user or item, NaN keys...)."""


@dataclass(frozen=True)
class TrainingWindow:
    """``[start, holdout_start)`` trains, ``[holdout_start, end)`` is the hold-out; dates are UTC days."""

    start: date
    holdout_start: date
    end: date

    def __post_init__(self) -> None:
        if not self.start < self.holdout_start < self.end:
            raise TrainingDataError(
                f"window must satisfy start < holdout_start < end, got {self.start} / {self.holdout_start} / {self.end}"
            )

    @classmethod
    def ending(cls, end: date, *, train_days: int, holdout_days: int) -> TrainingWindow:
        """The window whose hold-out is the last ``holdout_days`` days before ``end`` (exclusive)."""
        if train_days < 1 or holdout_days < 1:
            raise TrainingDataError(f"train_days and holdout_days must be >= 1, got {train_days}, {holdout_days}")
        holdout_start = end - timedelta(days=holdout_days)
        return cls(holdout_start - timedelta(days=train_days), holdout_start, end)

    @staticmethod
    def ts(day: date) -> datetime:
        return datetime.combine(day, dtime.min, tzinfo=UTC)

    def days(self) -> list[str]:
        n = (self.end - self.start).days
        return [(self.start + timedelta(days=i)).isoformat() for i in range(n)]


@dataclass(frozen=True)
class TrainingResult:
    """What a run produced: where, and the metrics the compare step reads."""

    family: str
    version: str | None  # the registry's id (content-derived), None when not registered
    output_dir: Path
    metrics: dict[str, float]
    params: dict[str, Any]
    registry_uri: str | None


def read_window(spark: SparkSession, lake_root: Path | str, window: TrainingWindow) -> DataFrame:
    """Interactions with ``start <= event_ts < end`` from the validated lake table."""
    from pyspark.sql import functions as F

    path = f"{str(lake_root).rstrip('/')}/interactions"
    try:
        df = spark.read.parquet(path)
    except Exception as exc:  # Spark raises AnalysisException for a missing or empty path
        raise TrainingDataError(f"no validated interactions under {path}: {exc}") from exc
    return df.where(
        (F.col(COL_TS) >= F.lit(TrainingWindow.ts(window.start)))
        & (F.col(COL_TS) < F.lit(TrainingWindow.ts(window.end)))
    )


def _flag(condition: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(condition, 1).otherwise(0)


def check_training_frame(train: DataFrame, window: TrainingWindow) -> dict[str, int]:
    """Refuse data no model should train on; returns counts for lineage.

    Checked in this order, so the message names the first thing to fix: no rows at all; null keys or
    NaN/null amounts (the lake should only hold validated rows); fewer than 2 users or 2 items (a
    factorisation of one row or one column ranks nothing, and ALS would train without complaint).
    """
    from pyspark.sql import functions as F

    row = train.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct(COL_USER).alias("users"),
        F.countDistinct(COL_ITEM).alias("items"),
        F.sum(_flag(F.col(COL_USER).isNull() | F.col(COL_ITEM).isNull() | F.col(COL_TS).isNull())).alias("null_keys"),
        # pyarrow writes a pandas NaN as null, so a NaN that reached the lake is usually a null here
        F.sum(_flag(F.col(COL_AMOUNT).isNull() | F.isnan(F.col(COL_AMOUNT)))).alias("nan_amounts"),
    ).first()
    assert row is not None  # an aggregate always returns one row
    counts = {key: int(row[key] or 0) for key in ("rows", "users", "items", "null_keys", "nan_amounts")}
    where = f"training window {window.start}..{window.holdout_start}"
    if counts["rows"] == 0:
        raise TrainingDataError(f"{where} is empty: ingest data for those days first")
    if counts["null_keys"] or counts["nan_amounts"]:
        raise TrainingDataError(
            f"{where} has {counts['null_keys']} rows with null keys and {counts['nan_amounts']} NaN or null "
            "amounts: "
            "the lake should only hold validated rows; re-run validation"
        )
    if counts["users"] < 2 or counts["items"] < 2:
        raise TrainingDataError(
            f"{where} has {counts['users']} user(s) and {counts['items']} item(s); "
            "collaborative filtering needs at least 2 of each"
        )
    return counts


def holdout_truth(test: DataFrame, recommender: Recommender, *, exclude_seen: bool = True) -> pd.DataFrame:
    """Distinct test pairs the model can be judged on (known user, known item, not seen in training)."""
    pairs = cast(pd.DataFrame, test.select(COL_USER, COL_ITEM).distinct().toPandas())
    return judgeable_pairs(pairs, recommender, exclude_seen=exclude_seen)


def judgeable_pairs(held_out: pd.DataFrame, recommender: Recommender, *, exclude_seen: bool = True) -> pd.DataFrame:
    """The distinct held-out (user, item) pairs with a known user and item that the user did not have in
    training: the relevance the pipeline's hold-out and the quality benchmark both judge a model on.

    Why drop the rest: no model can rank an item it never saw, and a seen item is removed from every
    ranking, so either kind of pair would only lower every model's score alike. Under the spec's
    ``exclude_seen: none`` policy (repeat purchases) seen items stay in the rankings, so repeat pairs
    stay relevant (``exclude_seen=False``).
    """
    pairs = held_out[[COL_USER, COL_ITEM]].drop_duplicates()
    users = recommender.index.user_codes(pairs[COL_USER])
    items = recommender.index.item_codes(pairs[COL_ITEM])
    known = (users >= 0) & (items >= 0)
    pairs, users, items = pairs[known], users[known], items[known]
    if not exclude_seen:
        return pairs.reset_index(drop=True)
    seen = recommender.seen
    n_items = recommender.index.n_items
    seen_keys = np.repeat(np.arange(len(seen.indptr) - 1), np.diff(seen.indptr)) * n_items + seen.indices
    is_seen = np.isin(users.astype(np.int64) * n_items + items, seen_keys)
    return pairs[~is_seen].reset_index(drop=True)


def score_holdout(
    recommender: Recommender, truth: pd.DataFrame, k: int, also_k: Sequence[int] = (), *, exclude_seen: bool = True
) -> dict[str, float]:
    """Ranking metrics at ``k`` (and at each of ``also_k``) over the full catalog, seen items removed
    unless the spec's policy is ``exclude_seen: none`` (the same policy batch scoring applies).

    ``also_k`` exists so a run asked for, say, k=20 still reports the cut-off the promotion policy
    compares on (``ndcg@10``); one top-max(k) list serves every cut-off.
    """
    if truth.empty:
        raise TrainingDataError("the hold-out has no pairs with known users and items: widen the window")
    cutoffs = sorted({k, *also_k})
    recs = recommender.recommend(truth[COL_USER].unique(), k=cutoffs[-1], exclude_seen=exclude_seen)
    return holdout_metrics(recommender, truth, recs, cutoffs)


def holdout_metrics(
    recommender: Recommender, truth: pd.DataFrame, recs: pd.DataFrame, cutoffs: Sequence[int]
) -> dict[str, float]:
    """The metrics of top-max(cutoffs) lists against the judged pairs, at every cut-off."""
    if truth.empty:
        raise TrainingDataError("the hold-out has no pairs with known users and items: widen the window")
    metrics: dict[str, float] = {}
    for cutoff in cutoffs:
        metrics.update(evaluate(truth, recs, k=cutoff, catalog=recommender.index.items))
    return metrics


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

    from recflow.evaluation.metrics import spark_holdout as holdout

    inner_train = train.where(F.col(COL_TS) < F.lit(TrainingWindow.ts(cut))).cache()
    validation = train.where(F.col(COL_TS) >= F.lit(TrainingWindow.ts(cut)))
    trials = []
    try:
        check_training_frame(inner_train, inner)  # once: the data is the same for every candidate
        for i, params in enumerate(candidates):
            model = fit(spark, inner_train, params, work_dir / f"trial-{i}")
            metrics, _ = holdout.judge(spark, model, validation, k, exclude_seen=exclude_seen)
            trials.append({"params": params, "validation": metrics})
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
) -> TrainingResult:
    """Train one family on ``window`` and leave a complete candidate in ``output_dir`` (and the registry).

    The output folder is replaced atomically (written beside, then renamed), so a crashed run never
    leaves a partial artifact where the promote step could pick it up: a failure before the rename
    removes the staging folder and leaves any earlier ``output_dir`` untouched. Registration happens
    only after the rename, and the registry writes the version's manifest after its files, so the
    promote step (which reads manifests only) never sees a half-uploaded candidate. A model fitted
    into Parquet tables (ALS, NCF) is evaluated and canaried on executors
    (:func:`recflow.evaluation.spark_holdout.judge`), so no step of the run collects its training pairs or user factors to the driver.

    Raises :class:`TrainingDataError` for data no model should train on (empty window, fewer than two
    users or items, null keys, NaN amounts, an empty hold-out).
    """
    from pyspark.sql import functions as F

    from recflow.evaluation.metrics import spark_holdout as holdout

    policy = seen_policy or SeenPolicy()
    exclude_seen = policy.exclude_seen != "none"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = read_window(spark, lake_root, window)
    holdout_ts = F.lit(TrainingWindow.ts(window.holdout_start))
    train = data.where(F.col(COL_TS) < holdout_ts).cache()
    test = data.where(F.col(COL_TS) >= holdout_ts)
    try:
        counts = check_training_frame(train, window)
    except BaseException:
        train.unpersist()
        raise
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX.format(name=output_dir.name), dir=output_dir.parent))
    try:
        t0 = time.perf_counter()
        params, trials = search(
            spark, fit, train, window, candidates, k=k, work_dir=staging / "work", exclude_seen=exclude_seen
        )
        timings["search_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = fit(spark, train, params, staging / "work")
        timings["fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics, truth = holdout.judge(spark, model, test, k, also_k, exclude_seen=exclude_seen)
        timings["evaluate_s"] = time.perf_counter() - t0
        train.unpersist()
        model.save(staging / "artifact")  # type: ignore[attr-defined]
        # what the canary must reproduce from the registered bytes, in a fresh process (recflow.evaluation.canary)
        canary = holdout.record_canary(spark, model) if holdout.in_tables(model) else record_canary(model)
        (staging / "artifact" / CANARY_FILE).write_text(json.dumps(canary, sort_keys=True))
        shutil.rmtree(staging / "work", ignore_errors=True)
        timings["total_s"] = time.perf_counter() - started
        lineage = {
            "family": family,
            "run_id": run_id,
            "window": {
                "start": str(window.start),
                "holdout_start": str(window.holdout_start),
                "end": str(window.end),
            },
            "input": {
                "lake": f"{str(lake_root).rstrip('/')}/interactions",
                "partitions": window.days(),
                **counts,
            },
            "params": params,
            "scoring": policy.as_dict(),
            "search": trials,
            "code_version": code_version(),
            "spark_application_id": spark.sparkContext.applicationId,
            "timings": timings,
        }
        report = {
            "schema_version": METRICS_SCHEMA_VERSION,
            "family": family,
            "run_id": run_id,
            "k": k,
            "metrics": metrics,
            "holdout": {"users": int(truth[COL_USER].nunique()), "pairs": len(truth)},
            "definitions": {
                "ranking": "binary relevance over the full catalog, training items removed; users = hold-out "
                "users with >= 1 relevant item; map@k divides by min(#relevant, k)",
            },
        }
        (staging / "metrics.json").write_text(json.dumps(report, indent=2, sort_keys=True))
        (staging / "lineage.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        train.unpersist()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    version = _register(output_dir, family, metrics, lineage, window) if register else None
    uri = None if version is None else version.uri
    return TrainingResult(family, None if version is None else version.version, output_dir, metrics, params, uri)


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
    from recflow.config.settings import load_settings
    from recflow.registry import ModelRegistry

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


def training_arg_parser(family: str) -> argparse.ArgumentParser:
    """The arguments every trainer entry point takes (the DAG builds exactly this list)."""
    parser = argparse.ArgumentParser(prog=f"train_{family}", description=f"Train and evaluate the {family} model.")
    parser.add_argument("--lake", required=True, help="lake root holding interactions/event_date=*/")
    parser.add_argument("--train-start", required=True, type=date.fromisoformat)
    parser.add_argument("--holdout-start", required=True, type=date.fromisoformat)
    parser.add_argument("--end", required=True, type=date.fromisoformat, help="exclusive end of the hold-out")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument(
        "--run-id", required=True, help="the training attempt (Airflow run id), recorded in the lineage"
    )
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument(
        "--also-k", type=int, action="append", default=[], help="further cut-offs to report (repeatable)"
    )
    parser.add_argument("--budget", type=int, default=1, help="parameter sets to try (1 = spec defaults)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--params-json", default=None, help="overrides of the spec's params, as JSON")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--register", action="store_true", help="upload the candidate to the S3 registry")
    return parser


def main_for(family: str, fit: Fitter, argv: list[str] | None = None) -> TrainingResult:
    """Shared ``main`` of the trainer entry points: parse, build the session, train, stop the session.

    Bad inputs (:class:`TrainingDataError`, :class:`recflow.training.specs.SpecError`) end the process with one
    clear last line, ``train_<family> failed: <Error>: <message>``, and exit code 1. Why: spark-submit
    streams the driver's output into the Airflow task log, where a long traceback would bury the one
    sentence that says what to fix. Any other error keeps its traceback, because then the trace is the
    useful part.
    """
    from recflow.training.specs import SpecError

    try:
        return _main(family, fit, argv)
    except (TrainingDataError, SpecError) as exc:
        raise SystemExit(f"train_{family} failed: {type(exc).__name__}: {exc}") from exc


def _main(family: str, fit: Fitter, argv: list[str] | None) -> TrainingResult:
    from recflow.spark.session import get_spark
    from recflow.training.specs import load_spec

    args = training_arg_parser(family).parse_args(argv)
    if args.k < 1 or args.budget < 1 or any(c < 1 for c in args.also_k):
        raise SystemExit(f"--k, --also-k and --budget must be >= 1, got {args.k}, {args.also_k}, {args.budget}")
    window = TrainingWindow(args.train_start, args.holdout_start, args.end)
    spec = load_spec(family, args.models_dir)
    overrides = json.loads(args.params_json) if args.params_json else {}
    if not isinstance(overrides, dict):
        raise SystemExit(f"--params-json must be a JSON object, got {args.params_json!r}")
    candidates = [{**c, **overrides} for c in spec.candidates(args.budget, args.seed)]
    spark = get_spark(f"recflow-train-{family}")
    try:
        result = run_training(
            spark,
            family=family,
            fit=fit,
            lake_root=args.lake,
            window=window,
            candidates=candidates,
            output_dir=args.output_dir,
            run_id=args.run_id,
            k=args.k,
            also_k=args.also_k,
            register=args.register,
            seen_policy=SeenPolicy.from_dict(spec.scoring),
        )
    finally:
        spark.stop()
    print(
        json.dumps(
            {
                "family": family,
                "version": result.version,
                "metrics": result.metrics,
                "registry_uri": result.registry_uri,
            },
            sort_keys=True,
        )
    )
    return result
