"""Read the next chunk of a landing file while the current one is judged: one chunk ahead, in a thread.

Why: ingestion read a chunk (decompress, parse, cast), then judged it (row rules, hashes, Parquet
writes), then read the next, so one of the two cores idled while the other worked. zlib, pyarrow's CSV
and JSON parsers and Parquet writes release the GIL, so reading the next chunk in a thread overlaps
with judging the current one. At most two chunks are alive at once (the one being judged and the one
read ahead), so memory stays bounded by the chunk size, not by the file's.

Errors keep their place: an exception the source raises (a truncated gzip noticed at the end of the
file) reaches the consumer after every chunk read before it, as without the thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from typing import Final, TypeVar

T = TypeVar("T")

_DONE: Final = object()
_POLL_SECONDS: Final = 0.1


def prefetched(source: Iterator[T]) -> Generator[T, None, None]:
    """Yield ``source``'s items in order, producing the next one in a background thread meanwhile.

    The thread asks ``source`` for an item only when the consumer holds at most one other, so two items
    are alive at most. Closing the returned generator early stops the thread (after the item it is
    producing) and closes ``source`` from that thread.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    may_produce = threading.Semaphore(1)
    stop = threading.Event()

    def produce() -> None:
        try:
            while True:
                while not may_produce.acquire(timeout=_POLL_SECONDS):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item: object = next(source)
                except StopIteration:
                    item = _DONE
                except BaseException as exc:  # handed to the consumer, raised there in order
                    item = exc
                handoff.put(item)
                if item is _DONE or isinstance(item, BaseException):
                    return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="recflow-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            may_produce.release()  # the consumer holds this item: read the next one meanwhile
            yield item  # type: ignore[misc]
            del item
    finally:
        stop.set()
        may_produce.release()
        while worker.is_alive():  # unblock a producer waiting to hand over its last item
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=_POLL_SECONDS)
        worker.join()
