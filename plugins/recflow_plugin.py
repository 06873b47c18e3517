"""The recflow Airflow plugin: a read-only model-registry API and a link to it in the UI's navigation.

Airflow loads this file from the plugins folder; the `recflow` package itself is installed in the venv
(plugins/.airflowignore keeps Airflow from loading its files as plugins).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from recflow.orchestration.registry_api import app


class RecflowPlugin(AirflowPlugin):
    name = "recflow"
    fastapi_apps = [{"app": app, "url_prefix": "/recflow", "name": "recflow model registry"}]  # noqa: RUF012 (Airflow API)
    external_views = [  # noqa: RUF012 (Airflow API)
        {
            "name": "Model registry (champion)",
            "href": "recflow/champion",
            "destination": "nav",
            "category": "browse",
            "url_route": "recflow-champion",
        },
        {
            "name": "Model registry (page)",
            "href": "recflow/ui/",
            "destination": "nav",
            "category": "browse",
            "url_route": "recflow-registry-page",
        },
    ]
