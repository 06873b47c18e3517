"""Who may read the registry plugin: Airflow's own auth manager, the same login and JWT as ``/api/v2``.

Why: the plugin reads S3 with the ``recflow_s3`` Connection's key and shows what serves, its audit log
and its reports. Without a check, anyone who reaches the API port reads them (and the plugin acts as a
confused deputy for the key). Airflow does not put its auth in front of plugin apps, so every route of
:data:`recflow.orchestration.registry_api.app` depends on :func:`require_registry_reader`:

- the caller is the user of the ``Authorization: Bearer <JWT>`` header (the token ``/auth/token``
  returns) or of the UI's session cookie, resolved by Airflow's ``get_user``;
- a missing, bogus, expired or revoked token is **401** with ``WWW-Authenticate: Bearer`` (Airflow's
  ``/api/v2`` answers 403 for a bogus token; a client that sent no valid credentials should be told to
  authenticate, RFC 9110 section 15.5.2);
- an authenticated user needs read access to the ``recflow_s3`` Connection, the key the plugin reads
  with (:data:`REGISTRY_PERMISSION`), else **403**. The permission is the auth manager's: with the
  simple auth manager that is the ``op`` role and above; with FAB or Keycloak, a grant on that
  Connection.

Airflow modules are imported inside the functions: Airflow loads plugin modules in every component
(scheduler, DAG processor, workers), and only the API server runs these checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recflow.orchestration.connections import S3_CONN_ID

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

#: What a caller needs, said in the auth manager's words: GET on the Connection the registry is read with.
REGISTRY_PERMISSION = f"read access to the {S3_CONN_ID!r} Connection"

_bearer = HTTPBearer(auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticated_user(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> BaseUser:
    """The caller, from the bearer token or the UI's cookie; 401 for anything that is not a valid login."""
    from airflow.api_fastapi.core_api.security import get_user

    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:  # Airflow: 401 for no token or an expired one, 403 for a bad signature
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            raise _unauthorized(f"not authenticated ({exc.detail}): send the JWT from /auth/token") from exc
        raise


def may_read_registry(user: Any) -> bool:
    """Whether the auth manager grants ``user`` :data:`REGISTRY_PERMISSION`."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return bool(
        get_auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=S3_CONN_ID), user=user
        )
    )


async def require_registry_reader(user: Annotated[Any, Depends(authenticated_user)]) -> None:
    """The dependency every registry route has: 401 without a valid login, 403 without the permission."""
    if not may_read_registry(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"the model registry needs {REGISTRY_PERMISSION}")
