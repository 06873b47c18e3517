"""The entry point ``spark_jobs/train.py`` calls: parse the arguments, train one family, stop the session.

The training DAG's ``plan_training`` task builds exactly the argument list :func:`arg_parser` reads, from
the family's spec (``models/<family>.yaml``); ``--family`` chooses the spec and the fit
(:data:`recflow.training.fitters.FITTERS`), and :func:`recflow.training.flow.run_training` does the rest.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from recflow.constants import DEFAULT_K
from recflow.data.window import TrainingDataError, TrainingWindow
from recflow.scoring.seen import SeenPolicy
from recflow.spark.session import get_spark
from recflow.training.fitters import FITTERS, Fitter
from recflow.training.flow import TrainingResult, run_training
from recflow.training.segments import segmented_fitter
from recflow.training.specs import ModelSpec, SpecError, load_spec


def arg_parser() -> argparse.ArgumentParser:
    """The arguments of the trainer (the DAG builds exactly this list)."""
    parser = argparse.ArgumentParser(description="Train and evaluate one model family.")
    parser.add_argument(
        "--family", required=True, help="the spec to train (models/<family>.yaml): a family, or a segmented spec"
    )
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


def main(argv: list[str] | None = None) -> TrainingResult:
    """Parse, build the session, train, stop the session; print the result as one JSON line.

    Bad inputs (:class:`TrainingDataError`, :class:`recflow.training.specs.SpecError`) end the process with one
    clear last line, ``train_<family> failed: <Error>: <message>``, and exit code 1. Why: spark-submit
    streams the driver's output into the Airflow task log, where a long traceback would bury the one
    sentence that says what to fix. Any other error keeps its traceback, because then the trace is the
    useful part.
    """
    args = arg_parser().parse_args(argv)
    try:
        return _main(args)
    except (TrainingDataError, SpecError) as exc:
        raise SystemExit(f"train_{args.family} failed: {type(exc).__name__}: {exc}") from exc


def _main(args: argparse.Namespace) -> TrainingResult:
    """Check the arguments and the spec before starting Spark, train in one session, print the summary."""
    family = args.family
    if args.k < 1 or args.budget < 1 or any(c < 1 for c in args.also_k):
        raise SystemExit(f"--k, --also-k and --budget must be >= 1, got {args.k}, {args.also_k}, {args.budget}")
    window = TrainingWindow(args.train_start, args.holdout_start, args.end)
    spec = load_spec(family, args.models_dir)
    fit = _fitter(spec, args.lake)
    candidates = _candidates(spec, args)
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
            exploration=spec.exploration,
        )
    finally:
        spark.stop()
    summary = {
        "family": family,
        "version": result.version,
        "metrics": result.metrics,
        "registry_uri": result.registry_uri,
    }
    print(json.dumps(summary, sort_keys=True))
    return result


def _fitter(spec: ModelSpec, lake: str) -> Fitter:
    """The spec's fit: per segment for a segmented spec, else its family's (:data:`FITTERS`)."""
    if spec.segmentation is not None:
        if spec.segmentation.family not in FITTERS:
            raise SpecError(f"{spec.name}: segmentation family must be one of {sorted(FITTERS)}")
        return segmented_fitter(spec.segmentation, lake)
    if spec.name not in FITTERS:
        raise SpecError(f"no fit for {spec.name!r}: a spec is a family of {sorted(FITTERS)} or declares segmentation")
    return FITTERS[spec.name]


def _candidates(spec: ModelSpec, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The spec's parameter sets for ``--budget`` and ``--seed``, each with the ``--params-json`` overrides."""
    overrides = json.loads(args.params_json) if args.params_json else {}
    if not isinstance(overrides, dict):
        raise SystemExit(f"--params-json must be a JSON object, got {args.params_json!r}")
    return [{**c, **overrides} for c in spec.candidates(args.budget, args.seed)]
