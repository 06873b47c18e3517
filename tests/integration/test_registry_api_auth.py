"""The registry plugin behind Airflow's auth manager, on a real ``airflow api-server``.

Attacks replayed (issue 21): a caller with no token, or ``Bearer bogus``, read ``/recflow/*`` (200);
``/recflow/docs`` and ``/recflow/openapi.json`` were open; a malformed version id was a 500. Now: 401
for both, 403 for a logged-in user without the permission, 200 with it, 404 for the docs, 400 for a
malformed id. The users and their passwords are generated here (the simple auth manager's password file).
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from airflow_cluster import AirflowCluster, airflow_on_postgres, require_postgres_drivers

from recflow.config.settings import Settings

pytestmark = pytest.mark.slow

require_postgres_drivers()


@pytest.fixture(scope="module")
def api_server(
    live_services: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AirflowCluster, dict[str, str]]]:
    """Only the API server, with two users: ``operator`` (role op) and ``viewer`` (role viewer)."""
    home = tmp_path_factory.mktemp("airflow-auth")
    passwords = {"operator": secrets.token_urlsafe(16), "viewer": secrets.token_urlsafe(16)}
    password_file = home / "passwords.json"
    password_file.write_text(json.dumps(passwords))
    password_file.chmod(0o600)
    with airflow_on_postgres(
        live_services,
        home,
        "auth",
        components=("api-server",),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="operator:op,viewer:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(password_file),
    ) as cluster:
        yield cluster, passwords


def _get(cluster: AirflowCluster, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"{cluster.base_url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize("path", ["/recflow/versions", "/recflow/audit", "/recflow/history", "/recflow/ui/"])
def test_no_token_or_a_bogus_one_is_401_without_permission_403_with_it_200(
    api_server: tuple[AirflowCluster, dict[str, str]], path: str
) -> None:
    cluster, passwords = api_server
    status, headers, _ = _get(cluster, path)
    assert status == 401 and headers.get("www-authenticate") == "Bearer", (status, headers)
    assert _get(cluster, path, "bogus")[0] == 401
    viewer = cluster.login("viewer", passwords["viewer"])
    assert _get(cluster, "/api/v2/dags", viewer)[0] == 200  # a valid login: the viewer reads /api/v2
    status, _, body = _get(cluster, path, viewer)
    assert status == 403 and b"recflow_s3" in body, body
    status, headers, body = _get(cluster, path, cluster.login("operator", passwords["operator"]))
    assert status == 200, body
    if path.endswith("/ui/"):
        assert (
            "sandbox" in headers["content-security-policy"] and "script-src" not in headers["content-security-policy"]
        )


def test_docs_are_closed_and_a_malformed_version_is_400(api_server: tuple[AirflowCluster, dict[str, str]]) -> None:
    cluster, passwords = api_server
    operator = cluster.login("operator", passwords["operator"])
    for path in ("/recflow/docs", "/recflow/openapi.json", "/recflow/redoc"):
        assert _get(cluster, path, operator)[0] == 404, path
    status, _, body = _get(cluster, "/recflow/versions/..%2F..%2Fchampion.json", operator)
    assert status in (400, 404), body
    assert _get(cluster, "/recflow/versions/not-a-version-id", operator)[0] == 400
    status, _, body = _get(cluster, "/recflow/versions/als-20990101T0000-000000000000", operator)
    assert status == 404 and b"not found" in body, body
