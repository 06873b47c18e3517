"""``recflow.data.prefetch.prefetched``: same items in the same order, errors in their place, at most two
items alive, and an early stop that stops the thread and closes the source."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from recflow.data.prefetch import prefetched


class Truncated(Exception):
    pass


def _counting(n: int, alive: list[int], peak: list[int], *, fail_at: int | None = None) -> Iterator[list[int]]:
    """Items that count themselves alive until the consumer drops them (``alive[0]``, ``peak[0]``)."""
    for i in range(n):
        if i == fail_at:
            raise Truncated(f"after {i} items")
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        yield [i]


def test_items_come_in_order_and_at_most_two_are_alive() -> None:
    alive, peak, seen = [0], [0], []
    for item in prefetched(_counting(50, alive, peak)):
        seen.append(item[0])
        del item
        alive[0] -= 1
    assert seen == list(range(50))
    assert peak[0] <= 2, f"{peak[0]} items were alive at once"


def test_an_error_reaches_the_consumer_after_the_items_before_it() -> None:
    seen = []
    with pytest.raises(Truncated, match="after 3 items"):
        for item in prefetched(_counting(10, [0], [0], fail_at=3)):
            seen.append(item[0])
    assert seen == [0, 1, 2]


def test_stopping_early_closes_the_source_and_ends_the_thread() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    before = threading.active_count()
    items = prefetched(source())
    assert [next(items), next(items)] == [0, 1]
    items.close()
    assert closed.is_set(), "the source was not closed"
    assert threading.active_count() == before, "the prefetch thread outlived its consumer"
