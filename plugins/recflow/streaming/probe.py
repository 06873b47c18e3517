"""What checking the streaming scorer after a promotion needs: is one deployed, and who its probes are.

``batch_scoring.confirm_streaming_scorer`` (:mod:`recflow.orchestration.scorer_confirmation`) sends a
probe request as :data:`PROBE_USER` and waits, deferred, for the answer. Why a probe request and not the
status file: the scorer may run on other hosts; an answer says which version produced it, end to end
through the same topics callers use. A scorer group with no members means no scorer is deployed (the
demo, a test run): the caller decides whether that is an error.
"""

from __future__ import annotations

import time

from recflow.config.kafka import KafkaSettings, client_config
from recflow.streaming.engine import DEFAULT_GROUP

PROBE_USER = "recflow-probe"


def scorer_members(kafka: KafkaSettings, group: str = DEFAULT_GROUP, timeout_s: float = 10.0) -> int:
    """How many processes are in the scorer's consumer group (0: no scorer is running).

    A broker that has just started (or moved the group's coordinator) answers ``NOT_COORDINATOR`` or
    ``COORDINATOR_LOAD_IN_PROGRESS`` for a while: those retriable errors are retried with backoff until
    ``timeout_s``; anything else, or still failing then, is raised.
    """
    from confluent_kafka import ConsumerGroupState, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(kafka))
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout_s)
            break
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if not _coordinator_not_ready(error) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    if description.state in (ConsumerGroupState.DEAD, ConsumerGroupState.EMPTY):
        return 0
    return len(description.members)


def _coordinator_not_ready(error: object) -> bool:
    """Whether a group request failed only because the group's coordinator is not ready yet."""
    from confluent_kafka import KafkaError

    if not isinstance(error, KafkaError):
        return False
    waiting = (
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    )
    return error.code() in waiting or error.retriable()
