"""MovieLens-100K quality and speed benchmark: ALS, NCF, the ALS+EASE hybrid and popularity (Recommenders protocol).

Launch (``make bench-quality`` runs this; ~10 min on 2 cores with the default budgets):
    .venv/bin/python bench/quality.py --seeds 42 43 44 --budget-als 6 --budget-ncf 3 --budget-hybrid 4 \
        --out bench/results

Protocol, per seed (Microsoft Recommenders' MovieLens notebooks, with one honest addition):

1. ``stratified_split(ratio=0.75, filter_by="item", seed=seed)``: 75% train / 25% test per item.
2. Validation is carved out of the 75% train part only: ``stratified_split`` again, by item, with
   ``--validation-ratio`` (0.8) and the derived seed ``seed + VALIDATION_SEED_OFFSET``.
3. Each family's candidates (``recflow.specs.load_spec(family).candidates(budget, seed)``, spec
   defaults first) are fitted on the fit part and ranked by validation nDCG@k; the best is refitted on
   the full 75% train and evaluated ONCE on the 25% test. A budget of 1 still scores the defaults on
   validation, because the champion is chosen by validation nDCG@k, never by test.
4. Everything is the library's code: ``AlsRecommender.fit``, ``NcfRecommender.fit``,
   ``HybridRecommender.fit``, ``PopularityRecommender.fit``, ``Recommender.recommend(exclude_seen=True)``
   and ``recflow.evaluation.evaluate``; there is no second implementation. The trainers read each
   split from Parquet, as the DAG's trainers read the lake.

Definitions (all at k over the full training catalog, each user's training items removed):

* relevance: every distinct test pair is relevant, whatever its star rating (as Recommenders, which
  evaluates against all test ratings); pairs the user already has in training are dropped from the truth
  (none on MovieLens, where a user rates a movie once; the count is reported);
* users averaged over: every test user; precision@k divides by k; recall@k by the number relevant;
  nDCG@k has binary gain and ideal DCG from min(#relevant, k) hits;
* MAP@k is reported twice: ``map`` divides each user's summed precision@hit by min(#relevant, k) (Spark
  MLlib), ``map_all_relevant`` by #relevant (Recommenders' ``map_at_k``);
* hit rate@k: share of test users with >= 1 hit; coverage@k: distinct recommended items / training items;
* mean +- std over seeds, std being the sample standard deviation (ddof=1);
* fit seconds: wall time of the refit on the full 75% train only (not data loading, not scoring), after
  a warm-up fit per family that is reported separately. Every fit returns materialised results (numpy
  factors for ALS, a trained Keras model for NCF), so no lazy work escapes the clock.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_QUANTITY, COL_RATING, COL_TS, COL_USER, DEFAULT_K
from recflow.evaluation import evaluate, metrics_table
from recflow.models.artifact import Recommender
from recflow.splitting import stratified_split

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SCHEMA_VERSION: Final = 1
#: The families issue 5 requires (a ``BenchConfig``'s default) and the extra ones the CLI also runs.
FAMILIES: Final = ("als", "ncf", "popularity")
OPTIONAL_FAMILIES: Final = ("hybrid",)
KNOWN_FAMILIES: Final = (*FAMILIES, *OPTIONAL_FAMILIES)
REPORTED_METRICS: Final = ("ndcg", "precision", "recall", "map", "map_all_relevant", "hit_rate", "coverage")
PRIMARY_METRIC: Final = "ndcg"
TEST_RATIO: Final = 0.75
VALIDATION_SEED_OFFSET: Final = 10_000
RESULT_FILES: Final = ("quality.json", "quality.md", "quality.png")

#: Microsoft Recommenders' MovieLens-100K table (k=10), for comparison only.
PUBLISHED: Final[dict[str, dict[str, float]]] = {
    "ALS explicit (Recommenders)": {"ndcg": 0.0466, "precision": 0.0496, "recall": 0.0167, "fit_s": 6.85},
    "NCF (Recommenders)": {"ndcg": 0.3988, "precision": 0.3497, "recall": 0.1816, "fit_s": 66.8},
    "BPR (Recommenders)": {"ndcg": 0.4420, "precision": 0.3882, "recall": 0.2125},
    "BiVAE (Recommenders)": {"ndcg": 0.4751, "precision": 0.4118, "recall": 0.2191},
}
PUBLISHED_HARDWARE: Final = "6 vCPU + P100 GPU (Recommenders benchmark notebook)"


@dataclass(frozen=True)
class Goal:
    """One target from issue 5: ``subject``'s ``metric`` (mean over seeds) compared with ``threshold``."""

    name: str
    subject: str  # a family, or "champion"
    metric: str  # a metric name or "fit_s"
    threshold: float
    higher_is_better: bool = True


GOALS: Final = (
    Goal("ALS nDCG@10 >= 0.48", "als", "ndcg", 0.48),
    Goal("NCF nDCG@10 >= 0.45", "ncf", "ndcg", 0.45),
    Goal("champion nDCG@10 >= 0.50", "champion", "ndcg", 0.50),
    Goal("champion P@10 >= 0.43", "champion", "precision", 0.43),
    Goal("ALS fit <= 6 s", "als", "fit_s", 6.0, higher_is_better=False),
    Goal("NCF fit <= 30 s", "ncf", "fit_s", 30.0, higher_is_better=False),
)


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``overrides`` patch every candidate of a family (tests use it to shrink models)."""

    seeds: tuple[int, ...] = (42, 43, 44)
    budgets: Mapping[str, int] = field(default_factory=lambda: {"als": 6, "ncf": 3, "hybrid": 4, "popularity": 1})
    k: int = DEFAULT_K
    validation_ratio: float = 0.8
    families: tuple[str, ...] = FAMILIES
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    models_dir: Path | None = None
    warm_up: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(KNOWN_FAMILIES))
        if unknown:
            raise ValueError(f"unknown model families {unknown}; known: {list(KNOWN_FAMILIES)}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.k < 1 or any(self.budgets.get(f, 1) < 1 for f in self.families):
            raise ValueError(f"k and every budget must be >= 1, got k={self.k}, budgets={self.budgets}")
        if not 0.0 < self.validation_ratio < 1.0:
            raise ValueError(f"validation_ratio must be in (0, 1), got {self.validation_ratio}")


# --------------------------------------------------------------------------------------------------
# Fitting: the library's trainers, timed
# --------------------------------------------------------------------------------------------------
@dataclass
class _Data:
    """One training frame in both shapes the trainers take, the Spark one cached and materialised."""

    pandas: pd.DataFrame
    spark: DataFrame

    @classmethod
    def of(cls, spark: SparkSession, frame: pd.DataFrame, path: Path) -> _Data:
        """Stage ``frame`` as Parquet at ``path`` and read it back, as the trainers read the lake.

        Why not ``spark.createDataFrame(frame)``: that embeds the rows in every task of every stage
        that reads them (Spark warned of 2.7 MB tasks on MovieLens-100K, in each ALS iteration), a
        cost the DAG's trainers, which read Parquet, never pay, so it would distort the fit times.
        """
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


def _fit(family: str, spark: SparkSession, data: _Data, params: Mapping[str, Any], work_dir: Path) -> Recommender:
    if family == "als":
        from recflow.models.als import AlsParams, AlsRecommender

        return AlsRecommender.fit(spark, data.spark, AlsParams.from_dict(dict(params)))
    if family == "ncf":
        from recflow.models.ncf import NcfParams, NcfRecommender

        return NcfRecommender.fit(spark, data.spark, NcfParams.from_dict(dict(params)), work_dir)
    if family == "hybrid":
        from recflow.models.hybrid import HybridParams, HybridRecommender

        return HybridRecommender.fit(spark, data.spark, HybridParams.from_dict(dict(params)))
    from recflow.models.popularity import PopularityRecommender

    return PopularityRecommender.fit(data.pandas)


def timed_fit(
    family: str, spark: SparkSession, data: _Data, params: Mapping[str, Any], work_dir: Path
) -> tuple[Recommender, float]:
    """Fit and return the wall seconds of the fit alone (each fit's results are already materialised)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = _fit(family, spark, data, params, work_dir)
    seconds = time.perf_counter() - started
    shutil.rmtree(work_dir, ignore_errors=True)
    return model, seconds


def relevant_pairs(held_out: pd.DataFrame, train: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Distinct held-out (user, item) pairs not already in training, and how many pairs were dropped."""
    pairs = held_out[[COL_USER, COL_ITEM]].drop_duplicates()
    seen = pd.MultiIndex.from_frame(train[[COL_USER, COL_ITEM]].drop_duplicates())
    in_train = pd.MultiIndex.from_frame(pairs).isin(seen)
    return pairs.loc[~in_train].reset_index(drop=True), int(in_train.sum())


def score(model: Recommender, truth: pd.DataFrame, k: int) -> dict[str, float]:
    """The reported metrics of ``model`` on ``truth``, keyed by bare metric name (``"ndcg"``)."""
    recs = model.recommend(truth[COL_USER].unique().tolist(), k=k, exclude_seen=True)
    raw = evaluate(truth, recs, metrics=list(REPORTED_METRICS), k=k, catalog=model.index.items)
    return {name: raw[f"{name}@{k}"] for name in REPORTED_METRICS}


def _candidates(family: str, config: BenchConfig, seed: int) -> list[dict[str, Any]]:
    from recflow.specs import load_spec

    spec = load_spec(family, config.models_dir)
    extra = {"seed": seed} if family in ("als", "ncf", "hybrid") else {}
    overrides = dict(config.overrides.get(family, {}))
    return [{**c, **extra, **overrides} for c in spec.candidates(config.budgets.get(family, 1), seed)]


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------
def warm_up(spark: SparkSession, data: _Data, config: BenchConfig, work_dir: Path) -> dict[str, float]:
    """One short throwaway fit per learned family (JVM JIT, TensorFlow import and graph tracing)."""
    shrink = {"als": {"max_iter": 2}, "ncf": {"epochs": 1}, "hybrid": {"max_iter": 2}}
    seconds = {}
    for family in config.families:
        if family in shrink:
            params = {**_candidates(family, config, config.seeds[0])[0], **shrink[family]}
            seconds[family] = timed_fit(family, spark, data, params, work_dir / f"warmup-{family}")[1]
    return seconds


def run_seed(
    spark: SparkSession, interactions: pd.DataFrame, seed: int, config: BenchConfig, work_dir: Path
) -> dict[str, Any]:
    """Select on validation, refit on the 75% train, evaluate once on the 25% test, for every family."""
    train, test = stratified_split(interactions, ratio=TEST_RATIO, filter_by="item", seed=seed)
    fit_part, validation = stratified_split(
        train, ratio=config.validation_ratio, filter_by="item", seed=seed + VALIDATION_SEED_OFFSET
    )
    test_truth, test_dropped = relevant_pairs(test, train)
    val_truth, val_dropped = relevant_pairs(validation, fit_part)
    work_dir.mkdir(parents=True, exist_ok=True)
    fit_data = _Data.of(spark, fit_part, work_dir / f"fit-{seed}.parquet")
    train_data = _Data.of(spark, train, work_dir / f"train-{seed}.parquet")
    out: dict[str, Any] = {
        "seed": seed,
        "rows": {"train": len(train), "test": len(test), "fit": len(fit_part), "validation": len(validation)},
        "truth_pairs": {"test": len(test_truth), "validation": len(val_truth)},
        "truth_pairs_dropped_as_seen": {"test": test_dropped, "validation": val_dropped},
        "models": {},
    }
    try:
        if config.warm_up and seed == config.seeds[0]:
            out["warmup_fit_s"] = warm_up(spark, fit_data, config, work_dir)
        for family in config.families:
            trials: list[dict[str, Any]] = []
            search_started = time.perf_counter()
            for i, params in enumerate(_candidates(family, config, seed)):
                model, seconds = timed_fit(family, spark, fit_data, params, work_dir / f"{family}-{i}")
                trials.append({"params": params, "fit_s": seconds, "validation": score(model, val_truth, config.k)})
                del model
            search_s = time.perf_counter() - search_started
            best = max(trials, key=lambda t: t["validation"][PRIMARY_METRIC])  # first wins ties
            model, fit_s = timed_fit(family, spark, train_data, best["params"], work_dir / f"{family}-final")
            out["models"][family] = {
                "params": best["params"],
                "validation": best["validation"],
                "test": score(model, test_truth, config.k),  # the one and only look at the test split
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


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summarize(runs: Sequence[Mapping[str, Any]], families: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per family: mean and sample std over seeds of every test metric, the fit seconds and validation nDCG."""
    summary: dict[str, dict[str, Any]] = {}
    for family in families:
        per_seed = [run["models"][family] for run in runs]
        summary[family] = {
            **{name: _mean_std([m["test"][name] for m in per_seed]) for name in REPORTED_METRICS},
            "fit_s": _mean_std([m["fit_s"] for m in per_seed]),
            "validation_ndcg": _mean_std([m["validation"][PRIMARY_METRIC] for m in per_seed]),
        }
    return summary


def choose_champion(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The family with the best mean VALIDATION nDCG@k over seeds (test numbers play no part)."""
    return max(summary, key=lambda family: summary[family]["validation_ndcg"]["mean"])


def check_goals(summary: Mapping[str, Mapping[str, Any]], champion: str) -> list[dict[str, Any]]:
    """Each goal with the measured mean; a goal nobody measured (family not run) is ``met=None``, not met."""
    rows = []
    for goal in GOALS:
        family = champion if goal.subject == "champion" else goal.subject
        value = summary.get(family, {}).get(goal.metric)
        measured = None if value is None else float(value["mean"])
        met: bool | None = None
        if measured is not None:
            met = measured >= goal.threshold if goal.higher_is_better else measured <= goal.threshold
        rows.append({**asdict(goal), "family": family, "measured": measured, "met": met})
    return rows


def machine_info(spark: SparkSession) -> dict[str, Any]:
    def version(*distributions: str) -> str:
        for name in distributions:  # TensorFlow ships under several distribution names
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return "not installed"

    from recflow.training import code_version

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        # Timings are only comparable on an idle machine: record how busy it was when the report was made.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "spark_master": spark.sparkContext.master,
        "spark_default_parallelism": spark.sparkContext.defaultParallelism,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {
            "pyspark": version("pyspark"),
            "tensorflow": version("tensorflow", "tensorflow-cpu", "tensorflow_cpu"),
            **{p: version(p) for p in ("keras", "numpy", "pandas", "matplotlib")},
        },
        "code_version": code_version(),
    }


def run_benchmark(
    spark: SparkSession,
    interactions: pd.DataFrame,
    config: BenchConfig,
    out_dir: Path,
    *,
    dataset: str = "MovieLens-100K",
) -> dict[str, Any]:
    """Run every seed, write ``quality.json``, ``quality.md`` and ``quality.png`` to ``out_dir``; return the report."""
    started, load_at_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    work_dir = Path(tempfile.mkdtemp(prefix="recflow-bench-"))
    try:
        runs = [run_seed(spark, interactions, seed, config, work_dir) for seed in config.seeds]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    summary = summarize(runs, config.families)
    champion = choose_champion(summary)
    report = {
        "schema_version": SCHEMA_VERSION,
        "dataset": {
            "name": dataset,
            "rows": len(interactions),
            "users": int(interactions[COL_USER].nunique()),
            "items": int(interactions[COL_ITEM].nunique()),
        },
        "machine": {**machine_info(spark), "load_average_at_start": load_at_start},
        "config": {
            "seeds": list(config.seeds),
            "budgets": {f: config.budgets.get(f, 1) for f in config.families},
            "k": config.k,
            "test_split": f"stratified by item, train ratio {TEST_RATIO}, seed = seed",
            "validation_split": (
                f"stratified by item within the train part, fit ratio {config.validation_ratio}, "
                f"seed = seed + {VALIDATION_SEED_OFFSET}"
            ),
            "selection": f"best validation {PRIMARY_METRIC}@k per family; champion = best mean validation",
            "overrides": {f: dict(v) for f, v in config.overrides.items()},
        },
        "definitions": DEFINITIONS,
        "summary": summary,
        "champion": {
            "family": champion,
            "per_seed": {str(run["seed"]): run["champion"] for run in runs},
        },
        "goals": check_goals(summary, champion),
        "published": {"hardware": PUBLISHED_HARDWARE, "models": PUBLISHED},
        "runs": runs,
        "runtime_s": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "quality.md").write_text(render_markdown(report))
    render_chart(report, out_dir / "quality.png")
    return report


DEFINITIONS: Final = {
    "relevance": "every distinct held-out (user, item) pair, any star rating; pairs already in the "
    "user's training items are dropped (count in runs[].truth_pairs_dropped_as_seen)",
    "ranking": "top k over the full training catalog with each user's training items removed; averaged "
    "over every held-out user (a user without recommendations counts 0)",
    "precision": "hits in top k / k",
    "recall": "hits in top k / #relevant",
    "ndcg": "binary gain, 1/log2(rank+1) discount, ideal DCG from min(#relevant, k) hits",
    "map": "AP@k = sum of precision@rank over hits in top k / min(#relevant, k) (Spark MLlib)",
    "map_all_relevant": "AP@k = sum of precision@rank over hits in top k / #relevant (Recommenders map_at_k)",
    "hit_rate": "share of held-out users with >= 1 hit in top k",
    "coverage": "distinct items in any top k / number of training items",
    "fit_s": "wall seconds of the final refit on the 75% train (Spark actions forced: factors or a trained "
    "Keras model are returned), after a warm-up fit per family reported as warmup_fit_s",
    "std": "sample standard deviation over seeds (ddof=1)",
}

# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------
_LABELS: Final = {
    "ndcg": "nDCG@k",
    "precision": "P@k",
    "recall": "R@k",
    "map": "MAP@k (min(rel,k))",
    "map_all_relevant": "MAP@k (all rel)",
    "hit_rate": "hit rate@k",
    "coverage": "coverage@k",
    "fit_s": "fit s",
}


def _label(metric: str, k: int) -> str:
    return _LABELS[metric].replace("@k", f"@{k}")


def render_markdown(report: Mapping[str, Any]) -> str:
    k, summary, machine = report["config"]["k"], report["summary"], report["machine"]
    columns = [*REPORTED_METRICS, "fit_s"]
    lines = [
        f"# Quality benchmark: {report['dataset']['name']}",
        "",
        f"Run {machine['date_utc']} on {machine['cores']} cores ({machine['spark_master']}), "
        f"{machine['platform']}; pyspark {machine['versions']['pyspark']}, tensorflow "
        f"{machine['versions']['tensorflow']}; code {machine['code_version'][:12]}. "
        f"Total runtime {report['runtime_s']:.0f} s. Load average (1/5/15 min) at start "
        f"{machine['load_average_at_start']}, at end {machine['load_average_at_end']}: timings on a busy "
        "machine are slower than on an idle one.",
        "",
        f"Seeds {report['config']['seeds']}, k={k}, search budgets {report['config']['budgets']}. "
        f"Test: {report['config']['test_split']}. Validation: {report['config']['validation_split']}. "
        "Test touched once per seed.",
        "",
        "## Results (test, mean ± sample std over seeds)",
        "",
        "| model | " + " | ".join(_label(c, k) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for family, values in summary.items():
        digits = {"fit_s": 1}
        cells = [f"{values[c]['mean']:.{digits.get(c, 4)}f} ± {values[c]['std']:.{digits.get(c, 4)}f}" for c in columns]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    warmup: dict[str, float] = next((run["warmup_fit_s"] for run in report["runs"] if "warmup_fit_s" in run), {})
    if warmup:
        lines += ["", "Warm-up fits (not in fit s): " + ", ".join(f"{f} {s:.1f} s" for f, s in warmup.items())]
    champion = report["champion"]
    lines += [
        "",
        f"**Champion** (best mean validation nDCG@{k}, not test): **{champion['family']}**; per seed: "
        + ", ".join(f"{seed}: {family}" for seed, family in champion["per_seed"].items()),
        "",
        f"## Published (Recommenders, k=10, {report['published']['hardware']})",
        "",
        metrics_table(
            {
                name: {_label(m, 10): v for m, v in values.items()}
                for name, values in report["published"]["models"].items()
            }
        ),
        "",
        "## Goals (issue 5; measured = mean over seeds)",
        "",
        "| goal | model | measured | met |",
        "|---|---|---:|---|",
    ]
    for goal in report["goals"]:
        measured = "not run" if goal["measured"] is None else f"{goal['measured']:.4g}"
        met = {True: "met", False: "**not met**", None: "not run"}[goal["met"]]
        lines.append(f"| {goal['name']} | {goal['family']} | {measured} | {met} |")
    lines += ["", "## Chosen parameters and validation nDCG per seed", ""]
    lines += ["| seed | model | validation nDCG | test nDCG | params |", "|---|---|---:|---:|---|"]
    for run in report["runs"]:
        for family, result in run["models"].items():
            params = ", ".join(f"{key}={value}" for key, value in result["params"].items())
            lines.append(
                f"| {run['seed']} | {family} | {result['validation']['ndcg']:.4f} | "
                f"{result['test']['ndcg']:.4f} | {params} |"
            )
    lines += ["", "## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def render_chart(report: Mapping[str, Any], path: Path) -> None:
    """Grouped bars of nDCG, P and R at k: ours (mean, std error bars) beside the published models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("ndcg", "precision", "recall")
    k = report["config"]["k"]
    bars: list[tuple[str, list[float], list[float]]] = [
        (f"{family} (ours)", [v[m]["mean"] for m in metrics], [v[m]["std"] for m in metrics])
        for family, v in report["summary"].items()
    ]
    bars += [(name, [v[m] for m in metrics], [0.0] * len(metrics)) for name, v in report["published"]["models"].items()]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, (name, means, stds) in enumerate(bars):
        xs = [x + (i - (len(bars) - 1) / 2) * width for x in range(len(metrics))]
        ours = "ours" in name
        ax.bar(xs, means, width, yerr=stds if ours else None, capsize=2, label=name, hatch="" if ours else "//")
    ax.set_xticks(range(len(metrics)), [_label(m, k) for m in metrics])
    ax.set_ylabel("score (test, mean over seeds)")
    ax.set_title(f"{report['dataset']['name']}: ours ({len(report['config']['seeds'])} seeds) vs published")
    ax.set_ylim(0, 1.3 * max(max(means) for _, means, _ in bars))  # room for the legend
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--budget-als", type=int, default=6, help="ALS parameter sets tried per seed")
    parser.add_argument("--budget-ncf", type=int, default=3, help="NCF parameter sets tried per seed")
    parser.add_argument("--budget-hybrid", type=int, default=4, help="ALS+EASE parameter sets tried per seed")
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--validation-ratio", type=float, default=0.8)
    parser.add_argument("--models", nargs="+", default=list(KNOWN_FAMILIES), choices=KNOWN_FAMILIES)
    parser.add_argument("--master", default="local[2]", help="Spark master (the goals assume 2 cores)")
    parser.add_argument("--movielens-dir", type=Path, default=None, help="default: $RECFLOW_MOVIELENS_DIR")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from recflow.data.movielens import load_movielens
    from recflow.spark import get_spark

    args = parse_args(argv)
    config = BenchConfig(
        seeds=tuple(args.seeds),
        budgets={"als": args.budget_als, "ncf": args.budget_ncf, "hybrid": args.budget_hybrid, "popularity": 1},
        k=args.k,
        validation_ratio=args.validation_ratio,
        families=tuple(args.models),
    )
    interactions = load_movielens(args.movielens_dir)
    spark = get_spark("recflow-bench-quality", master=args.master)
    try:
        report = run_benchmark(spark, interactions, config, args.out)
    finally:
        spark.stop()
    print(render_markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
