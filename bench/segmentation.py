"""Segmented ALS against plain ALS on the same hold-out: does a model per KMeans segment of users help?

Launch (``make bench-segmentation`` runs this; ~10-20 min on 2 cores):
    .venv/bin/python bench/segmentation.py --seeds 42 43 --out bench/results

Writes ``segmentation.json`` and ``segmentation.md`` only (never ``quality.*``, which ``bench/quality.py``
owns). Two datasets:

* **MovieLens-100K** (``RECFLOW_MOVIELENS_DIR``, read in place): ratings as implicit events, item tags =
  the genres of ``u.item``;
* **populations**: the demo's synthetic world with taste populations
  (:class:`recflow.data.launches.LaunchWorld`: three populations, each buying mostly from its own category;
  no launches), 42 days; item tags = the categories.

Protocol, the same for every model: each user's last 20% of events by timestamp are the hold-out
(``user_chrono_split(ratio=0.8)``, the quality benchmark's ``time`` protocol); the judged pairs are
``judgeable_pairs`` of the hold-out against the plain model (known users and items, not seen in training),
which the segmented models share (their catalog is the same training part). Every model ranks the judged
users' unseen items (``recommend(exclude_seen=True)``) and :func:`recflow.evaluation.metrics.evaluate`
gives nDCG@10, precision@10 and recall@10.

Models, each fitted by the pipeline's own fit on the training part (spec params of ``models/als.yaml``,
which ``models/als_segmented.yaml`` repeats, with ``seed`` = the run's seed):

* ``als``: ``FITTERS["als"]``;
* ``als_segmented``: ``models/als_segmented.yaml``'s segmentation (activity, spend, recency; k in 2..8
  chosen by the training users' silhouette), ``recflow.training.segments.segmented_fitter``;
* ``als_segmented_taste``: the same with ``features: [category_mix]`` (each user's share of events per
  item tag), the segmentation that can see taste.

Per segment, both the segmented model and plain ALS are judged on that segment's users (the same pairs),
so a segment's gain is measured where it is claimed. No goal is set by the issue: the report states the
gain or loss as measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, run by path
from machine import finish_run, machine_info, provenance_line, start_run
from quality import _Data

from recflow.constants import COL_AMOUNT, COL_ITEM, COL_TS, COL_USER, DEFAULT_K
from recflow.data.item_history import COL_TAGS, ITEMS_FOLDER
from recflow.evaluation.metrics import evaluate
from recflow.evaluation.python_holdout import judgeable_pairs
from recflow.evaluation.slices import segment_metrics
from recflow.evaluation.splitters import user_chrono_split
from recflow.models.base import Recommender
from recflow.models.segmented import SegmentedRecommender

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

METRICS: Final = ("ndcg", "precision", "recall")
VARIANTS: Final = ("als", "als_segmented", "als_segmented_taste")
TRAIN_RATIO: Final = 0.8
POPULATION_DAYS: Final = 42


def movielens(path: Path | None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    from recflow.data.movielens import load_genres, load_movielens

    return load_movielens(path), load_genres(path)


def populations() -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The demo's taste populations over :data:`POPULATION_DAYS` days, no launches (a spend of 1 per event:
    the world has no prices, and a constant keeps ``spend`` from being NaN)."""
    from recflow.data.launches import LaunchWorld

    world = LaunchWorld(launches=0)
    frame = pd.concat([world.organic(d) for d in range(-POPULATION_DAYS, 0)], ignore_index=True)
    frame[COL_AMOUNT] = 1.0
    tags = {item: t for item, t in world.tags().items() if item in set(frame[COL_ITEM])}
    return frame, tags


def _judge(model: Recommender, truth: pd.DataFrame, k: int) -> tuple[pd.DataFrame, dict[str, float]]:
    recs = model.recommend(truth[COL_USER].unique().tolist(), k=k, exclude_seen=True)
    raw = evaluate(truth, recs, metrics=list(METRICS), k=k, catalog=model.index.items)
    return recs, {m: raw[f"{m}@{k}"] for m in METRICS}


def run_seed(
    spark: SparkSession, frame: pd.DataFrame, tags: dict[str, list[str]], seed: int, k: int, work: Path
) -> dict[str, Any]:
    """Fit the three variants on one training part and judge them on the same hold-out pairs."""
    from recflow.training.fitters import FITTERS
    from recflow.training.segments import segmented_fitter
    from recflow.training.specs import load_spec

    train, test = user_chrono_split(frame, ratio=TRAIN_RATIO)
    if COL_AMOUNT not in train:
        train = train.assign(**{COL_AMOUNT: np.nan})
    lake = work / f"lake-{seed}"
    (lake / ITEMS_FOLDER).mkdir(parents=True)
    items = pd.DataFrame({COL_ITEM: list(tags), COL_TAGS: list(tags.values())})
    items.to_parquet(lake / ITEMS_FOLDER / "part-0.parquet", index=False)
    data = _Data.of(spark, train, work / f"train-{seed}.parquet")
    spec = load_spec("als_segmented")
    assert spec.segmentation is not None
    params = {**spec.params, "seed": seed}
    segmentations = {
        "als_segmented": replace(spec.segmentation, seed=seed),
        "als_segmented_taste": replace(spec.segmentation, seed=seed, features=("category_mix",)),
    }
    try:
        out: dict[str, Any] = {"train_rows": len(train), "test_rows": len(test), "models": {}}
        started = time.perf_counter()
        plain = FITTERS["als"](spark, data.spark, params, work / f"als-{seed}").with_user_side()
        truth = judgeable_pairs(test, plain)
        plain_recs, plain_metrics = _judge(plain, truth, k)
        out["judged"] = {"pairs": len(truth), "users": int(truth[COL_USER].nunique())}
        out["models"]["als"] = {"metrics": plain_metrics, "fit_s": time.perf_counter() - started}
        for name, segmentation in segmentations.items():
            started = time.perf_counter()
            model = segmented_fitter(segmentation, lake)(spark, data.spark, params, work / f"{name}-{seed}")
            fit_s = time.perf_counter() - started
            assert isinstance(model, SegmentedRecommender)
            assert list(model.index.items) == list(plain.index.items), "the same training part, the same catalog"
            recs, metrics = _judge(model, truth, k)
            users = truth[COL_USER].unique()
            segments = pd.Series(model.segments_of(users), index=users).map(lambda s: "none" if s < 0 else str(s))
            mine = segment_metrics(truth, recs, segments, k=k)
            theirs = segment_metrics(truth, plain_recs, segments, k=k)
            per_segment = {
                key.split("=", 1)[1].rstrip("]"): {
                    "users": int(mine[key]),
                    **{f"{m}_segmented": mine[key.replace("size", f"{m}@{k}")] for m in METRICS},
                    **{f"{m}_als": theirs[key.replace("size", f"{m}@{k}")] for m in METRICS},
                }
                for key in sorted(mine)
                if key.startswith("size[")
            }
            out["models"][name] = {
                "metrics": metrics,
                "fit_s": fit_s,
                "features": list(segmentation.features),
                "selection": model.router.selection,
                "segments": per_segment,
            }
        return out
    finally:
        data.release()


def summarize(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: each metric's mean and standard deviation over the seeds, and the relative change of
    the mean against plain ALS (``mean / als_mean - 1``)."""
    out: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        row: dict[str, Any] = {}
        for m in METRICS:
            values = [run["models"][variant]["metrics"][m] for run in runs.values()]
            base = [run["models"]["als"]["metrics"][m] for run in runs.values()]
            row[m] = float(np.mean(values))
            row[f"{m}_std"] = float(np.std(values))
            row[f"{m}_change"] = float(np.mean(values) / np.mean(base) - 1.0) if np.mean(base) > 0 else None
        row["k_chosen"] = [run["models"][variant].get("selection", {}).get("k") for run in runs.values()] if (
            variant != "als") else None  # fmt: skip
        out[variant] = row
    return out


def render_markdown(report: dict[str, Any]) -> str:
    k = report["config"]["k"]
    lines = [
        "# Segmented ALS vs plain ALS (`bench/segmentation.py`)",
        "",
        provenance_line(report["run"]),
        "",
        f"Seeds {report['config']['seeds']}; hold-out: each user's last 20% of events by time; metrics at "
        f"k={k} on the same judged pairs for every model (definitions in the script's docstring). The issue "
        "sets no goal: the change is reported as measured (`change` = mean / plain ALS mean - 1).",
    ]
    for name, dataset in report["datasets"].items():
        lines += ["", f"## {name}", "", dataset["description"], ""]
        lines += ["| model | " + " | ".join(f"{m}@{k}" for m in METRICS) + " | change nDCG | k chosen |"]
        lines += ["|---|" + "---|" * (len(METRICS) + 2)]
        for variant, row in dataset["summary"].items():
            cells = " | ".join(f"{row[m]:.4f} ± {row[f'{m}_std']:.4f}" for m in METRICS)
            change = "-" if variant == "als" or row["ndcg_change"] is None else f"{row['ndcg_change']:+.1%}"
            lines.append(f"| {variant} | {cells} | {change} | {row['k_chosen'] or '-'} |")
        first_seed = next(iter(dataset["runs"]))
        run = dataset["runs"][first_seed]
        for variant in VARIANTS[1:]:
            lines += ["", f"Per segment, {variant}, seed {first_seed} (k = {run['models'][variant]['selection']['k']}, "
                      f"features {run['models'][variant]['features']}): nDCG@{k} of the segment's model vs plain ALS "
                      "on the same users", ""]  # fmt: skip
            lines += ["| segment | users | nDCG segmented | nDCG ALS | precision segmented | precision ALS |"]
            lines += ["|---|---|---|---|---|---|"]
            for label, seg in run["models"][variant]["segments"].items():
                lines.append(
                    f"| {label} | {seg['users']} | {seg['ndcg_segmented']:.4f} | {seg['ndcg_als']:.4f} | "
                    f"{seg['precision_segmented']:.4f} | {seg['precision_als']:.4f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from recflow.spark.session import get_spark

    parser = argparse.ArgumentParser(prog="bench/segmentation.py", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--k", type=int, default=DEFAULT_K)
    parser.add_argument("--datasets", nargs="+", default=["populations", "movielens"])
    parser.add_argument("--movielens-dir", type=Path, default=None, help="default: $RECFLOW_MOVIELENS_DIR")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    run = start_run(argv)
    loaders = {
        "movielens": ("MovieLens-100K: ratings as implicit events, item tags = genres",
                      lambda: movielens(args.movielens_dir)),
        "populations": (f"LaunchWorld: 600 users in 3 taste populations, {POPULATION_DAYS} days, tags = categories",
                        populations),
    }  # fmt: skip
    spark = get_spark("recflow-bench-segmentation", master=args.master)
    work = Path(tempfile.mkdtemp(prefix="recflow-bench-seg-"))
    datasets: dict[str, Any] = {}
    try:
        for name in args.datasets:
            description, load = loaders[name]
            frame, tags = load()
            runs = {str(seed): run_seed(spark, frame, tags, seed, args.k, work / name) for seed in args.seeds}
            datasets[name] = {
                "description": description,
                "rows": len(frame),
                "users": int(frame[COL_USER].nunique()),
                "items": int(frame[COL_ITEM].nunique()),
                "days": int((frame[COL_TS].max() - frame[COL_TS].min()).days) + 1,
                "runs": runs,
                "summary": summarize(runs),
            }
            report = write_report(args, run, datasets)  # after each dataset: a slow second one loses nothing
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(render_markdown(report))
    return report


def write_report(args: argparse.Namespace, run: dict[str, Any], datasets: dict[str, Any]) -> dict[str, Any]:
    """Write ``segmentation.json`` and ``.md`` for the datasets measured so far (the run's end time and load
    are those of the last write)."""
    report = {
        "schema_version": 1,
        "run": finish_run(run),
        "machine": machine_info(["pyspark", "numpy", "pandas"]),
        "config": {
            "seeds": args.seeds,
            "k": args.k,
            "train_ratio": TRAIN_RATIO,
            "variants": list(VARIANTS),
            "datasets_requested": args.datasets,
        },
        "definitions": (__doc__ or "").split("\n\n", 1)[1],
        "goals": [],  # issue 20 asks for the gain or loss, reported honestly; it sets no threshold
        "datasets": datasets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segmentation.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "segmentation.md").write_text(render_markdown(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
