"""One function that builds every confluent-kafka client's config: the broker address and its security.

Why one place: the scorer's consumer and producer, the DAGs' event producer, the probe, the CLI and the
benchmarks must all reach a managed cluster (SASL_SSL) the same way, and a client built by hand would
silently fall back to PLAINTEXT. The security settings come from two sources only, never from arguments:

* the environment, ``RECFLOW_KAFKA_<KEY>`` with the librdkafka key upper-cased and dots as underscores
  (``RECFLOW_KAFKA_SECURITY_PROTOCOL``, ``RECFLOW_KAFKA_SASL_MECHANISM``, ``RECFLOW_KAFKA_SASL_USERNAME``,
  ``RECFLOW_KAFKA_SASL_PASSWORD``, ``RECFLOW_KAFKA_SSL_CA_LOCATION``, ...): the scorer and the CLI;
* the extras of the ``kafka_default`` Airflow Connection, under the librdkafka keys themselves (the
  Kafka provider's format): the DAGs' tasks.

:func:`redacted` is what may be logged: secret values are replaced by ``***``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The librdkafka settings that say how to authenticate and encrypt; nothing else is taken from a source.
SECURITY_KEYS = (
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
)
#: Values never logged (:func:`redacted`) and never accepted as an override in code.
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: Mechanisms that need only a username and a password (GSSAPI and OAUTHBEARER need more than a Connection).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: librdkafka accepts the plural spelling too (the Kafka provider's examples use it).
_ALIASES = {"sasl.mechanisms": "sasl.mechanism"}
REDACTED = "***"


@dataclass(frozen=True)
class KafkaSettings:
    """The broker address, how to authenticate to it, and the pipeline's topics.

    ``security`` holds librdkafka's security settings (``security.protocol``, ``sasl.*``, ``ssl.*``; see
    below); empty means PLAINTEXT. Kept out of ``repr`` since it holds a password.
    """

    bootstrap_servers: str
    security: Mapping[str, str] = field(default_factory=dict, repr=False)
    model_updates_topic: str = "recflow.model-updates"
    score_requests_topic: str = "recflow.score-requests"
    score_results_topic: str = "recflow.score-results"
    score_requests_dlq_topic: str = "recflow.score-requests-dlq"
    #: ``{"day": "YYYY-MM-DD"}`` when a landing file is complete: ``ingest_interactions`` runs on it.
    landing_events_topic: str = "recflow.landing-events"
    #: Failure and deadline alerts of the DAGs (recflow.orchestration.alerts; docs/runbook.md).
    alerts_topic: str = "recflow.alerts"

    @property
    def topics(self) -> tuple[str, ...]:
        return (
            self.model_updates_topic,
            self.score_requests_topic,
            self.score_results_topic,
            self.score_requests_dlq_topic,
            self.landing_events_topic,
            self.alerts_topic,
        )


def env_name(key: str) -> str:
    """``sasl.username`` -> ``RECFLOW_KAFKA_SASL_USERNAME``."""
    return "RECFLOW_KAFKA_" + key.upper().replace(".", "_")


def security_config(values: Mapping[str, Any], *, source: str) -> dict[str, str]:
    """The security keys of ``values``, checked: a SASL protocol needs a known mechanism, a user and a password.

    ``source`` names where the values came from, for the error message (which never shows a secret).
    """
    found = {_ALIASES.get(key, key): str(value) for key, value in values.items() if value not in (None, "")}
    config = {key: found[key] for key in SECURITY_KEYS if key in found}
    if not config:
        return {}
    protocol = config.setdefault("security.protocol", "PLAINTEXT").upper()
    config["security.protocol"] = protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"{source}: security.protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if protocol.startswith("SASL_"):
        mechanism = config.get("sasl.mechanism", "").upper()
        if mechanism not in MECHANISMS:
            raise ValueError(
                f"{source}: {protocol} needs sasl.mechanism, one of {', '.join(MECHANISMS)} (got {mechanism or 'none'})"
            )
        config["sasl.mechanism"] = mechanism
        missing = [key for key in ("sasl.username", "sasl.password") if key not in config]
        if missing:
            raise ValueError(f"{source}: {protocol} needs {' and '.join(missing)}")
    else:
        stray = sorted(key for key in config if key.startswith("sasl."))
        if stray:
            raise ValueError(f"{source}: {', '.join(stray)} set but security.protocol is {protocol} (no SASL)")
    return config


def security_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The security settings from ``RECFLOW_KAFKA_*`` variables (empty: PLAINTEXT, the local broker)."""
    values = {key: environ.get(env_name(key)) for key in SECURITY_KEYS}
    return security_config(values, source="RECFLOW_KAFKA_* environment")


def security_from_extra(extra: Mapping[str, Any], conn_id: str) -> dict[str, str]:
    """The security settings from a Kafka Connection's extras (librdkafka keys, as the provider stores them)."""
    return security_config(extra, source=f"Connection {conn_id!r} extras")


#: What the ``kafka_default`` Connection adds for the Kafka provider's consumers: the landing-event
#: watcher (an ``AwaitMessageTrigger`` in the triggerer) reads as this group, from the earliest event it missed.
AIRFLOW_CONSUMER = {"group.id": "recflow-airflow", "auto.offset.reset": "earliest"}
#: The Connection of the scorer confirmation's trigger: ``kafka_default``'s extras with a group of its own,
#: which the confirmation commits to the end of the results topic before it sends its probe. Why not
#: ``kafka_default``'s group: the landing watcher is always a member of that one, and a group with
#: members refuses a commit from outside it (``UNKNOWN_MEMBER_ID``).
PROBE_CONN_ID = "recflow_kafka_probe"
PROBE_CONSUMER = {"group.id": "recflow-airflow-probe", "auto.offset.reset": "latest"}


def client_config(kafka: KafkaSettings, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config of one confluent-kafka client: bootstrap servers and security from ``kafka``, then ``overrides``.

    ``overrides`` are a client's own tuning (group id, acks, timeouts, callbacks); they may not set the
    address or the security settings, which come only from the Connection or the environment.
    """
    overrides = dict(overrides or {})
    owned = sorted(key for key in overrides if key == "bootstrap.servers" or _ALIASES.get(key, key) in SECURITY_KEYS)
    if owned:
        raise ValueError(f"{', '.join(owned)} come from the Kafka Connection or RECFLOW_KAFKA_*, not from code")
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.security, **overrides}


#: librdkafka's security keys -> the Java client's, for the ones that map one to one.
_JAVA_KEYS = {"security.protocol": "security.protocol", "sasl.mechanism": "sasl.mechanism",
              "ssl.endpoint.identification.algorithm": "ssl.endpoint.identification.algorithm"}  # fmt: skip
_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def spark_kafka_options(kafka: KafkaSettings) -> dict[str, str]:
    """Options of Spark's Kafka source and sink (the Java client, ``kafka.``-prefixed) with the same
    address and security as :func:`client_config`: why, a Spark stream built with only the address
    would talk PLAINTEXT to a broker that requires SASL.

    The username and password go into ``kafka.sasl.jaas.config`` (the Java client's only way to take
    them); a CA file becomes a PEM trust store. A client certificate (mutual TLS) has no one-line
    mapping here and is refused rather than dropped.
    """
    security = dict(kafka.security)
    options = {"kafka.bootstrap.servers": kafka.bootstrap_servers}
    options.update({f"kafka.{_JAVA_KEYS[k]}": v for k, v in security.items() if k in _JAVA_KEYS})
    if "sasl.mechanism" in security:
        user, password = (json.dumps(security[k]) for k in ("sasl.username", "sasl.password"))
        module = _JAAS_MODULES[security["sasl.mechanism"]]
        options["kafka.sasl.jaas.config"] = f"{module} required username={user} password={password};"
    if "ssl.ca.location" in security:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = security["ssl.ca.location"]
    unmapped = sorted({"ssl.certificate.location", "ssl.key.location", "ssl.key.password"} & set(security))
    if unmapped:
        raise ValueError(f"{', '.join(unmapped)}: client certificates are not mapped to Spark's Kafka client")
    return options


def redacted(config: Mapping[str, Any]) -> dict[str, str]:
    """``config`` as it may be logged: secrets replaced by ``***``, callables and loggers by their type."""
    shown: dict[str, str] = {}
    for key, value in config.items():
        if key in SECRET_KEYS or "password" in key or "secret" in key:
            shown[key] = REDACTED
        elif isinstance(value, str | int | float | bool):
            shown[key] = str(value)
        else:
            shown[key] = f"<{type(value).__name__}>"
    return shown
