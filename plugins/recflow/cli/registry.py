"""``recflow registry list|show|diff|history|champion|promote|rollback``: the registry's command line.

The contract the docs and tests use: ``--json`` prints machine-readable output on stdout; every error
is ONE line on stderr (``recflow registry: <Error>: <message>``) with exit code 1, never a traceback.
``promote`` and ``rollback`` go through the same gate as the pipeline (passing model blessing for the
version's digest, a fresh-process canary, compare-and-swap) and publish the model-update event.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime
from typing import Any

from recflow.config.settings import load_settings
from recflow.promotion.gate import promote_blessed, rollback
from recflow.registry import ModelRegistry, ModelVersion, PromotionRecord, resolve_serving_version
from recflow.registry.blessing import blessings
from recflow.streaming.events import encode, kafka_producer, model_update_event


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry.from_settings(load_settings(), prefix=args.prefix)


def _version_doc(mv: ModelVersion) -> dict[str, Any]:
    return {
        "version": mv.version,
        "family": mv.family,
        "digest": mv.digest,
        "created_at": mv.created_at.isoformat(),
        "registered_at": mv.registered_at.isoformat(),
        "metrics": dict(mv.metrics),
        "uri": mv.uri,
        "files": len(mv.files),
    }


def _record_doc(r: PromotionRecord) -> dict[str, Any]:
    return r.to_dict()


def _emit(args: argparse.Namespace, doc: Any, text: str) -> int:
    print(json.dumps(doc, indent=2, sort_keys=True, default=str) if args.json else text)
    return 0


def _list(args: argparse.Namespace) -> int:
    versions = _registry(args).list_versions(args.family)
    lines = [f"{mv.version}  {mv.family:<10} digest {mv.digest[:12]}  {_fmt_metrics(mv.metrics)}" for mv in versions]
    return _emit(args, [_version_doc(mv) for mv in versions], "\n".join(lines) or "no versions")


def _show(args: argparse.Namespace) -> int:
    reg = _registry(args)
    mv = reg.get(args.version)
    doc = {
        **_version_doc(mv),
        "lineage": dict(mv.lineage),
        "blessings": [b.to_dict() for b in blessings(reg, mv.version)],
    }
    text = "\n".join(
        [
            f"{mv.version} ({mv.family}) {mv.uri}",
            f"digest     {mv.digest}",
            f"trained to {mv.created_at.isoformat()}, registered {mv.registered_at.isoformat()}",
            f"metrics    {_fmt_metrics(mv.metrics)}",
            *(
                f"blessing   {b['kind']} {'PASSED' if b['passed'] else 'FAILED'} {b['blessed_at']}: {b['reasons'][:1]}"
                for b in doc["blessings"]
            ),
        ]
    )
    return _emit(args, doc, text)


def _diff(args: argparse.Namespace) -> int:
    reg = _registry(args)
    a, b = reg.get(args.a), reg.get(args.b)
    names = sorted({*a.metrics, *b.metrics})
    metrics = {n: {"a": a.metrics.get(n), "b": b.metrics.get(n)} for n in names}
    fa, fb = {f.path: f.sha256 for f in a.files}, {f.path: f.sha256 for f in b.files}
    files = {
        "only_a": sorted(fa.keys() - fb.keys()),
        "only_b": sorted(fb.keys() - fa.keys()),
        "changed": sorted(p for p in fa.keys() & fb.keys() if fa[p] != fb[p]),
    }
    params = {"a": a.lineage.get("params"), "b": b.lineage.get("params")}
    doc = {"a": a.version, "b": b.version, "metrics": metrics, "files": files, "params": params}
    lines = [f"{a.version} -> {b.version}"]
    for n, v in metrics.items():
        delta = "" if v["a"] is None or v["b"] is None else f" ({v['b'] - v['a']:+.4f})"
        lines.append(f"  {n:<16} {v['a']} -> {v['b']}{delta}")
    lines.append(
        f"  files: {len(files['changed'])} changed, {len(files['only_a'])} removed, {len(files['only_b'])} added"
    )
    return _emit(args, doc, "\n".join(lines))


def _history(args: argparse.Namespace) -> int:
    records = _registry(args).history()
    lines = [
        f"{r.promoted_at.isoformat()}  {r.kind:<8} {r.version}  (was {r.previous})  by {r.actor}: {r.reason}"
        for r in records
    ]
    return _emit(args, [_record_doc(r) for r in records], "\n".join(lines) or "no promotions yet")


def _champion(args: argparse.Namespace) -> int:
    serving = resolve_serving_version(_registry(args), at=args.at, interval_end=args.interval_end)
    record = serving.record
    doc = {"version": serving.version, "digest": serving.digest, "uri": serving.uri,
           "promotion": None if record is None else record.to_dict()}  # fmt: skip
    text = f"{serving.version}  digest {serving.digest}"
    if record is not None:
        text += f"\npromoted {record.promoted_at.isoformat()} by {record.actor}: {record.reason}"
    return _emit(args, doc, text)


def _promote(args: argparse.Namespace) -> int:
    reg = _registry(args)
    if args.expect_champion is None:
        current = reg.champion_record()
        expected = None if current is None else current.version
    else:
        expected = None if args.expect_champion == "none" else args.expect_champion
    record = promote_blessed(reg, args.version, expected_champion=expected, reason=args.reason, actor=_actor())
    _publish(record)
    return _emit(
        args, _record_doc(record), f"promoted {record.version} (digest {record.digest}); was {record.previous}"
    )


def _rollback(args: argparse.Namespace) -> int:
    record = rollback(_registry(args), to=args.to, reason=args.reason, actor=_actor())
    _publish(record)
    return _emit(
        args, _record_doc(record), f"rolled back to {record.version} (digest {record.digest}); was {record.previous}"
    )


def _publish(record: PromotionRecord) -> None:
    """Announce the new champion like the training DAG does (the scorer still checks the registry)."""
    kafka = load_settings().kafka
    event = model_update_event(
        version=record.version, digest=record.digest, uri=record.uri, promoted_at=record.promoted_at
    )
    producer = kafka_producer(kafka)
    producer.produce(kafka.model_updates_topic, key=record.version.encode(), value=encode(event))
    if producer.flush(30):
        raise RuntimeError(f"the champion changed to {record.version}, but Kafka did not acknowledge the event")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _fmt_metrics(metrics: Any) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if k.endswith("@10")) or "(no metrics)"


def _iso(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {value!r}") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no time zone; add Z or +00:00")
    return when


def _reason(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("a reason is required (it goes into the audit log)")
    return value


def _safely(func: Any) -> Any:
    """Run a handler; any failure becomes one line on stderr and exit code 1 (no traceback)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except Exception as exc:  # the CLI contract: one line, never a traceback
            message = " ".join(str(exc).split())
            print(f"recflow registry: {type(exc).__name__}: {message}", file=sys.stderr)
            return 1

    return run


def _one_line_error(message: str) -> Any:
    """argparse's usage errors, as one line too."""
    print(f"recflow registry: usage error: {message}", file=sys.stderr)
    raise SystemExit(2)


def add_registry(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("registry", help="model versions, champion, history, promote, rollback")
    actions = parser.add_subparsers(dest="action", required=True)

    def action(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--prefix", default="registry", help=argparse.SUPPRESS)
        p.set_defaults(func=_safely(func))
        p.error = _one_line_error  # type: ignore[method-assign]
        return p

    action("list", _list, "committed versions, oldest first").add_argument("--family", default=None)
    action("show", _show, "one version: manifest, lineage, blessings").add_argument("version")
    diff = action("diff", _diff, "metrics, files and params of two versions")
    diff.add_argument("a")
    diff.add_argument("b")
    action("history", _history, "promotions that took effect, oldest first")
    champion = action("champion", _champion, "the serving version (at --at, or for --interval-end)")
    when = champion.add_mutually_exclusive_group()
    when.add_argument("--at", type=_iso, default=None, help="wall-clock time with zone, e.g. 2026-12-01T10:00:00Z")
    when.add_argument(
        "--interval-end", type=_iso, default=None, metavar="TIME",
        help="the champion batch scoring uses for the data interval ending then (e.g. a backfilled day)",
    )  # fmt: skip
    promote = action("promote", _promote, "promote a blessed version after its canary")
    promote.add_argument("version")
    promote.add_argument("--reason", required=True, type=_reason)
    promote.add_argument(
        "--expect-champion", default=None, metavar="VERSION|none",
        help="fail with 'champion moved' unless this is the champion (default: whatever serves now)",
    )  # fmt: skip
    rollback = action("rollback", _rollback, "promote an earlier champion again (canaried), with a reason")
    rollback.add_argument("--to", default=None, help="default: the previous champion")
    rollback.add_argument("--reason", required=True, type=_reason)
