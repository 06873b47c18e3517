"""The ``compare`` task's "Promotion report" extra link (Airflow 3: computed on the worker, kept in XCom).

The URL is checked against the plugin's real route and mount point, and the link against the DAG as
Airflow serializes it (what the API server and the UI read). The full path, a ``dag.test()`` run that
stores the link in XCom, is checked in tests/integration/test_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recflow.orchestration.report_link import PLUGIN_PREFIX, REPORT_ROUTE, PromotionReportLink, report_url

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DECISION: dict[str, Any] = {
    "winner": "ncf-20261110T0000-a5297971d571",
    "candidates": {
        "als": {"version": "als-20261110T0000-3f9a2c1b7e04"},
        "ncf": {"version": "ncf-20261110T0000-a5297971d571"},
        "popularity": {"version": "popularity-20261110T0000-0123456789ab"},
    },
    "reports": {"als": "s3://b/r/als.html", "ncf": "s3://b/r/ncf.html", "popularity": "s3://b/r/pop.html"},
}


def test_the_link_opens_the_winners_report_page() -> None:
    assert report_url(DECISION) == "/recflow/ui/reports/ncf-20261110T0000-a5297971d571"
    assert report_url(DECISION, "http://airflow.example:8080/base/") == (
        "http://airflow.example:8080/base/recflow/ui/reports/ncf-20261110T0000-a5297971d571"
    )


def test_without_a_winner_the_link_still_opens_the_run_report() -> None:
    """The same run report is stored next to every candidate, so any reported candidate shows it."""
    assert report_url({**DECISION, "winner": None}) == "/recflow/ui/reports/als-20261110T0000-3f9a2c1b7e04"
    assert report_url({"winner": None, "candidates": {}, "reports": {}}) == ""


def test_the_link_names_a_route_the_plugin_serves() -> None:
    from airflow import plugins_manager

    from recflow.orchestration.registry_api import app

    assert REPORT_ROUTE in {getattr(route, "path", None) for route in app.routes}
    plugin = next(p for p in plugins_manager._get_plugins()[0] if p.name == "recflow")
    assert [a["url_prefix"] for a in plugin.fastapi_apps if a["app"] is app] == [PLUGIN_PREFIX]


def test_get_link_reads_the_tasks_decision_from_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    asked: list[tuple[Any, str]] = []

    def get_value(*, ti_key: Any, key: str) -> Any:
        asked.append((ti_key, key))
        return DECISION if ti_key == "compare-ti" else None

    monkeypatch.setattr(XCom, "get_value", staticmethod(get_value))
    link = PromotionReportLink()
    assert link.get_link(None, ti_key="compare-ti") == "/recflow/ui/reports/ncf-20261110T0000-a5297971d571"  # type: ignore[arg-type]
    assert asked == [("compare-ti", "return_value")]
    assert link.get_link(None, ti_key="failed-ti") == ""  # type: ignore[arg-type]  # no decision: no link


def test_the_compare_task_carries_the_link_as_airflow_serializes_it() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    dag = DagBag(dag_folder=str(DAGS_DIR / "recommender_training.py")).dags["recommender_training"]
    encoded = DagSerialization.serialize_dag(dag)
    compare = next(t["__var"] for t in encoded["tasks"] if t["__var"]["task_id"] == "compare")
    assert compare["_operator_extra_links"] == {"Promotion report": "_link_PromotionReportLink"}
    assert DagSerialization.deserialize_dag(encoded).get_task("compare").extra_links == ["Promotion report"]
