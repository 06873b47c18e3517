"""Service management without Java: rendered config, pinned command lines, pid files, and the manager's
up/down/status logic driven against a real (tiny) HTTP server process standing in for a JVM service."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recflow.cli import main as cli
from recflow.config.kafka import KafkaSettings
from recflow.config.s3 import S3Settings
from recflow.config.settings import Settings
from recflow.services import manager, maven
from recflow.services.kafka import (
    KafkaService,
    broker_argv,
    new_cluster_id,
    render_server_properties,
    storage_format_argv,
)
from recflow.services.process import (
    PidRecord,
    ServiceError,
    group_members,
    is_alive,
    port_open,
    read_live_pid,
    start_detached,
    stop_all_named,
    stop_group,
    stop_named,
    wait_until,
)
from recflow.services.s3 import render_s3proxy_conf, s3proxy_argv

#: Generated S3 keys for settings that never reach a server (no credential literal in the tests).
KEYS = (secrets.token_hex(4), secrets.token_hex(8))


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- rendered configuration -------------------------------------------------------------------------


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _props(render_server_properties(port=19092, controller_port=19093, data_dir=tmp_path / "data"))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert "controller.quorum.voters" not in props  # dynamic quorum: bootstrap servers only


def test_s3proxy_conf_exact(tmp_path: Path) -> None:
    text = render_s3proxy_conf(port=19000, basedir=tmp_path / "s3data", identity=KEYS[0], credential=KEYS[1])
    assert _props(text) == {
        "s3proxy.endpoint": "http://127.0.0.1:19000",
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": KEYS[0],
        "s3proxy.credential": KEYS[1],
        "jclouds.provider": "filesystem",
        "jclouds.filesystem.basedir": str(tmp_path / "s3data"),
    }


def test_cluster_id_is_16_bytes_urlsafe_base64_unpadded() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22 and "=" not in cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert new_cluster_id() != cluster_id


# --- pinned command lines -----------------------------------------------------------------------------


def test_storage_format_argv() -> None:
    argv = storage_format_argv("/j/java", Path("/s/jars"), Path("/s/l.xml"), Path("/s/server.properties"), "CID")
    assert argv == [
        "/j/java",
        "-cp",
        "/s/jars/*",
        "-Dlog4j2.configurationFile=/s/l.xml",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id=CID",
        "-c",
        "/s/server.properties",
        "--standalone",
    ]


def test_broker_argv() -> None:
    assert broker_argv("java", Path("/s/jars"), Path("/s/l.xml"), Path("/s/server.properties")) == [
        "java",
        "-Xmx1g",
        "-Xms256m",
        "-Djava.awt.headless=true",
        "-cp",
        "/s/jars/*",
        "-Dlog4j2.configurationFile=/s/l.xml",
        "kafka.Kafka",
        "/s/server.properties",
    ]


def test_s3proxy_argv_keeps_secrets_off_the_command_line() -> None:
    argv = s3proxy_argv("java", Path("/s/s3proxy.jar"), Path("/s/s3proxy.conf"))
    assert argv == [
        "java",
        "-Xmx512m",
        "-Djava.awt.headless=true",
        "-cp",
        "/s/s3proxy.jar",
        "org.gaul.s3proxy.Main",
        "--properties",
        "/s/s3proxy.conf",
    ]


def test_mvn_argv() -> None:
    assert maven.mvn_argv("/usr/bin/mvn", Path("/p/kafka.xml"), Path("/s/jars/kafka")) == [
        "/usr/bin/mvn",
        "-q",
        "-B",
        "-f",
        "/p/kafka.xml",
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DoutputDirectory=/s/jars/kafka",
    ]


def test_poms_exist_for_every_jar_set() -> None:
    for jar_set in (maven.KAFKA, maven.S3PROXY, maven.SPARK_KAFKA):
        assert jar_set.pom.is_file(), jar_set.pom


# --- Maven helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jar", "artifact"),
    [
        ("kafka-clients-3.9.2.jar", "kafka-clients"),
        ("spark-sql-kafka-0-10_2.13-4.2.0.jar", "spark-sql-kafka-0-10_2.13"),
        ("scala-parallel-collections_2.13-1.2.0.jar", "scala-parallel-collections_2.13"),
        ("zstd-jni-1.5.6-10.jar", "zstd-jni"),
        ("jsr305-3.0.0.jar", "jsr305"),
        ("s3proxy-4.0.0-jar-with-dependencies.jar", "s3proxy"),
    ],
)
def test_artifact_name(jar: str, artifact: str) -> None:
    assert maven.artifact_name(jar) == artifact


def test_select_extra_jars_drops_what_spark_ships() -> None:
    candidates = [Path(f"/j/{n}") for n in ("kafka-clients-3.9.2.jar", "scala-library-2.13.15.jar", "a-1.0.jar")]
    assert maven.select_extra_jars(candidates, {"scala-library"}) == [
        Path("/j/a-1.0.jar"),
        Path("/j/kafka-clients-3.9.2.jar"),
    ]


def test_marker_ties_resolution_to_the_pom_content(tmp_path: Path) -> None:
    folder = maven.jars_dir(maven.KAFKA, tmp_path)
    assert not maven.is_resolved(maven.KAFKA, tmp_path)
    folder.mkdir(parents=True)
    (folder / maven.MARKER).write_text("stale-digest\n")
    assert not maven.is_resolved(maven.KAFKA, tmp_path)
    (folder / maven.MARKER).write_text(maven._pom_digest(maven.KAFKA.pom) + "\n")
    assert maven.is_resolved(maven.KAFKA, tmp_path)


def test_missing_tool_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ServiceError, match="install Apache Maven"):
        maven.require_tool("mvn")
    with pytest.raises(ServiceError, match="Java 17"):
        maven.require_tool("java")


# --- pid files ---------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text(PidRecord(pid=_dead_pid(), argv=("java",), started_at=0.0).to_json())
    assert read_live_pid(path) is None
    assert not path.exists()


def test_recycled_pid_running_something_else_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    # Our own pid is alive, but runs pytest, not the recorded command.
    path.write_text(PidRecord(pid=os.getpid(), argv=("java", "kafka.Kafka"), started_at=0.0).to_json())
    assert read_live_pid(path) is None
    assert not path.exists()


def test_recycled_pid_with_another_start_time_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text(PidRecord(pid=os.getpid(), argv=(sys.executable,), started_at=0.0, start_ticks=1).to_json())
    assert read_live_pid(path) is None


def test_a_process_that_execs_another_program_is_still_found(tmp_path: Path) -> None:
    """``spark-submit`` execs ``java``: the command line changes, the pid and start time do not."""
    pid_path = tmp_path / "x.pid"
    rec = start_detached(
        ["/bin/sh", "-c", "exec sleep 30"], cwd=tmp_path, log_path=tmp_path / "x.log", pid_path=pid_path
    )
    try:
        assert wait_until(lambda: Path(f"/proc/{rec.pid}/cmdline").read_bytes().startswith(b"sleep"), 10)
        assert read_live_pid(pid_path) == rec
    finally:
        stop_group(rec.pid)


def test_named_processes_stop_by_their_pid_file_and_only_those_of_the_prefix(tmp_path: Path) -> None:
    """How ``recflow serve stop``, ``recflow scorer stop`` and ``recflow services down`` stop theirs."""
    records = {
        name: start_detached(
            ["sleep", "30"], cwd=tmp_path, log_path=tmp_path / f"{name}.log", pid_path=tmp_path / f"{name}.pid"
        )
        for name in ("serve", "serve-bench", "scorer")
    }
    try:
        assert stop_named(tmp_path, "serve") is True
        assert not is_alive(records["serve"].pid) and not (tmp_path / "serve.pid").exists()
        assert stop_named(tmp_path, "serve") is False  # nothing left to stop
        assert stop_all_named(tmp_path, "serve") == ["serve-bench"]
        assert is_alive(records["scorer"].pid), "another prefix is left alone"
        assert stop_all_named(tmp_path, "scorer") == ["scorer"]
    finally:
        for rec in records.values():
            stop_group(rec.pid)


def test_unreadable_pid_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("not json")
    assert read_live_pid(path) is None
    assert not path.exists()


def test_pid_record_round_trip() -> None:
    rec = PidRecord(pid=12, argv=("a", "b c"), started_at=1.5)
    assert PidRecord.from_json(rec.to_json()) == rec
    assert json.loads(rec.to_json())["argv"] == ["a", "b c"]


# --- the manager, against a real stand-in process ------------------------------------------------------


@dataclass(frozen=True)
class HttpService:
    """A stand-in service: Python's HTTP server, probed with a real GET. Optionally exits at once."""

    state: Path
    port: int
    name: str = "fake"
    crash: bool = False

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    @property
    def home(self) -> Path:
        path = self.state / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prepare(self) -> list[str]:
        if self.crash:
            return [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"]
        return [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1"]

    def probe(self, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=timeout) as resp:
            return f"HTTP {resp.status}"

    def provision(self) -> None:
        (self.home / "provisioned").touch()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[Settings, HttpService]]:
    settings = Settings(
        s3=S3Settings("http://127.0.0.1:1", *KEYS),
        kafka=KafkaSettings("127.0.0.1:1"),
        lake_root=tmp_path / "lake",
        state=tmp_path,
    )
    service = HttpService(tmp_path, _free_port())
    yield settings, service
    manager.services_down(settings, services=[service])


def test_up_is_idempotent_and_down_leaves_nothing(fake: tuple[Settings, HttpService]) -> None:
    settings, service = fake
    assert manager.ensure_services_up(settings, services=[service], timeout=20) == ("fake",)
    [first] = manager.service_status(settings, services=[service])
    assert first.state == "running" and first.pid is not None and first.detail == "HTTP 200"
    assert (service.home / "provisioned").exists()
    assert manager.ensure_services_up(settings, services=[service], timeout=20) == ()
    [second] = manager.service_status(settings, services=[service])
    assert second.pid == first.pid
    assert manager.services_down(settings, services=[service]) == ("fake",)
    assert group_members(first.pid) == []
    assert not port_open(service.port)
    assert manager.service_status(settings, services=[service])[0].state == "stopped"
    assert manager.services_down(settings, services=[service]) == ()


def test_killed_service_is_detected_and_restarted(fake: tuple[Settings, HttpService]) -> None:
    settings, service = fake
    manager.ensure_services_up(settings, services=[service], timeout=20)
    [before] = manager.service_status(settings, services=[service])
    assert before.pid is not None
    os.killpg(before.pid, signal.SIGKILL)
    assert wait_until(lambda: not is_alive(before.pid), 5)
    # The kernel may release the dead server's port a moment after the pid is gone (seen under CI
    # load as a transient "foreign"): wait for it, then the state must be exactly "stopped".
    assert wait_until(lambda: manager.service_status(settings, services=[service])[0].state != "foreign", 5)
    assert manager.service_status(settings, services=[service])[0].state == "stopped"
    assert not manager.pid_file(settings.state, service).exists()
    assert manager.ensure_services_up(settings, services=[service], timeout=20) == ("fake",)
    [after] = manager.service_status(settings, services=[service])
    assert after.state == "running" and after.pid != before.pid


def test_foreign_process_on_port_is_a_clear_error(fake: tuple[Settings, HttpService]) -> None:
    settings, service = fake
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", service.port))
        squatter.listen()
        assert manager.service_status(settings, services=[service])[0].state == "foreign"
        with pytest.raises(ServiceError, match=f"port {service.port} .* not start"):
            manager.ensure_services_up(settings, services=[service], timeout=5)
    assert not manager.pid_file(settings.state, service).exists()


def test_early_exit_reports_the_log_tail(tmp_path: Path) -> None:
    settings = Settings(
        S3Settings("http://x", *KEYS),
        KafkaSettings("x"),
        tmp_path / "lake",
        tmp_path,
    )
    service = HttpService(tmp_path, _free_port(), crash=True)
    with pytest.raises(ServiceError) as err:
        manager.ensure_services_up(settings, services=[service], timeout=20)
    message = str(err.value)
    assert "exited during start-up" in message
    assert "boom: bad config" in message
    assert str(manager.log_file(tmp_path, service)) in message
    assert not manager.pid_file(tmp_path, service).exists()


def test_cli_status_exit_code(fake: tuple[Settings, HttpService], monkeypatch: pytest.MonkeyPatch) -> None:
    settings, service = fake
    monkeypatch.setattr(manager, "default_services", lambda settings=None: [service])
    monkeypatch.setattr(manager, "load_settings", lambda: settings)
    # `services down` also stops a streaming scorer found under the state folder: never the real one
    monkeypatch.setenv("RECFLOW_STATE", str(settings.state))
    assert cli.main(["services", "status"]) == 1
    assert cli.main(["services", "up", "--timeout", "20"]) == 0
    assert cli.main(["services", "status"]) == 0
    assert cli.main(["services", "down"]) == 0
    assert cli.main(["services", "status"]) == 1


def test_kafka_service_ports_and_bootstrap(tmp_path: Path) -> None:
    service = KafkaService(KafkaSettings("elsewhere:1"), tmp_path, 19092, 19093)
    assert service.ports == (19092, 19093)
    assert service.bootstrap == "127.0.0.1:19092"  # probes the broker we manage, not the settings


# --- sharing between concurrent users --------------------------------------------------------------


@pytest.fixture
def shared_fake(fake: tuple[Settings, HttpService], monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, HttpService]:
    settings, service = fake
    monkeypatch.setattr(manager, "default_services", lambda settings=None: [service])
    return settings, service


def _state(settings: Settings, service: HttpService) -> str:
    return manager.service_status(settings, services=[service])[0].state


def test_last_shared_user_out_stops_what_a_user_started(shared_fake: tuple[Settings, HttpService]) -> None:
    settings, service = shared_fake
    with manager.shared_services(settings):  # starts the service
        with manager.shared_services(settings):  # reuses it
            pass
        assert _state(settings, service) == "running", "a second user must not stop the first one's service"
    assert _state(settings, service) == "stopped"


def test_starter_leaving_first_does_not_stop_a_service_still_in_use(
    shared_fake: tuple[Settings, HttpService],
) -> None:
    settings, service = shared_fake
    first = manager.shared_services(settings)
    second = manager.shared_services(settings)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert _state(settings, service) == "running"
    second.__exit__(None, None, None)
    assert _state(settings, service) == "stopped"


def test_lease_of_a_killed_user_is_ignored(shared_fake: tuple[Settings, HttpService]) -> None:
    settings, service = shared_fake
    leases = settings.state / "run" / "leases"
    with manager.shared_services(settings):
        (leases / "dead.lease").write_text(str(_dead_pid()))
    assert _state(settings, service) == "stopped"
    assert not (leases / "dead.lease").exists()


def test_claimed_services_outlive_shared_users(shared_fake: tuple[Settings, HttpService]) -> None:
    settings, service = shared_fake
    with manager.shared_services(settings):
        manager.claim_services(settings)  # what `recflow services up` does
    assert _state(settings, service) == "running"
