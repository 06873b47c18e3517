"""The start-up size check: the scorer refuses to start when a request could have no dead letter."""

from __future__ import annotations

import pytest

from recflow.streaming.limits import HEADER_ALLOWANCE, SizeMismatch, TopicLimits, check_limits


def test_a_dead_letter_topic_as_large_as_the_request_topic_plus_headers_passes() -> None:
    check_limits(TopicLimits(requests=1 << 20, dead_letters=(1 << 20) + HEADER_ALLOWANCE), producer_max=4 << 20)


def test_a_smaller_dead_letter_topic_is_refused_with_the_size_to_set() -> None:
    with pytest.raises(SizeMismatch, match=f"at least {(1 << 20) + HEADER_ALLOWANCE}"):
        check_limits(TopicLimits(requests=1 << 20, dead_letters=1 << 20), producer_max=4 << 20)


def test_a_request_topic_larger_than_the_producer_may_send_is_refused() -> None:
    with pytest.raises(SizeMismatch, match="lower the request topic"):
        check_limits(TopicLimits(requests=8 << 20, dead_letters=16 << 20), producer_max=4 << 20)
