"""Score the requests that arrive together in one call into the core, as the Kafka scorer scores a poll.

Why: one request's call into the core pays a fixed cost (id lookups, NumPy set-up) several times the
cost of its matrix row; under load, requests wait for the event loop anyway. Each handler queues its
request and awaits a future; the first request of a batch schedules one flush with ``call_soon``, which
runs after every handler that is already runnable has queued its own. At low rates a batch is one
request and nothing waits; under load, batches grow to what arrived meanwhile (up to ``max_batch``).

The batch is scored by :func:`recflow.streaming.replies.score_poll`, the Kafka scorer's own call: one
call for the batch, request by request only when that fails, so one bad request fails alone. The model
is taken at flush time: a whole batch is answered by one model, and the answer says which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from recflow.serving_http.errors import ApiError
from recflow.streaming.answers import Scored
from recflow.streaming.follower import ServingModel
from recflow.streaming.protocol import Reason, Request
from recflow.streaming.replies import score_poll

_Waiting = tuple[Request, "asyncio.Future[tuple[ServingModel, Scored]]"]


class Batcher:
    """Queues requests of one event loop and scores each batch with the model ``current()`` returns."""

    def __init__(self, current: Callable[[], ServingModel], *, max_batch: int = 256) -> None:
        self.current = current
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._scheduled = False
        self.batches = 0

    async def score(self, request: Request) -> tuple[ServingModel, Scored]:
        """The model that answered and its answer; an :class:`ApiError` when scoring this request failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[ServingModel, Scored]] = loop.create_future()
        self._queue.append((request, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if self._queue:  # more than one batch queued: the rest goes next, after other callbacks ran
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            model = self.current()
        except ApiError as exc:  # not ready: every waiting request gets the same answer
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        answered, _failed = score_poll(model, [request for request, _ in batch])  # it logs the failures
        answers = {id(request): scored for request, scored in answered}
        for request, future in batch:
            if future.done():  # the client went away
                continue
            scored = answers.get(id(request))
            if scored is None:
                error = ApiError(
                    Reason.SCORING_FAILED,
                    "scoring failed; the server log has the details",
                    request_id=request.request_id,
                )
                future.set_exception(error)
            else:
                future.set_result((model, scored))
