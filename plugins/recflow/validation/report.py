"""The outcome of validating a partition: :class:`ValidationResult`, its summary, and the JSON/HTML reports."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx

from recflow.validation.gx_runner import jsonable


class ValidationFailed(Exception):
    """The batch broke the batch policy (or could not be read); ``result`` holds the details."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        super().__init__(result.summary())


@dataclass
class ValidationResult:
    """The outcome of validating one partition; ``to_xcom`` is the small part that travels in XCom."""

    day: str
    landing_file: str
    landed: int
    accepted: int
    quarantined: int
    success: bool
    report_path: str
    report_json_path: str
    quarantine_path: str
    lake_path: str | None
    failed_expectations: list[dict[str, Any]] = field(default_factory=list)
    batch_checks: list[dict[str, Any]] = field(default_factory=list)
    reason_counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    data_docs_path: str | None = None
    report_uri: str | None = None
    """The HTML report uploaded to the reports store (None without ``reports_root``)."""
    data_docs_uri: str | None = None
    """GX Data Docs index uploaded to the reports store (None without ``reports_root`` or GX run)."""
    seconds: float = 0.0

    def summary(self) -> str:
        """One paragraph for logs and exceptions: counts, failed checks, counts and sample values."""
        head = (
            f"{'accepted' if self.success else 'REJECTED'} {self.day} from {self.landing_file}: "
            f"landed={self.landed} accepted={self.accepted} quarantined={self.quarantined}"
        )
        lines = [head]
        if self.error:
            lines.append(f"file error: {self.error}")
        for c in self.batch_checks:
            if not c["success"]:
                lines.append(f"batch check {c['check']} failed: observed {c['observed']}, limit {c['limit']}")
        for f in self.failed_expectations:
            lines.append(
                f"{f['expectation']}({f['column']}) [{f['reason']}]: {f.get('unexpected_count')} unexpected "
                f"of {f.get('element_count')} validated by GX"
                + (f" ({f['rows_flagged']} rows in the whole batch)" if f.get("rows_flagged") is not None else "")
                + f", sample {f.get('sample')}"
                + (f", observed {f['observed_value']}" if f.get("observed_value") is not None else "")
            )
        if self.reason_counts:
            lines.append(f"row rejects by reason: {self.reason_counts}")
        lines.append(f"report: {self.report_uri or self.report_path}")
        if self.data_docs_uri or self.data_docs_path:
            lines.append(f"GX Data Docs: {self.data_docs_uri or self.data_docs_path}")
        return "\n".join(lines)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "success": self.success,
            "landed": self.landed,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "lake_path": self.lake_path,
            "report_path": self.report_path,
            "data_docs_path": self.data_docs_path,
            "report_uri": self.report_uri,
            "data_docs_uri": self.data_docs_uri,
            "seconds": self.seconds,
            "failed": sorted({f["reason"] for f in self.failed_expectations})
            + [c["check"] for c in self.batch_checks if not c["success"]],
        }


# ------------------------------------------------------------------------------------- reporting


def write_reports(directory: Path, report: dict[str, Any]) -> None:
    (directory / "report.json").write_text(json.dumps(jsonable(report), indent=2), encoding="utf-8")
    (directory / "report.html").write_text(render_html(report), encoding="utf-8")


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained HTML page of the validation report (GX results, batch checks, reasons)."""

    def esc(v: Any) -> str:
        return html.escape(v if isinstance(v, str) else json.dumps(jsonable(v)))

    ok = report["success"]
    rows = "".join(
        f"<tr class={'ok' if r['success'] else 'bad'}><td>{'pass' if r['success'] else 'FAIL'}</td>"
        f"<td>{esc(r['expectation'])}</td><td>{esc(r['column'])}</td><td>{esc(r['reason'])}</td>"
        f"<td>{esc(r.get('unexpected_count'))} / {esc(r.get('element_count'))}</td>"
        f"<td>{esc(r.get('rows_flagged', ''))}</td>"
        f"<td>{esc(r.get('observed_value'))}</td><td>{esc(r.get('sample'))}</td></tr>"
        for r in report.get("expectations", [])
    )
    checks = "".join(
        f"<tr class={'ok' if c['success'] else 'bad'}><td>{'pass' if c['success'] else 'FAIL'}</td>"
        f"<td>{esc(c['check'])}</td><td>{esc(c.get('observed'))}</td><td>{esc(c.get('limit'))}</td>"
        f"<td>{esc(c.get('skipped', ''))}</td></tr>"
        for c in report.get("batch_checks", [])
    )
    reasons = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in report.get("reason_counts", {}).items())
    counts = report["counts"]
    gx_scope = report.get("gx_scope") or {}
    scope = (
        f"<p>GX validated {gx_scope.get('rows')} of {gx_scope.get('of')} parsed rows ({esc(gx_scope.get('method'))}); "
        "the <i>rows flagged</i> column counts the whole batch.</p>"
        if gx_scope
        else ""
    )
    docs = report.get("data_docs")
    docs = f'<p>GX Data Docs: <a href="{esc(docs)}">{esc(docs)}</a></p>' if docs else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>recflow validation {esc(report["day"])} {"passed" if ok else "FAILED"}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top}}
tr.bad td{{background:#fde2e2}}tr.ok td:first-child{{color:#2a7}}</style></head><body>
<h1>Suite {esc(report["suite"])} on {esc(report["day"])}: {"PASSED" if ok else "FAILED"}</h1>
<p>Landing file <code>{esc(report["landing_file"])}</code>; interval {esc(report["interval"])}.</p>
<p>landed <b>{counts["landed"]}</b> = accepted <b>{counts["accepted"]}</b> + quarantined
<b>{counts["quarantined"]}</b>; threshold {report["policy"]["threshold"]}.</p>
{f"<p class=bad><b>File error:</b> {esc(report['error'])}</p>" if report.get("error") else ""}
{docs}
{scope}
<h2>Batch checks</h2><table><tr><th></th><th>check</th><th>observed</th><th>limit</th><th>note</th></tr>
{checks}</table>
<h2>Expectations (GX {esc(gx.__version__)})</h2><table><tr><th></th><th>expectation</th><th>column</th>
<th>reason</th><th>unexpected / rows (GX)</th><th>rows flagged</th><th>observed</th><th>sample</th></tr>{rows}</table>
<h2>Row rejects by reason</h2><table><tr><th>reason</th><th>rows</th></tr>{reasons}</table>
</body></html>"""


# -------------------------------------------------------------------------------------- writing


def is_report_file(path: Path) -> bool:
    """Reports and Data Docs go to the reports store; data (rejects, the source copy) stays in quarantine."""
    return path.suffix != ".parquet" and not path.name.startswith("source-")


def prune_docs_assets(docs_dir: Path) -> None:
    """Drop GX's tutorial images (3.4 MB of the 4 MB per site); pages only need styles and the favicon."""
    images = docs_dir / "static" / "images"
    for f in images.glob("*") if images.is_dir() else []:
        if f.name != "favicon.ico":
            f.unlink()
