"""The promotion report of one training run: a self-contained HTML page (metrics table, a bar chart of
every candidate, the baseline and the champion on the shared hold-out, each model's calibration
(ECE, MCE and Brier before and after its map, and a reliability diagram), the worst slices against the
champion (``models/slices.yaml``), each segmented model's metrics per segment, the decision and its reasons),
stored create-only next to each candidate version (``versions/<v>/reports/promotion-<time>.html``).

Why inline SVG and no plotting library: the page is rendered on the Airflow worker, opened from S3 or
the registry plugin, and must not need matplotlib or network access to show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from recflow.evaluation.slices import SEGMENT_SLICE
from recflow.registry.records import compact

if TYPE_CHECKING:
    from recflow.promotion.records import Judgement
    from recflow.registry import ModelRegistry

_BAR_W, _GAP, _H = 70, 30, 220
WORST_SLICES = 10


def render_report(judgement: Judgement, *, run_id: str, interval_end: datetime) -> str:
    """The HTML page for one run's comparison and decision."""
    d = judgement.decision
    pm = d.primary_metric
    names = sorted(judgement.metrics, key=lambda n: (n == "champion", n))
    metric_cols = sorted({m for ms in judgement.metrics.values() for m in ms if "[" not in m})
    versions = {**{n: v.version for n, v in judgement.candidates.items()}}
    if judgement.champion is not None:
        versions["champion"] = judgement.champion.version
    rows = "".join(
        f"<tr><th>{escape(n)}</th><td><code>{escape(versions.get(n, ''))}</code></td>"
        + "".join(f"<td>{judgement.metrics[n].get(m, float('nan')):.4f}</td>" for m in metric_cols)
        + "</tr>"
        for n in names
    )
    head = "".join(f"<th>{escape(m)}</th>" for m in metric_cols)
    outcome = (
        f"promote <b>{escape(d.winner)}</b> (<code>{escape(versions[d.winner])}</code>)"
        if d.winner
        else "promote nothing: the champion stays"
    )
    reasons = "".join(
        f"<h3>{escape(v.name)}: {'eligible' if v.eligible else 'rejected'}</h3><ul>"
        + "".join(f"<li class='{'fail' if r.startswith('FAIL') else 'ok'}'>{escape(r)}</li>" for r in v.reasons)
        + "</ul>"
        for v in d.verdicts
    )
    h = judgement.holdout
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>recflow promotion report {escape(run_id)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}li.fail{{color:#b00}}li.ok{{color:#060}}</style>
</head><body>
<h1>Promotion report</h1>
<p>run <code>{escape(run_id)}</code>, data interval ending {escape(interval_end.isoformat())};
written {escape(datetime.now(UTC).isoformat(timespec="seconds"))}</p>
<p>Shared hold-out {escape(str(h.get("start")))} .. {escape(str(h.get("end")))}: {h.get("pairs")} pairs,
{h.get("users")} users. Every model below, the current champion included, was scored on it in this run.</p>
<h2>Decision</h2><p>{outcome}{" (cold start: floors and baseline only)" if d.cold_start else ""}</p>
<h2>{escape(pm)} on the shared hold-out</h2>
{_bar_chart({n: judgement.metrics[n].get(pm, 0.0) for n in names}, pm)}
<h2>Metrics</h2><table><tr><th>model</th><th>version</th>{head}</tr>{rows}</table>
<h2>Calibration (hold-out evaluation fold)</h2>{_calibration(judgement.calibration)}
<h2>Worst slices against the champion</h2>{_worst_slices(judgement.metrics)}
<h2>Per segment (segmented models, on the same hold-out)</h2>{_segments(judgement.metrics)}
<h2>By category (offer decision and top-K, weakest recall@K first)</h2>{_categories(judgement.categories)}
<h2>Reasons</h2>{reasons}
</body></html>
"""


def _calibration(figures: Mapping[str, Mapping[str, Any]]) -> str:
    """ECE / MCE / Brier before and after each model's map, and its reliability diagram."""
    if not figures:
        return "<p>No model of this run carries a calibration map.</p>"
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{f['after']['pairs']}</td>"
        + "".join(f"<td>{f[when][m]:.4f}</td>" for m in ("ece", "mce", "brier") for when in ("before", "after"))
        + "</tr>"
        for name, f in sorted(figures.items())
    )
    head = "".join(f"<th>{m} {when}</th>" for m in ("ECE", "MCE", "Brier") for when in ("before", "after"))
    diagrams = "".join(_reliability(name, f["after"]["bins"]) for name, f in sorted(figures.items()))
    return f"<table><tr><th>model</th><th>pairs</th>{head}</tr>{rows}</table><p>{diagrams}</p>"


def _reliability(name: str, bins: Sequence[Mapping[str, float]], size: int = 220) -> str:
    """A reliability diagram: positive rate against mean propensity per bin (dot area ~ pairs), diagonal."""
    pad, span = 30, size - 40
    total = max(sum(b["pairs"] for b in bins), 1)
    dots = "".join(
        f'<circle cx="{pad + span * b["mean_prediction"]:.1f}" cy="{10 + span * (1 - b["positive_rate"]):.1f}" '
        f'r="{2 + 8 * (b["pairs"] / total) ** 0.5:.1f}" fill="#3a7"><title>{int(b["pairs"])} pairs: '
        f"{b['positive_rate']:.3f} observed, {b['mean_prediction']:.3f} predicted</title></circle>"
        for b in bins
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="reliability diagram of {escape(name)}">'
        f'<rect x="{pad}" y="10" width="{span}" height="{span}" fill="none" stroke="#ccc"/>'
        f'<line x1="{pad}" y1="{10 + span}" x2="{pad + span}" y2="10" stroke="#888" stroke-dasharray="4"/>{dots}'
        f'<text x="{pad + span / 2}" y="{size - 8}" text-anchor="middle" font-size="11">{escape(name)}: '
        "propensity</text></svg>"
    )


def _categories(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Each model's per-category table (the demo's table "by mid"), folded, weakest recall@K first."""
    columns = ("pos_count", "tp", "fp", "fn", "precision", "recall", "precision_at_k", "recall_at_k")

    def cell(value: Any) -> str:
        if value is None:
            return "<td>n/a</td>"
        return f"<td>{value:.4f}</td>" if isinstance(value, float) else f"<td>{value}</td>"

    def order(row: Mapping[str, Any]) -> tuple[float, str]:
        recall = row.get("recall_at_k")
        return (2.0 if recall is None else float(recall), str(row.get("item_id")))

    parts = []
    for name, rows in sorted(tables.items()):
        body = "".join(
            f"<tr><th>{escape(str(r.get('item_id')))}</th>" + "".join(cell(r.get(c)) for c in columns) + "</tr>"
            for r in sorted(rows, key=order)
        )
        head = "".join(f"<th>{c}</th>" for c in columns)
        parts.append(
            f"<details><summary>{escape(name)}: {len(rows)} categories</summary>"
            f"<table><tr><th>item</th>{head}</tr>{body}</table></details>"
        )
    return "".join(parts) or "<p>No per-category table.</p>"


def _worst_slices(metrics: Mapping[str, Mapping[str, float]], n: int = WORST_SLICES) -> str:
    """The ``n`` (candidate, slice metric) pairs furthest below the champion on the same slice."""
    champion = metrics.get("champion")
    if not champion:
        return "<p>No champion yet: nothing to compare slices against.</p>"
    rows = []
    for name, values in metrics.items():
        if name == "champion":
            continue
        for key, value in values.items():
            if "[" in key and not key.startswith("size[") and key in champion:
                size = values.get("size[" + key.split("[", 1)[1], 0.0)
                rows.append((value - champion[key], name, key, value, champion[key], size))
    if not rows:
        return "<p>No slice was measured for both a candidate and the champion.</p>"
    cells = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(key)}</td><td>{int(size)}</td><td>{value:.4f}</td>"
        f"<td>{ref:.4f}</td><td>{delta:+.4f}</td></tr>"
        for delta, name, key, value, ref, size in sorted(rows)[:n]
    )
    return (
        "<table><tr><th>model</th><th>slice metric</th><th>users</th><th>value</th><th>champion</th>"
        f"<th>change</th></tr>{cells}</table>"
    )


def _segments(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """Each segmented model's metrics per segment (its ``[segment=...]`` slice keys) beside its overall ones."""
    tables = []
    prefix = f"[{SEGMENT_SLICE}="
    for name in sorted(metrics):
        values = metrics[name]
        by_segment: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            if prefix in key:
                metric, label = key.split(prefix, 1)
                by_segment.setdefault(label.rstrip("]"), {})[metric] = value
        if not by_segment:
            continue
        columns = sorted({m for row in by_segment.values() for m in row if m != "size"})
        head = "".join(f"<th>{escape(m)}</th>" for m in columns)
        overall = "".join(f"<td>{values.get(m, float('nan')):.4f}</td>" for m in columns)
        rows = "".join(
            f"<tr><th>{escape(label)}</th><td>{int(row.get('size', 0))}</td>"
            + "".join(f"<td>{row.get(m, float('nan')):.4f}</td>" for m in columns)
            + "</tr>"
            for label, row in sorted(by_segment.items())
        )
        tables.append(
            f"<h3>{escape(name)}</h3><table><tr><th>segment</th><th>users</th>{head}</tr>{rows}"
            f"<tr><th>all</th><td></td>{overall}</tr></table>"
        )
    return "".join(tables) or "<p>No segmented model in this run.</p>"


def _bar_chart(values: dict[str, float], label: str) -> str:
    top = max([*values.values(), 1e-9])
    width = len(values) * (_BAR_W + _GAP) + _GAP
    bars = []
    for i, (name, value) in enumerate(values.items()):
        x = _GAP + i * (_BAR_W + _GAP)
        bar_h = int((_H - 40) * value / top)
        color = "#888" if name == "champion" else "#3a7"
        bars.append(
            f'<rect x="{x}" y="{_H - 20 - bar_h}" width="{_BAR_W}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{x + _BAR_W / 2}" y="{_H - 24 - bar_h}" text-anchor="middle" font-size="12">{value:.4f}</text>'
            f'<text x="{x + _BAR_W / 2}" y="{_H - 5}" text-anchor="middle" font-size="12">{escape(name)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_H}" role="img" '
        f'aria-label="{escape(label)} per model">{"".join(bars)}</svg>'
    )


def store_report(registry: ModelRegistry, version: str, html: str) -> str:
    """Write the page create-only into ``versions/<version>/reports/``; returns its ``s3://`` URI."""
    key = registry.version_key(version, "reports", f"promotion-{compact(datetime.now(UTC))}.html")
    registry.store.create(key, html.encode(), content_type="text/html; charset=utf-8")
    return registry.store.uri(key)


def report_keys(registry: ModelRegistry, version: str) -> list[str]:
    """The keys of the reports stored next to ``version``, oldest first (names sort by time)."""
    return registry.store.keys(registry.version_key(version, "reports") + "/")


def latest_report(registry: ModelRegistry, version: str) -> str | None:
    """The newest report stored next to ``version`` (HTML text), or ``None``."""
    keys = report_keys(registry, version)
    if not keys:
        return None
    body = registry.store.get(keys[-1])
    return None if body is None else body.decode()
