"""Real local services for development, the demo and the integration tests: Kafka 4 and S3Proxy, and
on request PostgreSQL (the metadata DB when a test or a user needs the real Airflow scheduler).

Use :func:`ensure_services_up`, :func:`services_down` and :func:`service_status` (the CLI
``recflow services up|down|status`` calls them); :func:`shared_services` when several processes (test
sessions, demos) use the services at once and the last one out should stop what they started; and
:func:`spark_kafka_jars` for ``spark-submit --jars``.
Nothing here imports Airflow.
"""

from recflow.services.manager import (
    ServiceStatus,
    claim_services,
    default_services,
    ensure_services_up,
    format_status,
    optional_services,
    postgres_service,
    service_status,
    services_down,
    shared_services,
)
from recflow.services.maven import spark_kafka_jars
from recflow.services.process import ServiceError

__all__ = [
    "ServiceError",
    "ServiceStatus",
    "claim_services",
    "default_services",
    "ensure_services_up",
    "format_status",
    "optional_services",
    "postgres_service",
    "service_status",
    "services_down",
    "shared_services",
    "spark_kafka_jars",
]
