"""``make demo``: the whole workflow once, on real local services, with a short summary at the end.

Steps: services up -> synthetic landing data -> Airflow ``dags test`` of training (validate, train ALS
and NCF and the baseline with spark-submit, compare, promote, publish) -> ``dags test`` of batch
scoring (scores and, with the purchase-card offer catalog, offers) -> the streaming scorer
(``recflow.streaming``) answers a burst of requests -> the HTTP API (``recflow serve``) answers requests
for the same users -> services down. The summary prints three users' offers, the eligible share and the
champion's five weakest categories on the hold-out. Every step logs to
``<state>/logs/demo/<step>.log``; a failure names the step and its log and exits non-zero.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from recflow.batch.layout import offers_partition, read_summary, scores_path
from recflow.config.settings import load_settings, state_dir
from recflow.data.offers import ENV_PATH, default_path
from recflow.data.synthetic import write_days
from recflow.data.window import TrainingWindow
from recflow.evaluation.categories import category_table, weakest_categories
from recflow.evaluation.metrics import metrics_table
from recflow.models.artifact import load_recommender
from recflow.promotion.compare import shared_holdout
from recflow.registry import ModelRegistry
from recflow.registry.version_ids import version_prefix
from recflow.services import shared_services
from recflow.services.local_airflow import airflow_env
from recflow.services.process import stop_group
from recflow.serving_http.launcher import start_server
from recflow.streaming.client import send_burst
from recflow.streaming.launcher import start_scorer

T = TypeVar("T")
_RUN_STATE = re.compile(r"DagRun Finished: dag_id=(\S+),.*?state=(\w+)")


class DemoError(RuntimeError):
    """A demo step failed; the message names the step and its log."""


@dataclass
class DemoConfig:
    """What the demo generates and how it runs; the defaults take a few minutes on 2 cores."""

    end: date = date(2026, 11, 10)
    train_days: int = 6
    holdout_days: int = 2
    n_users: int = 1500
    n_items: int = 150
    events_per_day: int = 6000
    burst: int = 1000
    k: int = 10
    models: tuple[str, ...] = ("als", "ncf")
    keep_services: bool = False
    log_dir: Path = field(default_factory=lambda: state_dir() / "logs" / "demo")


def _step(name: str, log_dir: Path, fn: Callable[[Path], T]) -> T:
    log = log_dir / f"{name}.log"
    print(f"==> {name} (log: {log})", flush=True)
    began = time.monotonic()
    try:
        result = fn(log)
    except DemoError:
        raise
    except Exception as exc:
        raise DemoError(f"step '{name}' failed: {exc}. Log: {log}") from exc
    print(f"    done in {time.monotonic() - began:.1f}s", flush=True)
    return result


def run_airflow(args: list[str], log: Path, env: dict[str, str]) -> None:
    """Run the Airflow CLI; fail unless it exits 0 and every DAG run it reports finished successfully."""
    with log.open("w") as out:
        # Own process group, so an interrupted demo takes the Airflow run and its Spark jobs down with it.
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
        try:
            proc.wait()
        except BaseException:
            stop_group(proc.pid)
            raise
    text = log.read_text(errors="replace")
    states = _RUN_STATE.findall(text)
    if proc.returncode != 0 or any(state != "success" for _, state in states):
        tail = "\n".join(text.splitlines()[-25:])
        raise DemoError(
            f"`airflow {' '.join(args)}` failed (exit {proc.returncode}, runs {states}). Log: {log}\n{tail}"
        )


def generate(config: DemoConfig) -> list[Path]:
    start = config.end - timedelta(days=config.train_days + config.holdout_days)
    return write_days(
        start,
        config.end - timedelta(days=1),
        load_settings().landing_root,
        fmt="csv",
        n_users=config.n_users,
        n_items=config.n_items,
        events_per_day=config.events_per_day,
    )


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run every step; returns the summary it prints."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings()
    env = airflow_env(settings)
    if default_path().is_file():  # the synthetic items are its merchant categories
        env[ENV_PATH] = os.environ.get(ENV_PATH) or str(default_path())
    summary: dict[str, Any] = {}
    print("==> services (Kafka, S3): started or reused; stopped at the end unless someone else uses them", flush=True)
    with shared_services(settings, keep=config.keep_services):
        files = _step("generate-data", config.log_dir, lambda log: generate(config))
        summary["landing_files"] = len(files)
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        _step("airflow-db", config.log_dir, lambda log: run_airflow(["db", "migrate"], log, env))
        day = str(config.end)
        conf = json.dumps(
            {
                "models": list(config.models),
                "k": config.k,
                "train_days": config.train_days,
                "holdout_days": config.holdout_days,
                "reason": "make demo",
            }
        )
        _step(
            "training-dag",
            config.log_dir,
            lambda log: run_airflow(["dags", "test", "recommender_training", day, "-c", conf], log, env),
        )
        _step(
            "batch-scoring-dag",
            config.log_dir,
            lambda log: run_airflow(
                ["dags", "test", "batch_scoring", day, "-c", json.dumps({"k": config.k})], log, env
            ),
        )
        summary["stream"] = _step("streaming-burst", config.log_dir, lambda log: _stream(config, env, log))
        summary["http"] = _step("http-api", config.log_dir, lambda log: _http(config, env, log))
        summary.update(collect_summary(config))
        summary["offers"] = _offers_summary(config, registry=ModelRegistry.from_settings(settings))
    return summary


def _stream(config: DemoConfig, env: dict[str, str], log: Path) -> Any:
    import pandas as pd

    settings = load_settings()
    users = pd.read_parquet(scores_path(settings.lake_root, config.end - timedelta(days=1)), columns=["user_id"])
    # A consumer group of its own, starting at the end of the topic: the shared `recflow-scorer` group
    # resumes from its committed offsets, so requests other runs (tests, benchmarks) left would come first.
    scorer = start_scorer(env, name="scorer-demo", extra_args=["--group", f"recflow-demo-{uuid.uuid4().hex[:8]}"])
    try:
        version = scorer.wait_ready()
        log.write_text(f"scorer ready serving {version}; scorer log: {scorer.log_path}\n")
        report = send_burst(settings.kafka, users["user_id"].unique().tolist(), n=config.burst, k=config.k)
    finally:
        scorer.stop()
    if report.answered_share < 0.99:
        raise DemoError(f"only {report.answered}/{report.sent} streaming requests answered; log: {scorer.log_path}")
    return report


def _http(config: DemoConfig, env: dict[str, str], log: Path, n: int = 200) -> dict[str, Any]:
    """Start ``recflow serve``, ask it for ``n`` users' top-K and check every answer names the champion."""
    import urllib.request

    import pandas as pd

    settings = load_settings()
    users = pd.read_parquet(scores_path(settings.lake_root, config.end - timedelta(days=1)), columns=["user_id"])
    server = start_server(env=env, name="serve-demo")
    answers: list[dict[str, Any]] = []
    try:
        model = server.wait_ready()
        log.write_text(f"HTTP API ready at {server.url} serving {model['versions']}; log: {server.log_path}\n")
        for user in users["user_id"].unique()[:n].tolist():
            body = json.dumps({"user_id": str(user), "k": config.k}).encode()
            request = urllib.request.Request(
                f"{server.url}/v1/recommend", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(json.loads(response.read()))
    finally:
        server.stop()
    served = {(a["model_version"], a["model_digest"]) for a in answers}
    if len(answers) < min(n, users["user_id"].nunique()) or len(served) != 1:
        raise DemoError(f"the HTTP API answered {len(answers)} requests with models {served}; log: {server.log_path}")
    version, digest = served.pop()
    return {"url": server.url, "answered": len(answers), "model_version": version, "model_digest": digest}


def collect_summary(config: DemoConfig) -> dict[str, Any]:
    """Read back what the run produced, from the lake and the S3 registry (not from memory)."""
    settings = load_settings()
    registry = ModelRegistry.from_settings(settings)
    record = registry.champion_record()
    interval_end = datetime.combine(config.end, datetime.min.time(), tzinfo=UTC)
    metrics: dict[str, dict[str, Any]] = {}
    for family in (*config.models, "popularity"):
        found = registry.list_versions(family, prefix=version_prefix(family, interval_end))
        # the newest upload for the interval is this demo's (the table says which model is missing)
        metrics[family] = dict(found[-1].metrics) if found else {"error": f"no {family} version registered"}
    return {
        "validation": _validation_summary(config),
        "metrics": metrics,
        "champion": record.version if record else None,
        "champion_digest": record.digest if record else None,
        "champion_reason": record.reason if record else None,
        "champion_uri": record.uri if record else None,
        "batch": read_summary(settings.lake_root, config.end - timedelta(days=1)),
    }


def _offers_summary(config: DemoConfig, *, registry: ModelRegistry, users: int = 3) -> dict[str, Any]:
    """Three users' eligible offers from the published offers partition, and the champion's five weakest
    categories (lowest recall@K) on the run's hold-out, by the per-category table."""
    import pandas as pd

    from recflow.validation.offers import load_catalog  # deferred: great_expectations (the catalog's suite)

    settings = load_settings()
    path = settings.lake_root / offers_partition(config.end - timedelta(days=1))
    if not path.is_dir():
        return {"error": f"no offers partition at {path} (no offer catalog: set {ENV_PATH})"}
    offers = pd.read_parquet(path)
    eligible = offers[offers["eligible"]]
    shown = sorted(eligible["user_id"].unique())[:users]
    start = config.end - timedelta(days=config.train_days + config.holdout_days)
    window = TrainingWindow(start, config.end - timedelta(days=config.holdout_days), config.end)
    truth, _ = shared_holdout(settings.lake_root, window)
    champion = registry.champion()
    weakest: list[dict[str, Any]] = []
    if champion is not None:
        model = load_recommender(registry.fetch(champion, config.log_dir / "champion"))
        recs = model.recommend(truth["user_id"].unique(), k=config.k)
        thresholds = {item: o.threshold for item, o in load_catalog(os.environ.get(ENV_PATH)).by_item.items()}
        table = category_table(recs, truth, k=config.k, thresholds=thresholds)
        weakest = weakest_categories(table, 5, min_positives=5).reset_index().to_dict("records")
    return {
        "users": {u: eligible[eligible["user_id"] == u].to_dict("records") for u in shown},
        "eligible_share": float(len(eligible) / len(offers)) if len(offers) else 0.0,
        "offer_rows": len(offers),
        "weakest": weakest,
    }


def _validation_summary(config: DemoConfig) -> dict[str, Any]:
    reports = sorted((load_settings().lake_root / "quarantine").glob("date=*/report.json"))
    days = [json.loads(p.read_text()) for p in reports]
    return {
        "days": len(days),
        "landed": sum(int(d["counts"]["landed"]) for d in days),
        "accepted": sum(int(d["counts"]["accepted"]) for d in days),
        "quarantined": sum(int(d["counts"]["quarantined"]) for d in days),
        "success": all(bool(d.get("success", False)) for d in days),
    }


def format_summary(summary: dict[str, Any]) -> str:
    v = summary["validation"]
    stream = summary["stream"]
    http = summary["http"]
    same = "matches" if http["model_digest"] == summary["champion_digest"] else "DIFFERS from"
    ok_metrics = {name: m for name, m in summary["metrics"].items() if "error" not in m}
    lines = [
        "",
        "recflow demo summary",
        "====================",
        f"validation : {v['days']} day(s), {v['landed']} rows landed, {v['accepted']} accepted, "
        f"{v['quarantined']} quarantined, {'PASSED' if v['success'] else 'FAILED'}",
        "",
        metrics_table(ok_metrics),
        "",
        f"champion   : {summary['champion']}  ({summary['champion_uri']})",
        f"digest     : sha256:{summary['champion_digest']}",
        f"why        : {summary['champion_reason']}",
        f"batch      : {summary['batch']['rows']} rows for {summary['batch']['users_scored']} users -> "
        f"{summary['batch']['path']}",
        f"streaming  : {stream.answered}/{stream.sent} answered ({stream.errors} errors), "
        f"p50 {stream.p50_ms:.0f} ms, p99 {stream.p99_ms:.0f} ms, served by {', '.join(stream.model_versions)}",
        f"http       : {http['answered']} answered by recflow serve at {http['url']}, served by "
        f"{http['model_version']} (digest {same} the champion's)",
    ]
    return "\n".join(lines + _format_offers(summary.get("offers", {})))


def _format_offers(offers: dict[str, Any]) -> list[str]:
    if "error" in offers or not offers:
        return ["", f"offers     : {offers.get('error', 'not produced')}"]
    lines = ["", f"offers     : {offers['offer_rows']} offer rows, eligible share {offers['eligible_share']:.1%}"]
    for user, rows in offers["users"].items():
        lines.append(f"  {user}:")
        lines += [
            f"    #{r['rank']} {r['offer']} -> {r['reward']} (propensity {r['propensity']:.3f} >= "
            f"{r['threshold']}/1000)"
            for r in rows
        ]
    lines.append("weakest categories (champion, hold-out; recall@K, positives, offer tp/fp/fn):")
    lines += [
        f"  {w['item_id']}: recall@K {w['recall_at_k']:.3f}, {w['pos_count']} positives, "
        f"tp {w['tp']:.0f} fp {w['fp']:.0f} fn {w['fn']:.0f}"
        for w in offers["weakest"]
    ]
    return lines
