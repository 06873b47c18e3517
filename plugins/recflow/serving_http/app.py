"""The ASGI app: routes, body limits, error answers; the scoring is the core's, the model the follower's.

Why Starlette and msgspec: ``bench/results/serving_stack.md`` compares the stacks on this app; Starlette
adds routing and lifespan with little overhead, msgspec encodes the answers in C (as the Kafka scorer
does). Handlers score on the event-loop thread, ``/v1/recommend`` in micro-batches (:mod:`.batcher`): a
scoring call is about a millisecond of NumPy at 10^4 items, a thread pool would only add hand-offs, and
a worker process per core is the parallelism.

Errors: every failure is an :class:`~recflow.serving_http.errors.ApiError` with the protocol's code and
a JSON body; anything unexpected is logged with its traceback and answered as ``internal_error`` with
no detail.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from recflow.config.settings import load_settings
from recflow.serving_http import oip
from recflow.serving_http.batcher import Batcher
from recflow.serving_http.champion import ServingChampion
from recflow.serving_http.errors import ApiError, HttpCode
from recflow.serving_http.metrics import CONTENT_TYPE, HttpMetrics
from recflow.streaming.answers import Scored, catalog_from_env, eligible_offers, score_requests
from recflow.streaming.follower import ServingModel
from recflow.streaming.protocol import MAX_REQUEST_BYTES, Reason, Rejection, Request, answer_body, parse_request

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
JSON = "application/json"
Handler = Callable[[HttpRequest], Awaitable[Response]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type=JSON)


def _error_body(error: ApiError, *, oip_style: bool) -> dict[str, Any]:
    """v1: the Kafka error answer's ``error`` object; OIP: its ``{"error": string}`` plus the code."""
    if oip_style:
        return {"error": error.message, "code": error.code}
    return {"request_id": error.request_id, "error": {"code": error.code, "message": error.message}}


async def read_body(request: HttpRequest, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The body, refused beyond ``limit`` bytes without reading the rest; only JSON is accepted."""
    media_type = request.headers.get("content-type", JSON).split(";", 1)[0].strip().lower()
    if media_type != JSON:
        raise ApiError(HttpCode.UNSUPPORTED_MEDIA_TYPE, f"the body must be {JSON}, got {media_type}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(Reason.OVERSIZE, f"body has {declared} bytes, the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(Reason.OVERSIZE, f"body has more than {limit} bytes, the limit")
        chunks.append(chunk)
    return b"".join(chunks)


def score_all(model: ServingModel, requests: list[Request]) -> list[Scored]:
    """The core's answers to one ``infer`` call's users; a failure is logged and answered with a code only."""
    try:
        return score_requests(model.recommender, requests, model.explorer)
    except Exception:
        log.exception("scoring %d request(s) with %s failed", len(requests), model.version)
        raise ApiError(
            Reason.SCORING_FAILED, "scoring failed; the server log has the details", request_id=requests[0].request_id
        ) from None


class Api:
    """The endpoints of one worker process, around its :class:`ServingChampion` and metrics."""

    def __init__(self, champion: ServingChampion, metrics: HttpMetrics) -> None:
        self.champion = champion
        self.metrics = metrics
        self.batcher = Batcher(self._model)
        #: With an offer catalog (``RECFLOW_OFFERS``), answers carry their eligible offers, as Kafka answers do.
        self.catalog = catalog_from_env()

    def _model(self) -> ServingModel:
        before = self.champion.swaps
        model = self.champion.model()
        if self.champion.swaps != before:
            self.metrics.swaps.inc()
        self.metrics.set_model(model.version)
        return model

    def endpoint(self, name: str, handler: Handler, *, oip_style: bool = False) -> Handler:
        """``handler`` with its errors answered as JSON and its status and latency counted."""

        async def run(request: HttpRequest) -> Response:
            began = time.perf_counter()
            try:
                response = await handler(request)
            except ApiError as error:
                response = _json(_error_body(error, oip_style=oip_style), error.status)
            except Exception:
                log.exception("%s %s failed", request.method, request.url.path)
                internal = ApiError(Reason.INTERNAL_ERROR, "internal error; the server log has the details")
                response = _json(_error_body(internal, oip_style=oip_style), internal.status)
            self.metrics.requests.labels(endpoint=name, status=str(response.status_code)).inc()
            self.metrics.latency.labels(endpoint=name).observe(time.perf_counter() - began)
            return response

        return run

    # ------------------------------------------------------------------ v1
    async def recommend(self, request: HttpRequest) -> Response:
        body = await read_body(request)
        if not body:
            raise ApiError(Reason.NULL_VALUE, "the request has no body")
        parsed = parse_request(
            body,
            None,
            partition=-1,
            offset=-1,
            timestamp_ms=time.time_ns() // 1_000_000,
            default_request_id=uuid.uuid4().hex,
        )
        if isinstance(parsed, Rejection):
            raise ApiError(parsed.reason, parsed.detail, request_id=parsed.request_id)
        model, answer = await self.batcher.score(parsed)
        reply = answer_body(
            parsed,
            items=answer.items,
            scores=answer.scores,
            source=answer.source,
            model_version=model.version,
            propensities=answer.propensities,
            offers=None if self.catalog is None else eligible_offers(answer, self.catalog),
            catalog_digest=None if self.catalog is None else self.catalog.digest,
            explore=answer.explore,
        )
        reply["model_digest"] = model.digest  # HTTP callers have no model-update topic to learn it from
        return _json(reply)

    # ------------------------------------------------------------------ Open Inference Protocol v2
    async def live(self, request: HttpRequest) -> Response:
        return _json({"live": True})

    async def ready(self, request: HttpRequest) -> Response:
        reason = self.champion.not_ready_reason()
        if reason is not None:
            raise ApiError(HttpCode.NOT_READY, reason)
        return _json({"ready": True})

    async def model_metadata(self, request: HttpRequest) -> Response:
        return _json(oip.model_metadata(self._model()))

    async def infer(self, request: HttpRequest) -> Response:
        call_id, requests = oip.decode_infer(await read_body(request), uuid.uuid4().hex)
        model = self._model()
        return _json(oip.encode_infer(call_id, model, requests, score_all(model, requests)))

    async def prometheus(self, request: HttpRequest) -> Response:
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    def routes(self) -> list[Route]:
        e = self.endpoint
        return [
            Route("/v1/recommend", e("recommend", self.recommend), methods=["POST"]),
            Route("/v2/health/live", e("live", self.live, oip_style=True), methods=["GET"]),
            Route("/v2/health/ready", e("ready", self.ready, oip_style=True), methods=["GET"]),
            Route("/v2/models/recflow", e("model", self.model_metadata, oip_style=True), methods=["GET"]),
            Route("/v2/models/recflow/ready", e("model_ready", self.ready, oip_style=True), methods=["GET"]),
            Route("/v2/models/recflow/infer", e("infer", self.infer, oip_style=True), methods=["POST"]),
            Route("/metrics", e("metrics", self.prometheus), methods=["GET"]),
        ]


def build_app(champion: ServingChampion, metrics: HttpMetrics | None = None) -> Starlette:
    """The app around ``champion``; its lifespan starts following the champion and stops it at shutdown."""
    api = Api(champion, metrics or HttpMetrics())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        champion.start()
        try:
            yield
        finally:
            champion.stop()

    async def unmatched(request: HttpRequest, exc: Exception) -> Response:
        """404 and 405 from the router, as JSON with a code like every other error."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: HttpCode.NOT_FOUND, 405: HttpCode.METHOD_NOT_ALLOWED}.get(status, Reason.INTERNAL_ERROR)
        error = ApiError(code, f"{request.method} {request.url.path}: {code}")
        api.metrics.requests.labels(endpoint="unmatched", status=str(error.status)).inc()
        return _json(_error_body(error, oip_style=request.url.path.startswith("/v2/")), error.status)

    return Starlette(routes=api.routes(), lifespan=lifespan, exception_handlers={HTTPException: unmatched})


def create_app() -> Starlette:
    """The app factory the server's workers call (``recflow.serving_http.app:create_app``).

    ``RECFLOW_SERVE_CHECK_INTERVAL``: seconds between the follower's registry checks (default 30; a
    model-update event triggers one at once).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    interval = float(os.environ.get("RECFLOW_SERVE_CHECK_INTERVAL", "30"))
    return build_app(ServingChampion.from_settings(load_settings(), check_interval_s=interval))
