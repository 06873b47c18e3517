"""The KServe Open Inference Protocol v2 (REST) view of the recommender: metadata, ``infer`` in and out.

One model, ``recflow``. ``infer`` takes a ``user_id`` input (``BYTES``, shape ``[n]``) and an optional
``k`` (``INT32``/``INT64``, shape ``[1]``); it returns ``items`` (``BYTES``) and ``scores`` (``FP32``),
both shape ``[n, k]`` in row-major order, ``counts`` (``INT32``, ``[n]``: how many of a row's ``k`` are
real; a user may have fewer unseen items than ``k``, and the padding, ``""`` and ``0.0``, is not an
answer) and ``source`` (``BYTES``, ``[n]``: model or fallback). The model version and manifest digest
are in the answer's ``model_version`` and ``parameters.model_digest``.

Every user of a call obeys the Kafka protocol's request rules, checked by the same function
(:func:`recflow.streaming.protocol.request_from_document`), so the reason codes are the same too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from recflow.serving_http.errors import ApiError
from recflow.streaming.answers import Scored
from recflow.streaming.follower import ServingModel
from recflow.streaming.protocol import DEFAULT_K, Reason, Rejection, Request, request_from_document

MODEL_NAME = "recflow"
K_TYPES = ("INT32", "INT64")


class InferInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(msgspec.Struct):
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] | None = None


_DECODER = msgspec.json.Decoder(InferRequest)


def decode_infer(body: bytes, default_id: str) -> tuple[str, list[Request]]:
    """The call's id and one request per user; an :class:`ApiError` with the protocol's reason otherwise."""
    if not body:
        raise ApiError(Reason.NULL_VALUE, "the request has no body")
    try:
        call = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        reason = Reason.MISSING_FIELD if "missing required field" in str(exc) else Reason.WRONG_TYPE
        raise ApiError(reason, f"not an inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(Reason.UNDECODABLE, f"body is not UTF-8 JSON: {exc}") from None
    call_id = call.id if call.id is not None else default_id
    inputs = {i.name: i for i in call.inputs}
    unknown = sorted(set(inputs) - {"user_id", "k"})
    if unknown:
        raise ApiError(Reason.WRONG_TYPE, f"unknown input(s) {unknown}: the inputs are user_id and k")
    if "user_id" not in inputs:
        raise ApiError(Reason.MISSING_FIELD, "missing input user_id")
    users = _tensor(inputs["user_id"], ("BYTES",))
    k: Any = DEFAULT_K
    if "k" in inputs:
        values = _tensor(inputs["k"], K_TYPES)
        if len(values) != 1:
            raise ApiError(Reason.WRONG_TYPE, f"input k must have shape [1], got {inputs['k'].shape}")
        k = values[0]
    requests = []
    for n, user in enumerate(users):
        parsed = request_from_document({"request_id": f"{call_id}:{n}", "user_id": user, "k": k})
        if isinstance(parsed, Rejection):
            raise ApiError(parsed.reason, f"user_id[{n}]: {parsed.detail}", request_id=call_id)
        requests.append(parsed)
    return call_id, requests


def _tensor(tensor: InferInput, datatypes: Sequence[str]) -> list[Any]:
    """A tensor's flat data after checking its datatype and that its shape matches the data."""
    if tensor.datatype not in datatypes:
        wanted = " or ".join(datatypes)
        raise ApiError(Reason.WRONG_TYPE, f"input {tensor.name} must be {wanted}, got {tensor.datatype}")
    size = 1
    for dim in tensor.shape:
        size *= dim
    if any(dim < 0 for dim in tensor.shape) or size != len(tensor.data) or not tensor.data:
        raise ApiError(
            Reason.WRONG_TYPE,
            f"input {tensor.name} has shape {tensor.shape} but {len(tensor.data)} values (flat data, at least one)",
        )
    return tensor.data


def encode_infer(
    call_id: str, model: ServingModel, requests: Sequence[Request], answers: Sequence[Scored]
) -> dict[str, Any]:
    """The OIP answer: ``items``/``scores`` padded to ``[n, k]``, ``counts`` saying where the padding starts.
    An explored item outside the model's catalog has no score: ``null`` in the FP32 data, as in the
    answers (never a made-up number)."""
    k = max(r.k for r in requests)
    items: list[str] = []
    scores: list[float | None] = []
    for answer in answers:
        pad = k - len(answer.items)
        items += [*answer.items, *[""] * pad]
        scores += [*answer.scores, *[0.0] * pad]
    n = len(requests)
    return {
        "model_name": MODEL_NAME,
        "model_version": model.version,
        "id": call_id,
        "parameters": {"model_digest": model.digest},
        "outputs": [
            {"name": "items", "datatype": "BYTES", "shape": [n, k], "data": items},
            {"name": "scores", "datatype": "FP32", "shape": [n, k], "data": scores},
            {"name": "counts", "datatype": "INT32", "shape": [n], "data": [len(a.items) for a in answers]},
            {"name": "source", "datatype": "BYTES", "shape": [n], "data": [a.source for a in answers]},
        ],
    }


def model_metadata(model: ServingModel) -> dict[str, Any]:
    """``GET /v2/models/recflow``: the served version and digest, the inputs and the outputs."""
    return {
        "name": MODEL_NAME,
        "versions": [model.version],
        "platform": "recflow",
        "parameters": {"model_digest": model.digest},
        "inputs": [
            {"name": "user_id", "datatype": "BYTES", "shape": [-1]},
            {"name": "k", "datatype": "INT32", "shape": [1]},
        ],
        "outputs": [
            {"name": "items", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "counts", "datatype": "INT32", "shape": [-1]},
            {"name": "source", "datatype": "BYTES", "shape": [-1]},
        ],
    }
