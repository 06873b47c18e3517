"""Error codes and HTTP statuses: the Kafka protocol's reason codes, plus the few only HTTP has.

Why the codes are the protocol's :class:`~recflow.streaming.protocol.Reason`: a client that moves from
Kafka to HTTP (or reads both) sees one vocabulary; this module only adds the status each code maps to.
Every error body is JSON with the code; a traceback never reaches a client (it goes to the log).
"""

from __future__ import annotations

from enum import StrEnum

from recflow.streaming.protocol import Reason


class HttpCode(StrEnum):
    """Errors that only a request over HTTP can have (no Kafka record is ever in these states)."""

    NOT_READY = "not_ready"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"


#: The HTTP status of every code. 400: the body is not a JSON object at all; 422: a JSON object that
#: breaks a field rule; 413: over the size limit; 5xx: our fault or not ready yet.
STATUS: dict[str, int] = {
    Reason.NULL_VALUE: 400,
    Reason.UNDECODABLE: 400,
    Reason.NOT_AN_OBJECT: 400,
    Reason.OVERSIZE: 413,
    Reason.MISSING_FIELD: 422,
    Reason.WRONG_TYPE: 422,
    Reason.INVALID_REQUEST_ID: 422,
    Reason.INVALID_USER_ID: 422,
    Reason.K_OUT_OF_RANGE: 422,
    Reason.TOO_MANY_ITEM_IDS: 422,
    Reason.SCORING_FAILED: 500,
    Reason.INTERNAL_ERROR: 500,
    HttpCode.NOT_READY: 503,
    HttpCode.NOT_FOUND: 404,
    HttpCode.METHOD_NOT_ALLOWED: 405,
    HttpCode.UNSUPPORTED_MEDIA_TYPE: 415,
}


class ApiError(Exception):
    """A request that gets an error answer: its code, a message for the client, and the status."""

    def __init__(self, code: Reason | HttpCode, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.request_id = request_id

    @property
    def status(self) -> int:
        return STATUS[self.code]
