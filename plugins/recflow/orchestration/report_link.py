"""The ``compare`` task's extra link: this run's promotion report on the registry plugin's page.

How Airflow 3 shows it: when the task finishes, the worker calls :meth:`PromotionReportLink.get_link`
and stores the URL in XCom under the link's key; the UI's "Promotion report" button reads it from there
(the API server never runs this code). The URL comes from the task's own return value (the decision).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: The plugin app's mount point (recflow_plugin.py) and its report route (registry_api.promotion_report).
PLUGIN_PREFIX = "/recflow"
REPORT_ROUTE = "/ui/reports/{version}"


def report_version(decision: dict[str, Any]) -> str | None:
    """The version whose page shows this run's report: the winner, else the first candidate.

    Why any candidate will do: ``compare_and_bless`` stores the same run report next to every candidate.
    """
    if decision.get("winner"):
        return str(decision["winner"])
    reported = [
        c["version"]
        for name, c in sorted(decision.get("candidates", {}).items())
        if name in decision.get("reports", {})
    ]
    return reported[0] if reported else None


def report_url(decision: dict[str, Any], base_url: str = "/") -> str:
    """The report page of ``decision`` under the API server's ``base_url``; "" when nothing was reported."""
    version = report_version(decision)
    if version is None:
        return ""
    path = PLUGIN_PREFIX + REPORT_ROUTE.format(version=quote(version, safe=""))
    return urljoin(base_url.rstrip("/") + "/", path.lstrip("/"))


class PromotionReportLink(BaseOperatorLink):
    """The "Promotion report" button of the ``compare`` task."""

    name = "Promotion report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.configuration import conf
        from airflow.sdk.execution_time.xcom import XCom

        decision = XCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(decision, dict):
            return ""  # the task failed before it decided: nothing to show
        return report_url(decision, conf.get("api", "base_url", fallback="/"))
