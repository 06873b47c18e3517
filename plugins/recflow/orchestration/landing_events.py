"""``ingest_interactions`` also runs on a landing event: an ``AssetWatcher`` on ``recflow.landing-events``.

A producer that lands a file announces it with a Kafka message ``{"day": "YYYY-MM-DD"}`` on
``recflow.landing-events``; the watcher's trigger (the Kafka provider's ``AwaitMessageTrigger``, in the
triggerer, on the ``kafka_default`` Connection) turns it into an event on :data:`LANDED_INTERACTIONS`,
which the DAG is scheduled on beside its daily cron. Airflow stores the trigger's payload in the asset
event's ``extra["payload"]``; :func:`recflow.orchestration.context.event_day` reads the day from there,
so the run validates the announced day. A message that is not such an object is skipped (logged).

Why :class:`ProviderKafkaWatch` and not the provider's trigger class: ``AssetWatcher`` needs a trigger
instance when the DAG file is parsed, and the provider's trigger module imports confluent-kafka, which
DAG files must not (``tests/dags/test_dag_integrity.py``). This stand-in only holds the arguments and
serializes to the provider's class path, so the triggerer runs ``AwaitMessageTrigger`` itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from airflow.sdk import Asset, AssetWatcher
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from recflow.config.settings import load_settings
from recflow.orchestration.connections import KAFKA_CONN_ID

log = logging.getLogger(__name__)

#: The class the triggerer runs for the watcher (the Kafka provider's).
PROVIDER_TRIGGER = "airflow.providers.apache.kafka.triggers.await_message.AwaitMessageTrigger"


def landing_event(message: Any) -> dict[str, str] | None:
    """The trigger's apply function: ``{"day": "YYYY-MM-DD"}`` from a landing message, None to skip it."""
    raw = message.value() or b""  # a tombstone has no value
    try:
        day = date.fromisoformat(str(json.loads(raw)["day"])).isoformat()
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping a landing event that names no day (YYYY-MM-DD): %r (%s)", raw[:200], exc)
        return None
    return {"day": day}


class ProviderKafkaWatch(BaseEventTrigger):
    """Parse-time stand-in for the provider's ``AwaitMessageTrigger``: the same arguments, its class path."""

    def __init__(self, *, topics: list[str], kafka_config_id: str, apply_function: str) -> None:
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "topics": topics,
            "apply_function": apply_function,
            "apply_function_args": [],
            "apply_function_kwargs": {},
            "kafka_config_id": kafka_config_id,
            "poll_timeout": 1,
            "poll_interval": 1,
            "commit_offset": True,
        }

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return PROVIDER_TRIGGER, dict(self.kwargs)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Never called: the triggerer deserializes the provider's class and runs that."""
        raise NotImplementedError(f"the triggerer runs {PROVIDER_TRIGGER}, not this stand-in")
        yield  # pragma: no cover  (makes this an async generator, as BaseTrigger.run is)


#: Updated by a landing event (the day in ``extra["payload"]``); ``ingest_interactions`` runs on it.
LANDED_INTERACTIONS = Asset(
    "recflow://landing/interactions",
    watchers=[
        AssetWatcher(
            name="recflow_landing_events",
            trigger=ProviderKafkaWatch(
                topics=[load_settings().kafka.landing_events_topic],
                kafka_config_id=KAFKA_CONN_ID,
                apply_function=f"{__name__}.landing_event",
            ),
        )
    ],
)
