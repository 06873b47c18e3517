"""MovieLens-100K quality and speed benchmark: every model family under two protocols, beside popularity.

Launch (``make bench-quality`` runs this; 15-40 min on 2 cores with the default budgets, depending on load):
    .venv/bin/python bench/quality.py --seeds 42 43 44 --out bench/results

Two protocols, each with its own validation split carved from its training part only:

* ``stratified``: Microsoft Recommenders' MovieLens protocol, so the numbers compare with their table.
  Test: ``stratified_split(ratio=0.75, filter_by="item", seed=seed)``; validation: the same splitter on
  the train part with ``--validation-ratio`` (0.8) and seed ``seed + VALIDATION_SEED_OFFSET``.
* ``time``: the product's own question, "what will this user take next?". Test: each user's last 20%
  of events by timestamp (``user_chrono_split(ratio=0.8)``); validation: each user's last 20% of the
  train part. The split has no randomness, so the seeds vary only the models' own seeds.

Per protocol and seed, each family's candidates (``load_spec(family).candidates(budget, seed)``, spec
defaults first) are fitted on the fit part and ranked by validation nDCG@k; the best is refitted on the
full train part and evaluated ONCE on the test part. The champion is the family with the best mean
VALIDATION nDCG@k; the report also says whether it is the best on test.

Everything is the pipeline's code: each family is fitted by the ``fit`` the trainer runs for it
(``spark_jobs/train.py --family <family>``: ``recflow.training.fitters.FITTERS``), read from Parquet as the
DAG's trainers read the lake; relevance is ``recflow.evaluation.python_holdout.judgeable_pairs`` (the hold-out's rule:
known users and items, pairs not seen in training); ranking is ``Recommender.recommend(exclude_seen=True)``; metrics are
``recflow.evaluation.metrics.evaluate``. Definitions are in ``quality_report.DEFINITIONS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling report module, run or loaded by path
from machine import finish_run, start_run
from quality_report import (
    DEFINITIONS,
    check_goals,
    choose_champion,
    machine_info,
    render_chart,
    render_markdown,
    summarize,
)

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER, DEFAULT_K
from recflow.evaluation.calibration import calibrate_on_holdout
from recflow.evaluation.metrics import evaluate
from recflow.evaluation.python_holdout import judgeable_pairs
from recflow.evaluation.splitters import stratified_split, user_chrono_split
from recflow.models.base import Recommender

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SCHEMA_VERSION: Final = 2
#: Every family in models/, learned ones first; popularity is the floor each must clear.
KNOWN_FAMILIES: Final = ("als", "ncf", "hybrid", "sequence", "popularity")
SEEDED_FAMILIES: Final = ("als", "ncf", "hybrid")
REPORTED_METRICS: Final = ("ndcg", "precision", "recall", "map", "map_all_relevant", "hit_rate", "coverage")
PRIMARY_METRIC: Final = "ndcg"
#: Calibration figures of the test split (issue 19): expected and maximum calibration error, Brier score.
CALIBRATION_FIGURES: Final = ("ece", "mce", "brier")
STRATIFIED_TRAIN_RATIO: Final = 0.75
TIME_TRAIN_RATIO: Final = 0.8
VALIDATION_SEED_OFFSET: Final = 10_000
RESULT_FILES: Final = ("quality.json", "quality.md", "quality.png")

Splitter = Callable[[pd.DataFrame, int], tuple[pd.DataFrame, pd.DataFrame]]


@dataclass(frozen=True)
class Protocol:
    """A test split and the validation split carved from its train part, both described in words."""

    name: str
    title: str
    test_split: str
    validation_split: str
    split_test: Splitter
    split_validation: Splitter


def protocols(validation_ratio: float) -> dict[str, Protocol]:
    """The two protocols; ``validation_ratio`` is the stratified fit share (time always holds out 20%)."""
    return {
        "stratified": Protocol(
            "stratified",
            "random split stratified by item (Recommenders' protocol)",
            f"stratified by item, train ratio {STRATIFIED_TRAIN_RATIO}, seed = seed",
            f"stratified by item within the train part, fit ratio {validation_ratio}, "
            f"seed = seed + {VALIDATION_SEED_OFFSET}",
            lambda df, seed: stratified_split(df, ratio=STRATIFIED_TRAIN_RATIO, filter_by="item", seed=seed),
            lambda df, seed: stratified_split(
                df, ratio=validation_ratio, filter_by="item", seed=seed + VALIDATION_SEED_OFFSET
            ),
        ),
        "time": Protocol(
            "time",
            "each user's last 20% by timestamp held out (the product's protocol)",
            f"per user, the last {1 - TIME_TRAIN_RATIO:.0%} of events by timestamp (ties by item id); no seed",
            f"per user, the last {1 - TIME_TRAIN_RATIO:.0%} of the train part's events by timestamp",
            lambda df, seed: user_chrono_split(df, ratio=TIME_TRAIN_RATIO),
            lambda df, seed: user_chrono_split(df, ratio=TIME_TRAIN_RATIO),
        ),
    }


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``overrides`` patch every candidate of a family (tests use it to shrink models)."""

    seeds: tuple[int, ...] = (42, 43, 44)
    budgets: Mapping[str, int] = field(
        # Bounded for a shared 2-core machine (two protocols x 3 seeds); the specs' defaults are tuned.
        default_factory=lambda: {"als": 4, "ncf": 1, "hybrid": 3, "sequence": 4, "popularity": 1}
    )
    k: int = DEFAULT_K
    validation_ratio: float = 0.8
    families: tuple[str, ...] = KNOWN_FAMILIES
    protocols: tuple[str, ...] = ("stratified", "time")
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    models_dir: Path | None = None
    warm_up: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(KNOWN_FAMILIES))
        if unknown:
            raise ValueError(f"unknown model families {unknown}; known: {list(KNOWN_FAMILIES)}")
        bad_protocols = sorted(set(self.protocols) - {"stratified", "time"})
        if bad_protocols or not self.protocols:
            raise ValueError(f"protocols must be a non-empty subset of ['stratified', 'time'], got {self.protocols}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.k < 1 or any(self.budgets.get(f, 1) < 1 for f in self.families):
            raise ValueError(f"k and every budget must be >= 1, got k={self.k}, budgets={self.budgets}")
        if not 0.0 < self.validation_ratio < 1.0:
            raise ValueError(f"validation_ratio must be in (0, 1), got {self.validation_ratio}")


# --------------------------------------------------------------------------------------------------
# Fitting: each family's trainer fit (recflow.training.fitters), timed
# --------------------------------------------------------------------------------------------------
@dataclass
class _Data:
    """One training frame, staged as Parquet and read back cached, as the trainers read the lake."""

    pandas: pd.DataFrame
    spark: DataFrame

    @classmethod
    def of(cls, spark: SparkSession, frame: pd.DataFrame, path: Path) -> _Data:
        """Why not ``spark.createDataFrame(frame)``: that embeds the rows in every task of every stage
        that reads them (2.7 MB tasks on MovieLens-100K, in each ALS iteration), a cost the DAG's
        trainers, which read Parquet, never pay, so it would distort the fit times."""
        columns = [c for c in (COL_USER, COL_ITEM, COL_TS, COL_QUANTITY, COL_AMOUNT, COL_RATING) if c in frame]
        staged = frame[columns].reset_index(drop=True)
        if COL_TS in staged:
            staged[COL_TS] = staged[COL_TS].astype("datetime64[ms, UTC]")  # Spark reads no Parquet nanoseconds
        staged.to_parquet(path, index=False)
        sdf = spark.read.parquet(str(path)).cache()
        sdf.count()  # materialise now, so fit timings do not include reading the file
        return cls(frame, sdf)

    def release(self) -> None:
        self.spark.unpersist()


@cache
def trainer_fit(family: str, models_dir: Path | None = None) -> Callable[..., Recommender]:
    """The ``fit`` the trainer (``spark_jobs/train.py --family <family>``) runs, as the DAG runs it."""
    from recflow.training.fitters import FITTERS
    from recflow.training.specs import load_spec

    load_spec(family, models_dir)  # an unknown family fails here with the known ones, as in the DAG
    return FITTERS[family]


def timed_fit(
    family: str, spark: SparkSession, data: _Data, params: Mapping[str, Any], work_dir: Path, models_dir: Path | None
) -> tuple[Recommender, float]:
    """Fit and return the wall seconds of the fit alone (each fit's results are already materialised:
    ALS and NCF have written their tables)."""
    fit = trainer_fit(family, models_dir)
    started = time.perf_counter()
    model = fit(spark, data.spark, dict(params), work_dir)
    seconds = time.perf_counter() - started
    # ALS and NCF return their item side and leave the user side in Parquet (the DAG never reads it
    # back); this benchmark scores in process, so it reads it here, outside the fit's time.
    return model.with_user_side(), seconds


def score(
    model: Recommender, held_out: pd.DataFrame, k: int, *, calibrate: bool = False
) -> tuple[dict[str, float], int]:
    """The reported metrics of ``model`` on the pairs it can be judged on, and how many pairs those are.

    With ``calibrate`` (the one look at test), also the calibration figures the training flow reports:
    the map fitted on one fold of the test users, ECE / MCE / Brier measured on the other
    (:func:`recflow.evaluation.calibration.calibrate_on_holdout`), after (``ece``...) and before
    (``ece_before``...) the map."""
    truth = judgeable_pairs(held_out, model)
    recs = model.recommend(truth[COL_USER].unique().tolist(), k=k, exclude_seen=True)
    raw = evaluate(truth, recs, metrics=list(REPORTED_METRICS), k=k, catalog=model.index.items)
    metrics = {name: raw[f"{name}@{k}"] for name in REPORTED_METRICS}
    if calibrate:
        result = calibrate_on_holdout(recs, truth, k=k)
        for figure in CALIBRATION_FIGURES:
            metrics[figure] = getattr(result.after, figure)
            metrics[f"{figure}_before"] = getattr(result.before, figure)
    return metrics, len(truth)


def _candidates(family: str, config: BenchConfig, seed: int) -> list[dict[str, Any]]:
    from recflow.training.specs import load_spec

    spec = load_spec(family, config.models_dir)
    extra = {"seed": seed} if family in SEEDED_FAMILIES else {}
    overrides = dict(config.overrides.get(family, {}))
    return [{**c, **extra, **overrides} for c in spec.candidates(config.budgets.get(family, 1), seed)]


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------
def warm_up(spark: SparkSession, data: _Data, config: BenchConfig, work_dir: Path) -> dict[str, float]:
    """One short throwaway fit per learned family (JVM JIT, TensorFlow import and graph tracing)."""
    shrink = {"als": {"max_iter": 2}, "ncf": {"epochs": 1}, "hybrid": {"max_iter": 2}, "sequence": {}}
    seconds = {}
    for family in config.families:
        if family in shrink:
            params = {**_candidates(family, config, config.seeds[0])[0], **shrink[family]}
            seconds[family] = timed_fit(family, spark, data, params, work_dir / f"warmup-{family}", config.models_dir)[
                1
            ]
    return seconds


def run_seed(
    spark: SparkSession,
    interactions: pd.DataFrame,
    protocol: Protocol,
    seed: int,
    config: BenchConfig,
    work_dir: Path,
    *,
    warm: bool = False,
) -> dict[str, Any]:
    """Select on validation, refit on the train part, evaluate once on test, for every family."""
    train, test = protocol.split_test(interactions, seed)
    fit_part, validation = protocol.split_validation(train, seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    fit_data = _Data.of(spark, fit_part, work_dir / f"fit-{seed}.parquet")
    train_data = _Data.of(spark, train, work_dir / f"train-{seed}.parquet")
    out: dict[str, Any] = {
        "seed": seed,
        "rows": {"train": len(train), "test": len(test), "fit": len(fit_part), "validation": len(validation)},
        "held_out_pairs": {
            "test": len(test[[COL_USER, COL_ITEM]].drop_duplicates()),
            "validation": len(validation[[COL_USER, COL_ITEM]].drop_duplicates()),
        },
        "models": {},
    }
    try:
        if warm:
            out["warmup_fit_s"] = warm_up(spark, fit_data, config, work_dir)
        for family in config.families:
            trials: list[dict[str, Any]] = []
            search_started = time.perf_counter()
            for i, params in enumerate(_candidates(family, config, seed)):
                model, seconds = timed_fit(
                    family, spark, fit_data, params, work_dir / f"{family}-{i}", config.models_dir
                )
                metrics, out["truth_pairs_validation"] = score(model, validation, config.k)
                trials.append({"params": params, "fit_s": seconds, "validation": metrics})
                del model
            search_s = time.perf_counter() - search_started
            best = max(trials, key=lambda t: t["validation"][PRIMARY_METRIC])  # first wins ties
            model, fit_s = timed_fit(
                family, spark, train_data, best["params"], work_dir / f"{family}-final", config.models_dir
            )
            test_metrics, out["truth_pairs_test"] = score(model, test, config.k, calibrate=True)  # the one look
            out["models"][family] = {
                "params": best["params"],
                "validation": best["validation"],
                "test": test_metrics,
                "fit_s": fit_s,
                "search_s": search_s,
                "trials": trials,
            }
            del model
    finally:
        fit_data.release()
        train_data.release()
    out["champion"] = max(config.families, key=lambda f: out["models"][f]["validation"][PRIMARY_METRIC])
    return out


def run_protocol(
    spark: SparkSession,
    interactions: pd.DataFrame,
    protocol: Protocol,
    config: BenchConfig,
    work_dir: Path,
    *,
    warm: bool,
) -> dict[str, Any]:
    """Every seed under one protocol, summarised, with its champion chosen on validation."""
    runs = [
        run_seed(
            spark, interactions, protocol, seed, config, work_dir / f"{protocol.name}-{seed}", warm=warm and i == 0
        )
        for i, seed in enumerate(config.seeds)
    ]
    figures = [*CALIBRATION_FIGURES, *(f"{f}_before" for f in CALIBRATION_FIGURES)]
    summary = summarize(runs, config.families, [*REPORTED_METRICS, *figures])
    champion = choose_champion(summary)
    best_on_test = max(summary, key=lambda family: summary[family][PRIMARY_METRIC]["mean"])
    return {
        "title": protocol.title,
        "test_split": protocol.test_split,
        "validation_split": protocol.validation_split,
        "summary": summary,
        "champion": {
            "family": champion,
            "best_on_test": best_on_test,
            "per_seed": {str(run["seed"]): run["champion"] for run in runs},
        },
        "runs": runs,
    }


def run_benchmark(
    spark: SparkSession,
    interactions: pd.DataFrame,
    config: BenchConfig,
    out_dir: Path,
    *,
    dataset: str = "MovieLens-100K",
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run every protocol and seed, write ``quality.json``, ``.md`` and ``.png`` to ``out_dir``; return the report.

    ``argv``: the command line recorded under ``run`` (``bench/machine.py``: commit, command, times, load)."""
    run = start_run(argv)
    started, load_at_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    machine = machine_info(spark)  # now: the code version is the one that runs, whatever is committed later
    available = protocols(config.validation_ratio)
    work_dir = Path(tempfile.mkdtemp(prefix="recflow-bench-"))
    try:
        results = {
            name: run_protocol(spark, interactions, available[name], config, work_dir, warm=config.warm_up and i == 0)
            for i, name in enumerate(config.protocols)
        }
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "dataset": {
            "name": dataset,
            "rows": len(interactions),
            "users": int(interactions[COL_USER].nunique()),
            "items": int(interactions[COL_ITEM].nunique()),
        },
        "machine": {
            **machine,
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {
            "seeds": list(config.seeds),
            "budgets": {f: config.budgets.get(f, 1) for f in config.families},
            "k": config.k,
            "families": list(config.families),
            "selection": f"best validation {PRIMARY_METRIC}@k per family; champion = best mean validation",
            "overrides": {f: dict(v) for f, v in config.overrides.items()},
        },
        "definitions": DEFINITIONS,
        "protocols": results,
        "goals": check_goals(results),
        "runtime_s": time.perf_counter() - started,
        "run": finish_run(run),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "quality.md").write_text(render_markdown(report))
    render_chart(report, out_dir / "quality.png")
    return report


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/quality.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    defaults = BenchConfig().budgets
    for family in KNOWN_FAMILIES:
        if family != "popularity":
            parser.add_argument(
                f"--budget-{family}", type=int, default=defaults[family], help=f"{family} parameter sets per seed"
            )
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--validation-ratio", type=float, default=0.8)
    parser.add_argument("--models", nargs="+", default=list(KNOWN_FAMILIES), choices=KNOWN_FAMILIES)
    parser.add_argument("--protocols", nargs="+", default=["stratified", "time"], choices=["stratified", "time"])
    parser.add_argument("--master", default="local[2]", help="Spark master (the goals assume 2 cores)")
    parser.add_argument("--movielens-dir", type=Path, default=None, help="default: $RECFLOW_MOVIELENS_DIR")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from recflow.data.movielens import load_movielens
    from recflow.spark.session import get_spark

    args = parse_args(argv)
    budgets = {f: getattr(args, f"budget_{f}") for f in KNOWN_FAMILIES if f != "popularity"}
    config = BenchConfig(
        seeds=tuple(args.seeds),
        budgets={**budgets, "popularity": 1},
        k=args.k,
        validation_ratio=args.validation_ratio,
        families=tuple(args.models),
        protocols=tuple(args.protocols),
    )
    interactions = load_movielens(args.movielens_dir)
    spark = get_spark("recflow-bench-quality", master=args.master)
    try:
        report = run_benchmark(spark, interactions, config, args.out, argv=sys.argv[1:] if argv is None else argv)
    finally:
        spark.stop()
    print(render_markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
