"""Request validation and the answer / dead-letter formats of the streaming scorer (no broker)."""

from __future__ import annotations

import hashlib
import json

import pytest

from recflow.streaming.protocol import (
    MAX_ITEM_IDS,
    MAX_KEY_BYTES,
    MAX_REQUEST_BYTES,
    Reason,
    Rejection,
    Request,
    _parse_reference,
    answer_key,
    dead_letter_record,
    dlq_headers,
    encode_answer,
    encode_error_answer,
    header_map,
    parse_request,
)


def parse(value: bytes | None, key: bytes | None = b"key") -> Request | Rejection:
    return parse_request(value, key, partition=3, offset=42, timestamp_ms=1000)


def test_a_valid_request_keeps_its_fields_and_origin() -> None:
    got = parse(b'{"request_id": "r1", "user_id": "u1", "k": 5, "item_ids": ["a", "b"], "sent_at_ms": 7}')
    assert isinstance(got, Request)
    assert (got.request_id, got.user_id, got.k, got.item_ids, got.sent_at_ms) == ("r1", "u1", 5, ("a", "b"), 7)
    assert (got.key, got.partition, got.offset) == (b"key", 3, 42)
    default = parse(b'{"request_id": "r1", "user_id": "u1"}')
    assert isinstance(default, Request) and default.k == 10 and default.item_ids is None


@pytest.mark.parametrize(
    ("value", "reason", "request_id"),
    [
        (None, Reason.NULL_VALUE, None),
        (b"x" * (MAX_REQUEST_BYTES + 1), Reason.OVERSIZE, None),
        (b"\xff", Reason.UNDECODABLE, None),
        (b"{", Reason.UNDECODABLE, None),
        (b"null", Reason.NOT_AN_OBJECT, None),
        (b'"text"', Reason.NOT_AN_OBJECT, None),
        (b'{"request_id": "\\ud800", "user_id": "u"}', Reason.INVALID_REQUEST_ID, None),
        (b'{"request_id": "r", "user_id": "\\udfff"}', Reason.INVALID_USER_ID, "r"),
        (b'{"request_id": "", "user_id": "u"}', Reason.INVALID_REQUEST_ID, None),
        (b'{"request_id": 5, "user_id": "u"}', Reason.WRONG_TYPE, None),
        (b'{"user_id": "u"}', Reason.MISSING_FIELD, None),
        (b'{"request_id": "r"}', Reason.MISSING_FIELD, "r"),
        (b'{"request_id": "r", "user_id": "u", "k": 1.5}', Reason.WRONG_TYPE, "r"),
        (b'{"request_id": "r", "user_id": "u", "k": false}', Reason.WRONG_TYPE, "r"),
        (b'{"request_id": "r", "user_id": "u", "k": 0}', Reason.K_OUT_OF_RANGE, "r"),
        (b'{"request_id": "r", "user_id": "u", "k": 101}', Reason.K_OUT_OF_RANGE, "r"),
        (b'{"request_id": "r", "user_id": "u", "item_ids": []}', Reason.WRONG_TYPE, "r"),
        (b'{"request_id": "r", "user_id": "u", "item_ids": [1]}', Reason.WRONG_TYPE, "r"),
        (b'{"request_id": "r", "user_id": "u", "sent_at_ms": "now"}', Reason.WRONG_TYPE, "r"),
        (
            json.dumps({"request_id": "r", "user_id": "u", "item_ids": ["i"] * (MAX_ITEM_IDS + 1)}).encode(),
            Reason.TOO_MANY_ITEM_IDS,
            "r",
        ),
    ],
)
def test_every_bad_request_has_a_reason_and_keeps_its_bytes(
    value: bytes | None, reason: Reason, request_id: str | None
) -> None:
    got = parse(value)
    assert isinstance(got, Rejection)
    assert got.reason == reason, got.detail
    assert got.request_id == request_id
    assert got.value == value and got.key == b"key" and (got.partition, got.offset) == (3, 42)


@pytest.mark.parametrize(
    "value",
    [
        b'{"request_id": "r", "user_id": "u", "k": 3, "item_ids": ["a", "b"], "sent_at_ms": 7}',
        b' {"user_id": "u", "request_id": "r", "extra": {"x": [1]}}\n',
        b'{"request_id": "a", "request_id": "b", "user_id": "u"}',  # duplicate key: the last wins in both
        b'\xef\xbb\xbf{"request_id": "r", "user_id": "u"}',  # a BOM: json accepts it, msgspec does not
        '{"request_id": "r\u00e9", "user_id": "\u7528\u6237"}'.encode(),  # non-ASCII ids
        b'{"request_id": "r", "user_id": "u", "k": NaN}',
        b'{"request_id": "r", "user_id": "u", "k": 1e2}',
        b'{"request_id": "r", "user_id": "u", "k": 99999999999999999999999}',
        b'{"request_id": "r", "user_id": "u", "k": null}',
        b'{"request_id": "r", "user_id": "u", "item_ids": null, "sent_at_ms": null}',
        b'{"request_id": "r", "user_id": "u", "item_ids": ["a", ""]}',
        b'{"request_id": "r", "user_id": "u", "sent_at_ms": true}',
        ('{"request_id": "' + "x" * 257 + '", "user_id": "u"}').encode(),
        '{"request_id": "r", "user_id": "u"}'.encode("utf-16"),  # json.loads detects UTF-16
        b'{"request_id": "r", "user_id": "u"} trailing',
        b"[]",
    ],
)
def test_the_fast_parser_and_the_reference_parser_give_one_verdict(value: bytes) -> None:
    """``parse_request`` decodes with msgspec first; on every input it must agree with the reference."""
    fast = parse_request(value, b"key", partition=3, offset=42, timestamp_ms=1000)
    reference = _parse_reference(value, b"key", partition=3, offset=42, timestamp_ms=1000)
    if isinstance(reference, Rejection):
        assert isinstance(fast, Rejection)
        assert (fast.reason, fast.request_id, fast.value) == (reference.reason, reference.request_id, value)
    else:
        assert fast == reference


def test_a_rejection_without_key_or_readable_id_is_not_identifiable() -> None:
    got = parse(b"{", key=None)
    assert isinstance(got, Rejection) and not got.identifiable
    assert isinstance(parse(b"{"), Rejection) and parse(b"{").identifiable  # type: ignore[union-attr]


def test_answers_and_dead_letters_are_writable_for_any_input() -> None:
    req = parse(b'{"request_id": "r1", "user_id": "u1", "k": 2}')
    assert isinstance(req, Request)
    doc = json.loads(
        encode_answer(req, items=["a", "b"], scores=[0.5, 0.25], source="model", model_version="v1", timing={})
    )
    assert doc["request_id"] == "r1" and doc["items"] == ["a", "b"] and doc["source"] == "model"
    assert doc["request"] == {"partition": 3, "offset": 42} and doc["error"] is None
    bad = parse(b'{"request_id": "\\ud800", "user_id": "u"}')
    assert isinstance(bad, Rejection)
    error = json.loads(encode_error_answer(bad, model_version="v1", timing={}))
    assert error["error"]["code"] == "invalid_request_id" and error["request_id"] is None
    headers = header_map(dlq_headers(bad, source_topic="t", model_version="v1"))  # type: ignore[arg-type]
    assert headers["recflow.reason"] == "invalid_request_id" and headers["recflow.source.offset"] == "42"


def test_an_answer_lists_its_exploration_slots_and_others_keep_their_fields() -> None:
    """Exploration slots (recflow.scoring.explore) are listed under ``explore``; answers without any are
    byte-for-byte what they were."""
    import json as json_module

    from recflow.streaming.protocol import Request, encode_answer, parse_request

    request = parse_request(b'{"request_id": "r1", "user_id": "u1"}', None, partition=0, offset=3, timestamp_ms=5)
    assert isinstance(request, Request)
    args = {"items": ["a", "b"], "scores": [0.5, 0.1], "source": "model", "model_version": "v", "timing": {}}
    slots = [{"rank": 2, "item_id": "b", "logging_propensity": 0.25}]
    plain = json_module.loads(encode_answer(request, **args))
    explored = json_module.loads(encode_answer(request, **args, explore=slots))
    assert "explore" not in plain and explored["explore"] == slots
    assert encode_answer(request, **args, explore=[]) == encode_answer(request, **args)


def test_an_http_caller_may_omit_the_request_id_a_kafka_caller_may_not() -> None:
    body = b'{"user_id": "u1", "k": 3}'
    assert isinstance(parse_request(body, None, partition=0, offset=0, timestamp_ms=0), Rejection)
    got = parse_request(body, None, partition=0, offset=0, timestamp_ms=0, default_request_id="made-up")
    assert isinstance(got, Request) and got.request_id == "made-up" and got.k == 3
    null_id = parse_request(
        b'{"request_id": null, "user_id": "u1"}', None, partition=0, offset=0, timestamp_ms=0, default_request_id="x"
    )
    assert isinstance(null_id, Rejection) and null_id.reason == Reason.WRONG_TYPE  # null is not "absent"


def test_a_key_too_large_to_echo_is_oversize_and_its_error_answer_goes_by_request_id() -> None:
    got = parse_request(b'{"request_id": "r", "user_id": "u"}', b"k" * (MAX_KEY_BYTES + 1), partition=0, offset=0,
                        timestamp_ms=0)  # fmt: skip
    assert isinstance(got, Rejection) and got.reason == Reason.OVERSIZE and got.request_id == "r"
    assert got.identifiable and answer_key(got.key) is None


def test_dead_letters_are_whole_when_they_fit_else_by_reference_with_size_and_digest() -> None:
    headers = [("recflow.reason", b"oversize")]
    assert dead_letter_record(b"k", b"v" * 10, headers, max_bytes=100) == (b"k", b"v" * 10, headers)
    key, value, out = dead_letter_record(b"k", b"v" * 1000, headers, max_bytes=100)
    extra = header_map(out)
    assert (key, value) == (b"k", None) and extra["recflow.value.omitted"] == "too_large"
    assert extra["recflow.value.bytes"] == "1000"
    assert extra["recflow.value.sha256"] == hashlib.sha256(b"v" * 1000).hexdigest()
    key, value, out = dead_letter_record(b"k" * 500, b"v" * 1000, headers, max_bytes=100)
    assert (key, value) == (None, None) and header_map(out)["recflow.key.bytes"] == "500"
