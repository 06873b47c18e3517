"""Kafka message shapes shared by the DAG, the streaming scorer and its clients.

Why one module: producer and consumer must agree on every field; both import these builders and
parsers instead of spelling dicts by hand.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from recflow.config.kafka import KafkaSettings, client_config

if TYPE_CHECKING:
    from confluent_kafka import Producer

EVENT_SCHEMA_VERSION = 2


def model_update_event(*, version: str, digest: str, uri: str, promoted_at: datetime) -> dict[str, Any]:
    """A new champion is live in the registry at ``uri``; ``digest`` is its manifest's sha256.

    A scorer must not trust the event alone: it resolves the champion (``resolve_serving_version``)
    and swaps only when that names this version and digest.
    """
    return {
        "type": "model_update",
        "schema_version": EVENT_SCHEMA_VERSION,
        "version": version,
        "digest": digest,
        "uri": uri,
        "promoted_at": promoted_at.isoformat(),
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode()


def kafka_producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    """A confluent-kafka producer for the broker; acks from all in-sync replicas, small linger for latency.

    ``overrides`` are librdkafka settings (``**{"linger.ms": 5}``); the address and the security settings
    come from ``kafka`` only (:func:`recflow.config.kafka.client_config`).
    """
    from confluent_kafka import Producer

    return Producer(client_config(kafka, {"acks": "all", "linger.ms": 1, "enable.idempotence": True, **overrides}))
