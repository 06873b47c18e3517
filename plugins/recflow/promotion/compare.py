"""A fair comparison in one run: every candidate, the baseline AND the current champion's artifact are
scored on the same hold-out (the run's own), then the promotion policy decides and the decision is
written as a model blessing into each candidate's version prefix.

Why re-score the champion: its stored metrics come from the hold-out of the window it was trained on.
Comparing them with a candidate's metrics on another window judged an NCF trained on an older
backfilled day "better" (0.267 vs 0.214) against numbers from a different week. Here the champion's
bytes (fetched and verified like any load) rank the same users as the candidates. And a candidate
trained on data that ends before the champion's is never promoted automatically.

The shared hold-out: distinct (user, item) pairs of the hold-out days that the training days did not
already contain, for users and items present in the training days (what every candidate can know).
A champion that does not know a user ranks it with its popularity fallback, as it would when serving.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recflow.constants import COL_DATE, COL_ITEM, COL_USER
from recflow.promotion.decision import decide
from recflow.promotion.policy import PromotionPolicy
from recflow.promotion.records import CHAMPION, Judgement, JudgingError

if TYPE_CHECKING:
    from recflow.data.stores import LakeStore
    from recflow.data.window import TrainingWindow
    from recflow.registry import ModelRegistry, ModelVersion
    from recflow.registry.blessing import Blessing

log = logging.getLogger(__name__)


def shared_holdout(lake: LakeStore | Path | str, window: TrainingWindow) -> pd.DataFrame:
    """The (user, item) pairs every model of the run is judged on (see the module docstring).

    ``lake`` is a local path, an ``s3://`` URI or a :class:`LakeStore`: the compare task runs where
    Airflow runs, and an S3 lake is read through the store (committed partitions only), never as a path.
    """
    from recflow.data.stores import open_store

    store = open_store(lake) if isinstance(lake, (str, Path)) else lake
    frames = []
    for day in window.days():
        part = f"interactions/{COL_DATE}={day}"
        if store.exists(part):
            columns = {
                col: np.concatenate([np.empty(0, dtype=object), *store.read_column(part, col)])
                for col in (COL_USER, COL_ITEM)
            }
            frame = pd.DataFrame(columns)
            frame["_holdout"] = day >= str(window.holdout_start)
            frames.append(frame)
    if not frames:
        where = store.uri("interactions")
        raise JudgingError(f"no validated interactions under {where} for {window.start}..{window.end}")
    data = pd.concat(frames, ignore_index=True)
    train = data[~data["_holdout"]][[COL_USER, COL_ITEM]].drop_duplicates()
    test = data[data["_holdout"]][[COL_USER, COL_ITEM]].drop_duplicates()
    test = test[test[COL_USER].isin(train[COL_USER]) & test[COL_ITEM].isin(train[COL_ITEM])]
    seen = test.merge(train, on=[COL_USER, COL_ITEM], how="left", indicator=True)["_merge"] == "both"
    truth = test[~seen.to_numpy()].reset_index(drop=True)
    if truth.empty:
        raise JudgingError(f"the hold-out {window.holdout_start}..{window.end} has no pairs to judge on")
    return truth


def judge(
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
    from recflow.evaluation.python_holdout import score_holdout
    from recflow.models.artifact import load_recommender
    from recflow.registry import NoChampion, resolve_serving_version

    truth = shared_holdout(lake_root, window)
    try:
        champion: ModelVersion | None = resolve_serving_version(registry).model
    except NoChampion:
        champion = None
    models = dict(candidates)
    if champion is not None:
        models[CHAMPION] = champion
    ks = sorted(set(cutoffs))
    metrics: dict[str, dict[str, float]] = {}
    for name, mv in models.items():
        folder = registry.fetch(mv, work_dir)  # verified bytes, the same path serving takes
        exclude_seen = mv.lineage.get("scoring", {}).get("exclude_seen", "lake") != "none"  # the spec's policy
        metrics[name] = score_holdout(load_recommender(folder), truth, ks[0], ks[1:], exclude_seen=exclude_seen)
        log.info("%s (%s) on the shared hold-out: %s", name, mv.version, metrics[name])
    stale = {}
    if champion is not None:
        for name, mv in candidates.items():
            if mv.created_at < champion.created_at:
                stale[name] = (
                    f"trained on data up to {mv.created_at:%Y-%m-%d}, but the champion {champion.version} was "
                    f"trained on data up to {champion.created_at:%Y-%m-%d}: an older window is never promoted "
                    "automatically (force_promote with a reason overrides)"
                )
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
    return Judgement(decision, metrics, dict(candidates), champion, holdout, stale, policy.to_dict())


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
    from recflow.registry.blessing import bless

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
    import tempfile

    from recflow.promotion.report import render_report, store_report

    with tempfile.TemporaryDirectory(prefix="recflow-judge-") as tmp:
        judgement = judge(
            registry, candidates, lake_root=lake_root, window=window, policy=policy, cutoffs=cutoffs, work_dir=Path(tmp)
        )
    decision = judgement.decision
    target = decision.winner
    forced = None
    if force_reason:
        pm = decision.primary_metric
        ranked = sorted(
            (n for n in candidates if n != policy.baseline),
            key=lambda n: -judgement.metrics[n].get(pm, float("-inf")),
        )
        target = target or (ranked[0] if ranked else None)
        if target is not None:
            forced = (target, f"{actor}: {force_reason}")
    write_blessings(registry, judgement, run_id=run_id, interval_end=interval_end, forced=forced)
    html = render_report(judgement, run_id=run_id, interval_end=interval_end)
    reports = {name: store_report(registry, mv.version, html) for name, mv in candidates.items()}
    log.info("%s", decision.summary())
    champion = judgement.champion
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
