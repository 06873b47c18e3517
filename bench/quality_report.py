"""Summaries, goals and the Markdown/PNG reports of the quality benchmark (``bench/quality.py`` runs it).

Kept apart from the pipeline so the numbers' meaning (definitions, goals, champion rule) reads in one
place and the pipeline stays about what runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from machine import provenance_line  # bench/machine.py: this folder is on sys.path (see quality.py)

from recflow.evaluation.metrics import metrics_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PRIMARY_METRIC: Final = "ndcg"

#: Microsoft Recommenders' MovieLens-100K table (k=10, their stratified protocol), for comparison only.
PUBLISHED: Final[dict[str, dict[str, float]]] = {
    "ALS explicit (Recommenders)": {"ndcg": 0.0466, "precision": 0.0496, "recall": 0.0167, "fit_s": 6.85},
    "NCF (Recommenders)": {"ndcg": 0.3988, "precision": 0.3497, "recall": 0.1816, "fit_s": 66.8},
    "BPR (Recommenders)": {"ndcg": 0.4420, "precision": 0.3882, "recall": 0.2125},
    "BiVAE (Recommenders)": {"ndcg": 0.4751, "precision": 0.4118, "recall": 0.2191},
}
PUBLISHED_HARDWARE: Final = "6 vCPU + P100 GPU (Recommenders benchmark notebook)"


@dataclass(frozen=True)
class Goal:
    """One target: ``subject``'s ``metric`` under ``protocol`` compared with ``threshold``.

    ``statistic`` is what is compared: the mean over seeds, or the worst seed. With ``relative_to`` the
    threshold is a ratio to that family's mean (1.15 = 15% above). ``metric="best_on_test"`` asks
    whether the champion (chosen on validation) also has the best mean test nDCG.
    """

    name: str
    issue: int
    protocol: str
    subject: str  # a family, or "champion"
    metric: str  # a metric name, "fit_s" or "best_on_test"
    threshold: float = 0.0
    higher_is_better: bool = True
    statistic: Literal["mean", "worst seed"] = "mean"
    relative_to: str | None = None


GOALS: Final = (
    Goal("ALS nDCG@10 >= 0.48", 5, "stratified", "als", "ndcg", 0.48),
    Goal("NCF nDCG@10 >= 0.45 on every seed", 12, "stratified", "ncf", "ndcg", 0.45, statistic="worst seed"),
    Goal("champion nDCG@10 >= 0.50", 5, "stratified", "champion", "ndcg", 0.50),
    Goal("champion P@10 >= 0.43", 5, "stratified", "champion", "precision", 0.43),
    Goal("champion by validation is the best on test", 12, "stratified", "champion", "best_on_test"),
    Goal("ALS fit <= 6 s", 5, "stratified", "als", "fit_s", 6.0, higher_is_better=False),
    Goal("NCF fit <= 30 s", 5, "stratified", "ncf", "fit_s", 30.0, higher_is_better=False),
    Goal("champion nDCG@10 >= 0.24", 12, "time", "champion", "ndcg", 0.24),
    Goal("champion nDCG@10 >= 1.15 x ALS", 12, "time", "champion", "ndcg", 1.15, relative_to="als"),
    Goal("champion by validation is the best on test", 12, "time", "champion", "best_on_test"),
    Goal("champion ECE <= 0.02 (15 bins)", 19, "stratified", "champion", "ece", 0.02, higher_is_better=False),
    Goal("champion ECE <= 0.02 (15 bins)", 19, "time", "champion", "ece", 0.02, higher_is_better=False),
)


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarize(
    runs: Sequence[Mapping[str, Any]], families: Sequence[str], metrics: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per family: mean, sample std, min and max over seeds of every test metric, fit seconds, validation nDCG."""
    summary: dict[str, dict[str, Any]] = {}
    for family in families:
        per_seed = [run["models"][family] for run in runs]
        summary[family] = {
            **{name: _mean_std([m["test"][name] for m in per_seed]) for name in metrics},
            "fit_s": _mean_std([m["fit_s"] for m in per_seed]),
            "validation_ndcg": _mean_std([m["validation"][PRIMARY_METRIC] for m in per_seed]),
        }
    return summary


def choose_champion(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The family with the best mean VALIDATION nDCG@k over seeds (test numbers play no part)."""
    return max(summary, key=lambda family: summary[family]["validation_ndcg"]["mean"])


def check_goals(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each goal with what was measured; a goal whose protocol or family was not run is ``met=None``."""
    rows = []
    for goal in GOALS:
        result = results.get(goal.protocol)
        row: dict[str, Any] = {**asdict(goal), "family": None, "measured": None, "met": None}
        if result is None:
            rows.append(row)
            continue
        summary, champion = result["summary"], result["champion"]
        family = champion["family"] if goal.subject == "champion" else goal.subject
        row["family"] = family
        if goal.metric == "best_on_test":
            row["measured"] = f"best on test: {champion['best_on_test']}"
            row["met"] = champion["best_on_test"] == family
        elif goal.metric in summary.get(family, {}) and (goal.relative_to is None or goal.relative_to in summary):
            stat = "mean" if goal.statistic == "mean" else "min" if goal.higher_is_better else "max"
            measured = float(summary[family][goal.metric][stat])
            if goal.relative_to is not None:
                measured /= float(summary[goal.relative_to][goal.metric]["mean"])
            row["measured"] = measured
            row["met"] = measured >= goal.threshold if goal.higher_is_better else measured <= goal.threshold
        rows.append(row)
    return rows


def machine_info(spark: SparkSession) -> dict[str, Any]:
    def version(*distributions: str) -> str:
        for name in distributions:  # TensorFlow ships under several distribution names
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                continue
        return "not installed"

    from recflow.training.flow import code_version

    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
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


DEFINITIONS: Final = {
    "relevance": "every distinct held-out (user, item) pair, any star rating, whose user and item occur in "
    "the train part and which the user does not already have there ("
    "recflow.evaluation.python_holdout.judgeable_pairs, the "
    "pipeline's hold-out rule; runs[].held_out_pairs vs truth_pairs_test shows how many were dropped)",
    "ranking": "top k over the full training catalog with each user's training items removed; averaged "
    "over every judged user (a user without recommendations counts 0)",
    "precision": "hits in top k / k",
    "recall": "hits in top k / #relevant",
    "ndcg": "binary gain, 1/log2(rank+1) discount, ideal DCG from min(#relevant, k) hits",
    "map": "AP@k = sum of precision@rank over hits in top k / min(#relevant, k) (Spark MLlib)",
    "map_all_relevant": "AP@k = sum of precision@rank over hits in top k / #relevant (Recommenders map_at_k)",
    "hit_rate": "share of judged users with >= 1 hit in top k",
    "coverage": "distinct items in any top k / number of training items",
    "fit_s": "wall seconds of the final refit on the train part (Spark actions forced: factors, matrices or "
    "a trained Keras model are returned), after a warm-up fit per family reported as warmup_fit_s",
    "std": "sample standard deviation over seeds (ddof=1); min and max are the worst and best seed",
    "seeds": "stratified: the seed draws the split and the models' initialisation; time: the split is fixed "
    "by the timestamps, so the seed changes only ALS/NCF/hybrid initialisation (popularity and sequence "
    "are deterministic and show a std of 0)",
}

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
_COLUMNS: Final = ("ndcg", "precision", "recall", "map", "map_all_relevant", "hit_rate", "coverage", "fit_s")


def _label(metric: str, k: int) -> str:
    return _LABELS[metric].replace("@k", f"@{k}")


def _format_goal(goal: Mapping[str, Any]) -> tuple[str, str]:
    measured = goal["measured"]
    if measured is None:
        text = "not run"
    elif isinstance(measured, str):
        text = measured
    elif goal["relative_to"]:
        text = f"{measured:.3f} x {goal['relative_to']}"
    else:
        digits = 1 if goal["metric"] == "fit_s" else 5  # 5: 0.42995 must not print as 0.4300 next to ">= 0.43"
        text = f"{measured:.{digits}f}" + (" (worst seed)" if goal["statistic"] == "worst seed" else "")
    return text, {True: "met", False: "**not met**", None: "not run"}[goal["met"]]


def _protocol_section(name: str, result: Mapping[str, Any], k: int) -> list[str]:
    summary, champion = result["summary"], result["champion"]
    lines = [
        f"## Protocol `{name}`: {result['title']}",
        "",
        f"Test: {result['test_split']}. Validation: {result['validation_split']}. Test touched once per seed.",
        "",
        "| model | " + " | ".join(_label(c, k) for c in _COLUMNS) + " | validation nDCG |",
        "|---|" + "---:|" * (len(_COLUMNS) + 1),
    ]
    for family, values in summary.items():
        digits = {"fit_s": 1}
        cells = [
            f"{values[c]['mean']:.{digits.get(c, 4)}f} ± {values[c]['std']:.{digits.get(c, 4)}f}" for c in _COLUMNS
        ]
        cells.append(f"{values['validation_ndcg']['mean']:.4f}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Worst / best seed nDCG@{k}: "
        + ", ".join(f"{f} {v['ndcg']['min']:.4f} / {v['ndcg']['max']:.4f}" for f, v in summary.items()),
        "",
        f"**Champion** (best mean validation nDCG@{k}, not test): **{champion['family']}**; best mean test "
        f"nDCG@{k}: {champion['best_on_test']}; per-seed validation winners: "
        + ", ".join(f"{seed}: {family}" for seed, family in champion["per_seed"].items()),
        "",
    ]
    if all("ece" in values for values in summary.values()):
        lines += [
            "Calibration on test (map fitted on the even-hash half of the test users, measured on the other half; "
            "15 bins; mean over seeds, before -> after the map):",
            "",
            "| model | ECE | max calibration error (MCE) | Brier |",
            "|---|---:|---:|---:|",
            *(
                f"| {family} | "
                + " | ".join(f"{v[f + '_before']['mean']:.4f} -> {v[f]['mean']:.4f}" for f in ("ece", "mce", "brier"))
                + " |"
                for family, v in summary.items()
            ),
            "",
        ]
    warmup: dict[str, float] = next((run["warmup_fit_s"] for run in result["runs"] if "warmup_fit_s" in run), {})
    if warmup:
        lines += ["Warm-up fits (not in fit s): " + ", ".join(f"{f} {s:.1f} s" for f, s in warmup.items()), ""]
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    k, machine, config = report["config"]["k"], report["machine"], report["config"]
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
        *([provenance_line(report["run"]), ""] if "run" in report else []),
        f"Seeds {config['seeds']}, k={k}, search budgets {config['budgets']}; each family is fitted by its own "
        "trainer entry point and scored by recflow.evaluation.metrics. Results are test metrics, mean ± sample std "
        "over seeds.",
        "",
        "## Goals",
        "",
        "| goal | issue | protocol | model | measured | met |",
        "|---|---:|---|---|---:|---|",
    ]
    for goal in report["goals"]:
        measured, met = _format_goal(goal)
        lines.append(
            f"| {goal['name']} | #{goal['issue']} | {goal['protocol']} | {goal['family']} | {measured} | {met} |"
        )
    lines.append("")
    for name, result in report["protocols"].items():
        lines += _protocol_section(name, result, k)
    lines += [
        f"## Published (Recommenders, stratified protocol, k=10, {PUBLISHED_HARDWARE})",
        "",
        metrics_table({name: {_label(m, 10): v for m, v in values.items()} for name, values in PUBLISHED.items()}),
        "",
        "## Chosen parameters per protocol and seed",
        "",
        "| protocol | seed | model | validation nDCG | test nDCG | params |",
        "|---|---|---|---:|---:|---|",
    ]
    for name, result in report["protocols"].items():
        for run in result["runs"]:
            for family, chosen in run["models"].items():
                params = ", ".join(f"{key}={value}" for key, value in chosen["params"].items())
                lines.append(
                    f"| {name} | {run['seed']} | {family} | {chosen['validation']['ndcg']:.4f} | "
                    f"{chosen['test']['ndcg']:.4f} | {params} |"
                )
    lines += ["", "## Definitions", ""]
    lines += [f"- **{name}**: {text}" for name, text in report["definitions"].items()]
    return "\n".join(lines) + "\n"


def render_chart(report: Mapping[str, Any], path: Path) -> None:
    """One panel per protocol: nDCG, P and R at k per family (mean, std error bars); published on stratified."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("ndcg", "precision", "recall")
    k = report["config"]["k"]
    names = list(report["protocols"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        summary = report["protocols"][name]["summary"]
        bars = [
            (family, [v[m]["mean"] for m in metrics], [v[m]["std"] for m in metrics]) for family, v in summary.items()
        ]
        if name == "stratified":
            bars += [(label, [v[m] for m in metrics], [0.0] * len(metrics)) for label, v in PUBLISHED.items()]
        width = 0.8 / len(bars)
        for i, (label, means, stds) in enumerate(bars):
            xs = [x + (i - (len(bars) - 1) / 2) * width for x in range(len(metrics))]
            ours = label in summary
            ax.bar(xs, means, width, yerr=stds if ours else None, capsize=2, label=label, hatch="" if ours else "//")
        ax.set_xticks(range(len(metrics)), [_label(m, k) for m in metrics])
        ax.set_ylabel("test score, mean over seeds")
        ax.set_title(f"{name}: {report['protocols'][name]['title']}", fontsize=9)
        ax.set_ylim(0, 1.35 * max(max(means) for _, means, _ in bars))  # room for the legend
        ax.legend(fontsize=7, ncol=2, loc="upper right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{report['dataset']['name']}, {len(report['config']['seeds'])} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
