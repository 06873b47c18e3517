"""A fair comparison in one run: every candidate, the baseline AND the current champion's artifact are
scored on the same hold-out (the run's own), then the promotion policy decides and the decision is
written as a model blessing into each candidate's version prefix.

Why re-score the champion: its stored metrics come from the hold-out of the window it was trained on.
Comparing them with a candidate's metrics on another window judged an NCF trained on an older
backfilled day "better" (0.267 vs 0.214) against numbers from a different week. Here the champion's
bytes (fetched and verified like any load) rank the same users as the candidates. And a candidate
trained on data that ends before the champion's is never promoted automatically.

The shared hold-out: the hold-out days' pairs that the hold-out rule keeps against the window's training
days (:func:`recflow.evaluation.python_holdout.judgeable_given_training`), so every candidate can know
them. A champion that does not know a user ranks it with its popularity fallback, as it would when serving.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recflow.config.settings import project_root
from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.data.lake import open_store
from recflow.data.offers import ENV_PATH
from recflow.evaluation.calibration import holdout_figures
from recflow.evaluation.categories import category_table
from recflow.evaluation.python_holdout import holdout_metrics, judgeable_given_training, require_truth
from recflow.evaluation.slices import SliceSpec, load_slices, segment_metrics, slice_metrics
from recflow.models.artifact import load_recommender
from recflow.models.segmented import SegmentedRecommender
from recflow.promotion.decision import decide
from recflow.promotion.policy import PromotionPolicy
from recflow.promotion.records import CHAMPION, Judgement, JudgingError
from recflow.promotion.report import render_report, store_report
from recflow.registry import NoChampion, resolve_serving_version
from recflow.registry.blessing import bless

if TYPE_CHECKING:
    from recflow.data.lake import LakeStore
    from recflow.data.window import TrainingWindow
    from recflow.registry import ModelRegistry, ModelVersion
    from recflow.registry.blessing import Blessing

log = logging.getLogger(__name__)


def shared_holdout(lake: LakeStore | Path | str, window: TrainingWindow) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (user, item) pairs every model of the run is judged on (see the module docstring), and the
    window's training rows (user, item, event_date: the slices' buckets are drawn from them).

    ``lake`` is a local path, an ``s3://`` URI or a :class:`LakeStore`: the compare task runs where
    Airflow runs, and an S3 lake is read through the store (committed partitions only), never as a path.
    """
    store = open_store(lake) if isinstance(lake, (str, Path)) else lake
    frames = []
    for day in window.days():
        part = f"interactions/{COL_DATE}={day}"
        if store.exists(part):
            frame = _read_pairs(store, part)
            frame[COL_DATE] = day
            frame["_holdout"] = day >= str(window.holdout_start)
            frames.append(frame)
    if not frames:
        where = store.uri("interactions")
        raise JudgingError(f"no validated interactions under {where} for {window.start}..{window.end}")
    data = pd.concat(frames, ignore_index=True)
    train = data[~data["_holdout"]][[COL_USER, COL_ITEM, COL_DATE]]
    truth = judgeable_given_training(data[data["_holdout"]], train)
    if truth.empty:
        raise JudgingError(f"the hold-out {window.holdout_start}..{window.end} has no pairs to judge on")
    return truth, train


def _read_pairs(store: LakeStore, part: str) -> pd.DataFrame:
    """The (user, item) columns of one committed day, read column by column through the store."""
    return pd.DataFrame({col: _column(store, part, col) for col in (COL_USER, COL_ITEM)})


def _column(store: LakeStore, part: str, column: str) -> np.ndarray:
    """One column of a committed lake folder, whole (an object array when the folder is empty)."""
    return np.concatenate([np.empty(0, dtype=object), *store.read_column(part, column)])


def score_and_decide(
    registry: ModelRegistry,
    candidates: Mapping[str, ModelVersion],
    *,
    lake_root: LakeStore | Path | str,
    window: TrainingWindow,
    policy: PromotionPolicy,
    cutoffs: Sequence[int],
    work_dir: Path,
) -> Judgement:
    """Score the candidates and the current champion on the shared hold-out and apply the policy."""
    store = open_store(lake_root) if isinstance(lake_root, (str, Path)) else lake_root
    truth, train = shared_holdout(store, window)
    champion = _current_champion(registry)
    models = dict(candidates) if champion is None else {**candidates, CHAMPION: champion}
    specs = slices_of_the_project()
    slicing = _Slicing(train, specs, _catalog_thresholds(), feature_tables(store, specs))
    scored = {name: _score(registry, name, mv, truth, cutoffs, work_dir, slicing) for name, mv in models.items()}
    metrics = {name: m for name, (m, _, _) in scored.items()}
    calibration = {name: figures for name, (_, figures, _) in scored.items() if figures is not None}
    categories = {name: table for name, (_, _, table) in scored.items()}
    stale = {} if champion is None else _stale(candidates, champion)
    decision = decide(
        {name: metrics[name] for name in candidates},
        metrics.get(CHAMPION),
        policy,
        families={name: mv.family for name, mv in candidates.items()},
        stale=stale,
    )
    holdout = {
        "start": str(window.holdout_start),
        "end": str(window.end),
        "pairs": len(truth),
        "users": int(truth[COL_USER].nunique()),
    }
    return Judgement(
        decision, metrics, dict(candidates), champion, holdout, stale, policy.to_dict(), calibration, categories
    )


def _current_champion(registry: ModelRegistry) -> ModelVersion | None:
    try:
        return resolve_serving_version(registry).model
    except NoChampion:
        return None


def slices_of_the_project() -> tuple[SliceSpec, ...]:
    """``models/slices.yaml``'s slices (none when the file is absent)."""
    path = project_root() / "models" / "slices.yaml"
    return load_slices(path) if path.is_file() else ()


def feature_tables(store: LakeStore, specs: Sequence[SliceSpec]) -> dict[str, pd.DataFrame]:
    """The lake tables (``<lake>/<table>/``, e.g. ``items/``) the ``feature`` slices name, with the id and
    feature columns they need; a table the lake lacks is left out, and its slices are skipped."""
    wanted: dict[str, set[str]] = {}
    for spec in specs:
        if spec.kind == "feature" and spec.table is not None and spec.feature is not None:
            wanted.setdefault(spec.table, set()).update((spec.column, spec.feature))
    out = {}
    for table, columns in sorted(wanted.items()):
        if not store.exists(table):
            log.info("no %s in the lake: its feature slices are skipped", store.uri(table))
            continue
        out[table] = pd.DataFrame({col: _column(store, table, col) for col in sorted(columns)})
    return out


@dataclass(frozen=True)
class _Slicing:
    """What the per-slice metrics need besides a model's lists: the training rows, the slices and their
    feature tables."""

    train: pd.DataFrame
    specs: tuple[SliceSpec, ...]
    thresholds: dict[str, int] | None  # the offer catalog's, when RECFLOW_OFFERS names one
    features: dict[str, pd.DataFrame]


def _catalog_thresholds() -> dict[str, int] | None:
    """Item -> offer threshold of the catalog ``RECFLOW_OFFERS`` names (validated), or None."""
    from recflow.validation.offers import load_catalog  # deferred: great_expectations (the catalog's suite)

    path = os.environ.get(ENV_PATH)
    return None if not path else {item: o.threshold for item, o in load_catalog(path).by_item.items()}


def _score(
    registry: ModelRegistry,
    name: str,
    mv: ModelVersion,
    truth: pd.DataFrame,
    cutoffs: Sequence[int],
    work_dir: Path,
    slicing: _Slicing,
) -> tuple[dict[str, float], dict[str, Any] | None, list[dict[str, Any]]]:
    """``mv``'s metrics on the shared hold-out at every cut-off, and per slice at the first cut-off, its
    calibration figures and its per-category table, from its verified bytes (the path serving takes)."""
    ks = sorted(set(cutoffs))
    folder = registry.fetch(mv, work_dir)
    exclude_seen = mv.lineage.get("scoring", {}).get("exclude_seen", "lake") != "none"  # the spec's policy
    model = load_recommender(folder)
    require_truth(truth)
    recs = model.recommend(truth[COL_USER].unique(), k=ks[-1], exclude_seen=exclude_seen)
    metrics = holdout_metrics(model, truth, recs, ks)
    catalog = model.index.items
    metrics.update(
        slice_metrics(truth, recs, slicing.train, slicing.specs, k=ks[0], catalog=catalog, features=slicing.features)
    )
    if isinstance(model, SegmentedRecommender):  # its segments are one more slice
        users = truth[COL_USER].unique()
        segments = pd.Series(model.segments_of(users), index=users).map(lambda s: "none" if s < 0 else str(s))
        metrics.update(segment_metrics(truth, recs, segments, k=ks[0], catalog=catalog))
    figures = holdout_figures(recs, truth, k=ks[0])
    table = category_table(recs, truth, k=ks[0], thresholds=slicing.thresholds).reset_index()
    categories = [{key: _plain(value) for key, value in row.items()} for row in table.to_dict("records")]
    log.info("%s (%s) on the shared hold-out: %s", name, mv.version, metrics)
    return metrics, figures, categories


def _plain(value: Any) -> Any:
    """A table cell as JSON knows it (NaN -> None)."""
    if isinstance(value, float) and value != value:
        return None
    return value.item() if isinstance(value, np.generic) else value


def _stale(candidates: Mapping[str, ModelVersion], champion: ModelVersion) -> dict[str, str]:
    """Why each candidate trained on an older window than the champion's may not be promoted automatically."""
    return {
        name: (
            f"trained on data up to {mv.created_at:%Y-%m-%d}, but the champion {champion.version} was "
            f"trained on data up to {champion.created_at:%Y-%m-%d}: an older window is never promoted "
            "automatically (force_promote with a reason overrides)"
        )
        for name, mv in candidates.items()
        if mv.created_at < champion.created_at
    }


def write_blessings(
    registry: ModelRegistry,
    judgement: Judgement,
    *,
    run_id: str,
    interval_end: datetime,
    forced: tuple[str, str] | None = None,
) -> dict[str, Blessing]:
    """One model blessing per candidate (the baseline is a yardstick and gets none).

    Only the winner's passes. ``forced=(name, "actor: reason")`` makes that candidate's blessing pass
    with the override as its first reason (the ``force_promote`` Param); its failed rules stay listed.
    """
    champion = judgement.champion
    out = {}
    for name, mv in judgement.candidates.items():
        verdict = judgement.decision.verdict(name)
        if verdict.reasons and verdict.reasons[0].startswith("baseline:"):
            continue
        passed = name == judgement.decision.winner
        reasons = list(verdict.reasons)
        if forced is not None and forced[0] == name:
            passed, reasons = True, [f"FORCED by {forced[1]}", *reasons]
        out[name] = bless(
            registry,
            mv,
            kind="model",
            passed=passed,
            reasons=reasons,
            details={
                "run_id": run_id,
                "interval_end": interval_end.isoformat(),
                "forced": forced is not None and forced[0] == name,
                "winner": judgement.decision.winner,
                "holdout": dict(judgement.holdout),
                "metrics": {n: dict(m) for n, m in judgement.metrics.items()},
                "versions": {n: v.version for n, v in judgement.candidates.items()},
                "compared_with": None if champion is None else {"version": champion.version, "digest": champion.digest},
                "policy": dict(judgement.policy),
            },
        )
    return out


def compare_and_bless(
    registry: ModelRegistry,
    candidates: Mapping[str, ModelVersion],
    *,
    lake_root: LakeStore | Path | str,
    window: TrainingWindow,
    policy: PromotionPolicy,
    cutoffs: Sequence[int],
    run_id: str,
    interval_end: datetime,
    actor: str,
    force_reason: str | None = None,
) -> dict[str, Any]:
    """The training run's compare step: judge, write blessings and the report; a small JSON summary.

    ``force_reason`` (the ``force_promote`` Param) blesses the decision's winner, or when there is none
    the best non-baseline candidate by the primary metric, whatever the policy said; the reason and the
    failed rules are kept in its blessing, the report and the promotion's audit record.
    """
    with tempfile.TemporaryDirectory(prefix="recflow-judge-") as tmp:
        judgement = score_and_decide(
            registry, candidates, lake_root=lake_root, window=window, policy=policy, cutoffs=cutoffs, work_dir=Path(tmp)
        )
    target = judgement.decision.winner
    forced = None
    if force_reason:
        target = target or _best_non_baseline(judgement, policy.baseline)
        if target is not None:
            forced = (target, f"{actor}: {force_reason}")
    write_blessings(registry, judgement, run_id=run_id, interval_end=interval_end, forced=forced)
    html = render_report(judgement, run_id=run_id, interval_end=interval_end)
    reports = {name: store_report(registry, mv.version, html) for name, mv in candidates.items()}
    log.info("%s", judgement.decision.summary())
    return _summary(judgement, target, forced, reports)


def _best_non_baseline(judgement: Judgement, baseline: str | None) -> str | None:
    """The candidate a forced promotion takes when the policy chose none: the best by the primary metric."""
    pm = judgement.decision.primary_metric
    ranked = sorted(
        (n for n in judgement.candidates if n != baseline),
        key=lambda n: -judgement.metrics[n].get(pm, float("-inf")),
    )
    return ranked[0] if ranked else None


def _summary(
    judgement: Judgement, target: str | None, forced: tuple[str, str] | None, reports: dict[str, str]
) -> dict[str, Any]:
    """The compare task's return value (XCom): what the gate, the report link and people read."""
    candidates, champion, decision = judgement.candidates, judgement.champion, judgement.decision
    why = "" if target is None else decision.verdict(target).reasons[0]
    return {
        "candidates": {
            name: {"version": mv.version, "digest": mv.digest, "metrics": dict(judgement.metrics[name])}
            for name, mv in candidates.items()
        },
        "champion_metrics": dict(judgement.metrics.get(CHAMPION, {})),
        "previous_champion": None if champion is None else champion.version,
        "winner": None if target is None else candidates[target].version,
        "forced": forced is not None,
        "why": f"FORCED by {forced[1]}" if forced else why,
        "decision": decision.to_dict(),
        "reports": reports,
    }
