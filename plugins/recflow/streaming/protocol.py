"""Score requests, answers and dead letters: one place that decides what is valid and how it is written.

A request is a JSON object ``{request_id, user_id, k?, item_ids?, sent_at_ms?}``. Every way a record can
be wrong has a reason code (:class:`Reason`); a rejected record goes to the dead-letter topic with its
original bytes, key, source partition and offset in headers (the Kafka Connect convention, so the value
stays byte-for-byte the caller's), and a caller that can be identified (a Kafka key or a readable
``request_id``) also gets an error answer on the results topic carrying both.

Why validation is this strict: an answer is matched by ``request_id`` or key, so an id that cannot be
written back as UTF-8 (a lone surrogate), an empty id or a huge one would make the caller's matching lie.

Why two parsers: ``msgspec`` decodes and type-checks a well-formed request in C (about 5x faster than
``json.loads`` plus the checks in Python; parsing was a third of the scorer's per-request cost). It is
stricter than ``json`` (no BOM, NaN or lone surrogates), so whatever it refuses or our checks refuse
goes through the reference parser, which decides the reason: both paths give one verdict per input.
Answers are encoded by ``msgspec`` too (compact UTF-8 JSON, the same fields and order).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec

MAX_K = 100
MAX_ITEM_IDS = 1000
MAX_ID_CHARS = 256
#: Requests are ~100 bytes; anything this large is a mistake or an attack, not a request.
MAX_REQUEST_BYTES = 64 * 1024
#: A key is echoed on the answer; one this large would make the answer itself unwritable.
MAX_KEY_BYTES = 16 * 1024
#: The largest dead letter written whole (key + value + headers): the scorer producer's
#: ``message.max.bytes`` (4 MiB) less room for the record's framing. A larger record (a compressed
#: request can decompress to any size) is dead-lettered by reference: see :func:`dead_letter_record`.
MAX_DEAD_LETTER_BYTES = (4 << 20) - 64 * 1024
DEFAULT_K = 10

Headers = list[tuple[str, bytes]]
_ENCODER = msgspec.json.Encoder()


class Reason(StrEnum):
    """Why a record went to the dead-letter topic (the ``recflow.reason`` header)."""

    NULL_VALUE = "null_value"
    OVERSIZE = "oversize"
    UNDECODABLE = "undecodable"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_REQUEST_ID = "invalid_request_id"
    INVALID_USER_ID = "invalid_user_id"
    K_OUT_OF_RANGE = "k_out_of_range"
    TOO_MANY_ITEM_IDS = "too_many_item_ids"
    SCORING_FAILED = "scoring_failed"
    INTERNAL_ERROR = "internal_error"


class Request(NamedTuple):
    """A valid request, with where it came from (for the commit and for reconciliation).

    A named tuple rather than a frozen dataclass: one is built per request, and a frozen dataclass's
    ``__init__`` (one ``object.__setattr__`` per field) cost several times as much.
    """

    request_id: str
    user_id: str
    k: int
    item_ids: tuple[str, ...] | None
    sent_at_ms: int | None
    key: bytes | None
    partition: int
    offset: int
    timestamp_ms: int
    #: The caller's bytes, kept for the dead-letter topic should scoring fail later.
    raw: bytes = b""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that cannot be answered; ``request_id`` is set only when it can be written back."""

    reason: Reason
    detail: str
    request_id: str | None
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int

    @property
    def identifiable(self) -> bool:
        """Whether an error answer can reach the caller: a key small enough to echo, or a readable id."""
        return answer_key(self.key) is not None or self.request_id is not None


class _Invalid(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _valid_id(value: Any, field: str, reason: Reason) -> str:
    if not isinstance(value, str):
        raise _Invalid(Reason.WRONG_TYPE, f"{field} must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise _Invalid(reason, f"{field} must have 1..{MAX_ID_CHARS} characters, got {len(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid(reason, f"{field} is not valid Unicode (lone surrogate)") from None
    return value


def _writable_id(value: Any) -> str | None:
    """The request_id if it can be echoed back safely, else None."""
    try:
        return _valid_id(value, "request_id", Reason.INVALID_REQUEST_ID)
    except _Invalid:
        return None


class _Doc(msgspec.Struct, kw_only=True):
    """The fast parser's view of a request: exact JSON types, unknown fields ignored (as ``json``)."""

    request_id: str | msgspec.UnsetType = msgspec.UNSET
    user_id: str
    k: int = DEFAULT_K
    item_ids: list[str] | None = None
    sent_at_ms: int | None = None


_DECODER = msgspec.json.Decoder(_Doc)


def _fine_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_CHARS and value.isascii()


def parse_request(
    value: bytes | None,
    key: bytes | None,
    *,
    partition: int,
    offset: int,
    timestamp_ms: int,
    default_request_id: str | None = None,
) -> Request | Rejection:
    """Validate one record; never raises for any input bytes.

    ``default_request_id`` stands in for a missing ``request_id`` (the HTTP API makes one up: an HTTP
    caller matches its answer by its connection, not by id); Kafka requests must carry their own.
    """
    if value is not None and len(value) <= MAX_REQUEST_BYTES and (key is None or len(key) <= MAX_KEY_BYTES):
        try:
            doc = _DECODER.decode(value)
        except msgspec.MsgspecError:
            pass
        else:
            items = doc.item_ids
            request_id = default_request_id if isinstance(doc.request_id, msgspec.UnsetType) else doc.request_id
            if (
                request_id is not None
                and _fine_id(request_id)
                and _fine_id(doc.user_id)
                and 1 <= doc.k <= MAX_K
                and (items is None or (0 < len(items) <= MAX_ITEM_IDS and all(items)))
            ):
                item_ids = None if items is None else tuple(items)
                return Request(
                    request_id,
                    doc.user_id,
                    doc.k,
                    item_ids,
                    doc.sent_at_ms,
                    key,
                    partition,
                    offset,
                    timestamp_ms,
                    value,
                )
    return _parse_reference(
        value, key, partition=partition, offset=offset, timestamp_ms=timestamp_ms, default_request_id=default_request_id
    )


def _parse_reference(
    value: bytes | None,
    key: bytes | None,
    *,
    partition: int,
    offset: int,
    timestamp_ms: int,
    default_request_id: str | None = None,
) -> Request | Rejection:
    """The parser that names the reason for every way a record can be wrong (``json`` and Python checks)."""
    doc: Any = None
    try:
        if value is None:
            raise _Invalid(Reason.NULL_VALUE, "the record has no value" + (" (key only)" if key else ""))
        if len(value) > MAX_REQUEST_BYTES:
            raise _Invalid(Reason.OVERSIZE, f"value has {len(value)} bytes, the limit is {MAX_REQUEST_BYTES}")
        try:
            doc = json.loads(value)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _Invalid(Reason.UNDECODABLE, f"value is not UTF-8 JSON: {exc}") from None
    except _Invalid as bad:
        return Rejection(bad.reason, bad.detail, None, key, value, partition, offset)
    return request_from_document(
        doc,
        key=key,
        raw=value,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        default_request_id=default_request_id,
    )


def request_from_document(
    doc: Any,
    *,
    key: bytes | None = None,
    raw: bytes | None = None,
    partition: int = -1,
    offset: int = -1,
    timestamp_ms: int = 0,
    default_request_id: str | None = None,
) -> Request | Rejection:
    """Apply the request rules to an already decoded JSON document (the reference checks, one per reason).

    Public for the HTTP API's Open Inference Protocol path, which builds one document per user of an
    ``infer`` call, so its users and ``k`` obey exactly the rules of a Kafka request.
    """
    value = raw or b""
    try:
        if not isinstance(doc, dict):
            raise _Invalid(Reason.NOT_AN_OBJECT, f"request must be a JSON object, got {type(doc).__name__}")
        if key is not None and len(key) > MAX_KEY_BYTES:  # after parsing: the error answer can carry the id
            raise _Invalid(Reason.OVERSIZE, f"key has {len(key)} bytes, the limit is {MAX_KEY_BYTES}")
        required = ("user_id",) if default_request_id is not None else ("request_id", "user_id")
        missing = [f for f in required if f not in doc]
        if missing:
            raise _Invalid(Reason.MISSING_FIELD, f"missing field(s): {', '.join(missing)}")
        request_id = _valid_id(doc.get("request_id", default_request_id), "request_id", Reason.INVALID_REQUEST_ID)
        user_id = _valid_id(doc["user_id"], "user_id", Reason.INVALID_USER_ID)
        k = doc.get("k", DEFAULT_K)
        if not isinstance(k, int) or isinstance(k, bool):
            raise _Invalid(Reason.WRONG_TYPE, f"k must be an integer, got {type(k).__name__}")
        if not 1 <= k <= MAX_K:
            raise _Invalid(Reason.K_OUT_OF_RANGE, f"k must be in 1..{MAX_K}, got {k}")
        item_ids = _item_ids(doc.get("item_ids"))
        sent_at = doc.get("sent_at_ms")
        if sent_at is not None and (not isinstance(sent_at, int) or isinstance(sent_at, bool)):
            raise _Invalid(Reason.WRONG_TYPE, f"sent_at_ms must be an integer, got {type(sent_at).__name__}")
    except _Invalid as bad:
        request_id_or_none = _writable_id(doc.get("request_id")) if isinstance(doc, dict) else None
        return Rejection(bad.reason, bad.detail, request_id_or_none, key, raw, partition, offset)
    return Request(request_id, user_id, k, item_ids, sent_at, key, partition, offset, timestamp_ms, value)


def _item_ids(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _Invalid(Reason.WRONG_TYPE, f"item_ids must be a list of strings, got {type(raw).__name__}")
    if len(raw) > MAX_ITEM_IDS:
        raise _Invalid(Reason.TOO_MANY_ITEM_IDS, f"item_ids has {len(raw)} entries, the limit is {MAX_ITEM_IDS}")
    if not raw:
        raise _Invalid(Reason.WRONG_TYPE, "item_ids must not be empty (omit it to rank the whole catalog)")
    for item in raw:
        if not isinstance(item, str) or not item:
            raise _Invalid(Reason.WRONG_TYPE, "item_ids must be non-empty strings")
    return tuple(raw)


def answer_body(
    request: Request,
    *,
    items: list[str],
    scores: list[float | None],
    source: str,
    model_version: str,
    propensities: list[float | None] | None = None,
    offers: list[dict[str, Any]] | None = None,
    catalog_digest: str | None = None,
    explore: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The fields every answer to a valid request carries, on Kafka (:func:`encode_answer`) and over HTTP
    (``recflow serve``'s ``/v1/recommend``), built in this one place so a field added for one path
    cannot be missing from the other. ``source`` is ``model`` or ``fallback``; ``propensities``: the
    calibrated P(interaction) per item, null where unknown; ``offers``: the eligible offers with their
    rewards, empty without an offer catalog, whose digest ``catalog_digest`` names. When some positions
    are exploration slots, ``explore`` lists them (``{"rank", "item_id", "logging_propensity"}``, see
    :mod:`recflow.scoring.explore`); answers without any have no ``explore`` field."""
    body: dict[str, Any] = {
        "request_id": request.request_id,
        "user_id": request.user_id,
        "items": items,
        "scores": scores,
        "propensities": [None] * len(items) if propensities is None else propensities,
        "offers": offers or [],
        "catalog_digest": catalog_digest,
        "model_version": model_version,
        "source": source,
    }
    if explore:
        body["explore"] = explore
    return body


def encode_answer(
    request: Request,
    *,
    items: list[str],
    scores: list[float | None],
    source: str,
    model_version: str,
    timing: dict[str, Any],
    propensities: list[float | None] | None = None,
    offers: list[dict[str, Any]] | None = None,
    catalog_digest: str | None = None,
    explore: list[dict[str, Any]] | None = None,
) -> bytes:
    """The Kafka answer to a valid request: :func:`answer_body`, plus ``error: null``, where the request
    was read (partition, offset) and the scorer's ``timing`` (``explore`` stays the last field)."""
    answer = answer_body(request, items=items, scores=scores, source=source, model_version=model_version,
                         propensities=propensities, offers=offers, catalog_digest=catalog_digest)  # fmt: skip
    answer["error"] = None
    answer["request"] = {"partition": request.partition, "offset": request.offset}
    answer["timing"] = {"sent_at_ms": request.sent_at_ms, "record_timestamp_ms": request.timestamp_ms, **timing}
    if explore:
        answer["explore"] = explore
    return _ENCODER.encode(answer)


def encode_error_answer(rejection: Rejection, *, model_version: str | None, timing: dict[str, Any]) -> bytes:
    """The error answer for an identifiable caller whose request went to the dead-letter topic."""
    return _ENCODER.encode(
        {
            "request_id": rejection.request_id,
            "items": [],
            "scores": [],
            "propensities": [],
            "model_version": model_version,
            "source": "error",
            # details quote exceptions; whatever they quote must not make the error answer unwritable
            "error": {"code": str(rejection.reason), "message": _writable(rejection.detail)},
            "request": {"partition": rejection.partition, "offset": rejection.offset},
            "timing": timing,
        }
    )


def _writable(text: str) -> str:
    return text if text.isascii() else text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def dlq_headers(rejection: Rejection, *, source_topic: str, model_version: str | None) -> Headers:
    """Where the record came from and why it was rejected; the value and key stay the caller's bytes."""
    headers: Headers = [
        ("recflow.reason", str(rejection.reason).encode()),
        ("recflow.detail", rejection.detail.encode("utf-8", errors="backslashreplace")[:2000]),
        ("recflow.source.topic", source_topic.encode()),
        ("recflow.source.partition", str(rejection.partition).encode()),
        ("recflow.source.offset", str(rejection.offset).encode()),
    ]
    if rejection.request_id is not None:
        headers.append(("recflow.request_id", rejection.request_id.encode()))
    if model_version is not None:
        headers.append(("recflow.model_version", model_version.encode()))
    return headers


def answer_key(key: bytes | None) -> bytes | None:
    """The key an (error) answer can carry: the caller's, unless it is too large to write back."""
    return key if key is None or len(key) <= MAX_KEY_BYTES else None


def dead_letter_record(
    key: bytes | None, value: bytes | None, headers: Headers, *, max_bytes: int = MAX_DEAD_LETTER_BYTES
) -> tuple[bytes | None, bytes | None, Headers]:
    """The dead letter's key, value and headers: the caller's bytes whole when they fit, else by reference.

    Why by reference: a record the broker accepted compressed can decompress to more than any producer
    may send. Such a dead letter drops the value (then the key, if still too large) and says so in
    headers: ``recflow.value.omitted`` (``too_large``), the omitted part's size and sha256. The source
    topic, partition and offset headers say where the original still is (for the topic's retention), so
    the record is accounted for and nothing is changed silently.
    """
    size = len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
    if size <= max_bytes:
        return key, value, headers
    extra: Headers = []
    for part, raw in (("value", value), ("key", key)):
        if raw is None or size <= max_bytes:
            continue
        extra += [
            (f"recflow.{part}.omitted", b"too_large"),
            (f"recflow.{part}.bytes", str(len(raw)).encode()),
            (f"recflow.{part}.sha256", hashlib.sha256(raw).hexdigest().encode()),
        ]
        size -= len(raw)
        if part == "value":
            value = None
        else:
            key = None
    return key, value, headers + extra


def header_map(headers: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """A DLQ record's headers as text (for reconciliation and tests)."""
    return {name: (raw or b"").decode("utf-8", errors="replace") for name, raw in headers or []}
