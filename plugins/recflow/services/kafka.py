"""A single-node Apache Kafka 4 broker in KRaft mode (broker and controller in one JVM).

Why this layout: Kafka 4 has no ZooKeeper; a lone node needs ``process.roles=broker,controller``, a
controller listener and ``controller.quorum.bootstrap.servers``, and its storage formatted once with
``StorageTool format --standalone``. Replication factors of internal topics must be 1 on one node, and
auto-creation is off so a typo in a topic name fails instead of silently creating a new topic.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recflow.config.kafka import KafkaSettings
from recflow.services import maven
from recflow.services.process import LOCALHOST, ServiceError

log = logging.getLogger(__name__)

HEAP = "1g"
_FORMAT_STAMP = "formatted-for"

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by recflow. The broker's stdout is redirected to <state>/logs/kafka.log, so one file holds
     the log4j output and anything the JVM itself prints. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Root level="INFO">
      <AppenderRef ref="STDOUT"/>
    </Root>
  </Loggers>
</Configuration>
"""


#: The mechanism of the SASL broker (``KafkaService(scram_users=...)``): what managed clusters use.
SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def render_server_properties(
    *, port: int, controller_port: int, data_dir: Path, node_id: int = 1, broker_login: tuple[str, str] | None = None
) -> str:
    """``server.properties`` for a one-node KRaft cluster listening on 127.0.0.1 only.

    ``broker_login`` (user, password) turns the client listener into ``SASL_PLAINTEXT`` with SCRAM-SHA-512
    only: a client without a SCRAM credential is refused; the broker talks to itself with that login.
    """
    listener = "PLAINTEXT" if broker_login is None else "SASL_PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": f"{listener}://{LOCALHOST}:{port},CONTROLLER://{LOCALHOST}:{controller_port}",
        "advertised.listeners": f"{listener}://{LOCALHOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
        "controller.quorum.bootstrap.servers": f"{LOCALHOST}:{controller_port}",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the restarted broker waits for its old session to expire (default 9 s).
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "1000",
        "auto.create.topics.enable": "false",
    }
    if broker_login is not None:
        user, password = (json.dumps(v) for v in broker_login)
        props |= {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
                f"{_SCRAM_MODULE} required username={user} password={password};"
            ),
        }
    lines = ["# Written by `recflow services up`; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64, unpadded (as ``kafka-storage random-uuid``)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _java_base(java: str, jars: Path, log4j: Path) -> list[str]:
    # ``<dir>/*`` is a classpath wildcard that java expands itself: no shell involved.
    return [java, "-cp", f"{jars}/*", f"-Dlog4j2.configurationFile={log4j}"]


def storage_format_argv(
    java: str, jars: Path, log4j: Path, props: Path, cluster_id: str, scram_users: Mapping[str, str] | None = None
) -> list[str]:
    """Format the log directory once, with this node as the only voter (``--standalone``).

    The id is passed as ``--cluster-id=<id>``: one in 64 random ids starts with ``-``, which as a
    separate argument the tool's parser reads as an option ("expected one argument"). ``scram_users``
    are written into the metadata as SCRAM credentials (KRaft's way to create the first users; the
    passwords are on this command line, so only a process of the same user sees them, briefly).
    """
    scram = [f"--add-scram={SCRAM_MECHANISM}=[name={u},password={p}]" for u, p in (scram_users or {}).items()]
    return [
        *_java_base(java, jars, log4j),
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(props),
        "--standalone",
        *scram,
    ]


def broker_argv(java: str, jars: Path, log4j: Path, props: Path, heap: str = HEAP) -> list[str]:
    """Run the broker in the foreground (the caller detaches it)."""
    return [
        java,
        f"-Xmx{heap}",
        "-Xms256m",
        "-Djava.awt.headless=true",
        *_java_base(java, jars, log4j)[1:],
        "kafka.Kafka",
        str(props),
    ]


def _admin(bootstrap: str, timeout: float, security: Mapping[str, str] | None = None) -> Any:
    """An admin client; ``security`` (from :mod:`recflow.config.kafka`) for a broker other than ours."""
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        **(security or {}),
        "socket.timeout.ms": int(timeout * 1000),
        # librdkafka would print connection errors to stderr; route them to Python logging.
        "logger": logging.getLogger("recflow.services.kafka.librdkafka"),
    }
    return AdminClient(config)


def list_topics(bootstrap: str, timeout: float = 5.0, security: Mapping[str, str] | None = None) -> set[str]:
    """Topic names on the broker (a real metadata round trip)."""
    metadata = _admin(bootstrap, timeout, security).list_topics(timeout=timeout)
    return set(metadata.topics)


def leaderless_partitions(
    bootstrap: str, timeout: float = 5.0, security: Mapping[str, str] | None = None
) -> tuple[set[str], list[str]]:
    """(topics, ``topic-partition`` names without a leader): after a restart the broker answers
    metadata requests before it leads its partitions again, and producing then would fail."""
    metadata = _admin(bootstrap, timeout, security).list_topics(timeout=timeout)
    waiting = [
        f"{name}-{pid}"
        for name, topic in metadata.topics.items()
        for pid, part in topic.partitions.items()
        if part.leader < 0 or part.error is not None
    ]
    return set(metadata.topics), waiting


#: Per-topic settings: a dead letter keeps the caller's value (up to the broker's 1 MiB limit) plus headers.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {"recflow.score-requests-dlq": {"max.message.bytes": str(4 << 20)}}
#: Partitions a topic is created with (others: ``create_topics(partitions=...)``). Two request partitions
#: let a second scorer replica join the consumer group without re-partitioning: one Python process tops
#: out near one core, and two replicas carry the benchmark's 30k req/s (bench/results/streaming.md).
TOPIC_PARTITIONS: dict[str, int] = {"recflow.score-requests": 2}


def create_topics(
    bootstrap: str,
    topics: tuple[str, ...],
    *,
    partitions: int = 1,
    timeout: float = 30.0,
    security: Mapping[str, str] | None = None,
) -> None:
    """Create ``topics`` unless they exist (replication factor 1: one broker; TOPIC_CONFIGS, TOPIC_PARTITIONS)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = _admin(bootstrap, timeout, security)
    missing = [t for t in topics if t not in set(admin.list_topics(timeout=timeout).topics)]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=TOPIC_PARTITIONS.get(t, partitions),
                replication_factor=1,
                config=TOPIC_CONFIGS.get(t, {}),
            )
            for t in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result()
            log.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"could not create Kafka topic {topic}: {exc}") from exc


def ensure_partitions(
    bootstrap: str, topic: str, at_least: int, *, timeout: float = 30.0, security: Mapping[str, str] | None = None
) -> int:
    """Grow ``topic`` to ``at_least`` partitions (never shrinks; Kafka cannot); returns the count now.

    How a Kafka service scales out: more partitions, then more consumers in the group. Keys map to
    other partitions afterwards, which only matters to callers that rely on per-key order across it.
    """
    from confluent_kafka.admin import NewPartitions

    admin = _admin(bootstrap, timeout, security)
    current = len(admin.list_topics(topic, timeout=timeout).topics[topic].partitions)
    if current >= at_least:
        return current
    for future in admin.create_partitions([NewPartitions(topic, at_least)], request_timeout=timeout).values():
        future.result()
    log.info("grew %s from %d to %d partitions", topic, current, at_least)
    return at_least


@dataclass(frozen=True)
class KafkaService:
    """The broker as a managed service: files under ``<state>/kafka``, data in ``<state>/kafka/data``."""

    settings: KafkaSettings
    state: Path
    port: int
    controller_port: int
    name: str = "kafka"
    #: SCRAM users (name -> password) of a SASL broker; the first one is the broker's own login, and
    #: ``settings.security`` is what this service's own admin client (probe, topics) uses. None: PLAINTEXT.
    scram_users: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.controller_port)

    @property
    def home(self) -> Path:
        return self.state / self.name

    @property
    def _own_security(self) -> Mapping[str, str] | None:
        """How this service's admin client logs in to the broker it runs: PLAINTEXT unless it is a SASL
        broker (``settings.security`` may describe another cluster the clients use)."""
        return self.settings.security if self.scram_users else None

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def bootstrap(self) -> str:
        """The address of the broker we manage (settings may point clients elsewhere)."""
        return f"{LOCALHOST}:{self.port}"

    def prepare(self) -> list[str]:
        """Resolve jars, write config, format storage when needed; return the broker command."""
        java = maven.require_tool("java")
        jars = maven.resolve(maven.KAFKA, self.state)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        log4j = self.home / "log4j2.xml"
        login = next(iter(self.scram_users.items())) if self.scram_users else None
        props.write_text(
            render_server_properties(
                port=self.port, controller_port=self.controller_port, data_dir=self.data_dir, broker_login=login
            )
        )
        log4j.write_text(LOG4J2_XML)
        self._format_once(java, jars, log4j, props)
        return broker_argv(java, jars, log4j, props)

    def _format_once(self, java: str, jars: Path, log4j: Path, props: Path) -> None:
        """Format unless the data dir was formatted for this controller address.

        The voter set (with the controller's host:port) is written into the metadata log at format
        time, so a changed controller port needs a fresh format; a half-formatted dir is wiped too.
        """
        stamp = self.home / _FORMAT_STAMP
        wanted = f"{LOCALHOST}:{self.controller_port}"
        if (self.data_dir / "meta.properties").is_file() and stamp.is_file() and stamp.read_text() == wanted:
            return
        if self.data_dir.exists():
            log.info("re-formatting Kafka storage in %s", self.data_dir)
            shutil.rmtree(self.data_dir)
        stamp.unlink(missing_ok=True)
        argv = storage_format_argv(java, jars, log4j, props, new_cluster_id(), self.scram_users)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ServiceError(
                f"Kafka storage format failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
            )
        stamp.write_text(wanted)

    def probe(self, timeout: float = 5.0) -> str:
        """Raise unless the broker answers metadata and leads all partitions; return a short description."""
        topics, waiting = leaderless_partitions(self.bootstrap, timeout, self._own_security)
        if waiting:
            raise ServiceError(f"partitions without a leader yet: {', '.join(sorted(waiting)[:5])}")
        return f"{len(topics)} topics"

    def provision(self) -> None:
        create_topics(self.bootstrap, self.settings.topics, security=self._own_security)
