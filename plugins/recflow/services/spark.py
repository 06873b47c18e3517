"""A Spark standalone cluster on 127.0.0.1: one master and one worker, from the pyspark wheel.

Why standalone and not ``local[*]``: a ``spark://`` master is how a real cluster runs the jobs (the
driver in the Airflow task, executors in other JVMs that see only what is shipped to them or on shared
storage), so running it here proves the jobs do not rely on local mode. The wheel carries ``bin/spark-class``
and every jar the daemons need, so nothing is downloaded. The daemon runs in the foreground
(``sbin/start-master.sh`` would fork it away), which keeps the pid file and process group ours. The
command is what ``bin/spark-class`` would ``exec``: we ask Spark's launcher for it, as that script does, and
start it directly, so the pid file names the JVM itself (``spark-class`` replaces its own process image,
and a pid file naming the script would look stale).

Ports (``RECFLOW_SPARK_MASTER_PORT`` 7077, ``RECFLOW_SPARK_MASTER_UI_PORT`` 8090,
``RECFLOW_SPARK_WORKER_PORT`` 7078, ``RECFLOW_SPARK_WORKER_UI_PORT`` 8091; the UIs are off Spark's 8080
and 8081, Airflow's port) and the worker's size (``RECFLOW_SPARK_WORKER_CORES``, default one per core;
``RECFLOW_SPARK_WORKER_MEMORY``, default 4g) come from the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from recflow.config.settings import env_int
from recflow.services import maven
from recflow.services.process import LOCALHOST, ServiceError
from recflow.spark.session import pyspark_home

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: Heap of each daemon (the executors it launches get their own ``spark.executor.memory``).
DAEMON_MEMORY = "512m"


def master_port() -> int:
    return env_int("RECFLOW_SPARK_MASTER_PORT", 7077)


def master_ui_port() -> int:
    return env_int("RECFLOW_SPARK_MASTER_UI_PORT", 8090)


def worker_port() -> int:
    return env_int("RECFLOW_SPARK_WORKER_PORT", 7078)


def worker_ui_port() -> int:
    return env_int("RECFLOW_SPARK_WORKER_UI_PORT", 8091)


def master_url(port: int | None = None) -> str:
    """``spark://127.0.0.1:<port>``: what the Spark Connection's host is set to when the cluster runs."""
    return f"spark://{LOCALHOST}:{port or master_port()}"


#: Scala version of the pyspark 4.2 wheel (``bin/load-spark-env.sh`` exports the same).
SCALA_VERSION = "2.13"


def daemon_environment() -> dict[str, str]:
    """Our environment plus what ``spark-class`` sets: ``SPARK_HOME`` (the wheel; the worker starts
    executors from it), the Scala version and the daemons' heap."""
    env = dict(os.environ)
    env["SPARK_HOME"] = str(pyspark_home())
    env["SPARK_SCALA_VERSION"] = SCALA_VERSION
    env.setdefault("SPARK_DAEMON_MEMORY", DAEMON_MEMORY)
    return env


def launch_command(main_class: str, args: list[str], env: dict[str, str]) -> list[str]:
    """The JVM command ``spark-class <main_class> <args>`` would ``exec`` (from Spark's own launcher)."""
    java = maven.require_tool("java")
    jars = f"{env['SPARK_HOME']}/jars/*"
    done = subprocess.run(  # argument list, no shell
        [java, "-Xmx128m", "-cp", jars, "org.apache.spark.launcher.Main", main_class, *args],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    # Output: NUL, newline, then each argument followed by NUL (see bin/spark-class).
    parts = [p.decode() for p in done.stdout.split(b"\0")]
    command = [p.lstrip("\n") for p in parts[1:] if p.strip()]
    if done.returncode != 0 or not command:
        raise ServiceError(f"Spark's launcher failed for {main_class}: {done.stderr.decode(errors='replace')[-2000:]}")
    return command


def master_state(ui_port: int, timeout: float) -> dict[str, Any]:
    """The master's ``/json/`` status page (``status``, ``workers``, ``activeapps``...)."""
    with urllib.request.urlopen(f"http://{LOCALHOST}:{ui_port}/json/", timeout=timeout) as resp:
        state: dict[str, Any] = json.load(resp)
    return state


@dataclass(frozen=True)
class SparkDaemon:
    """What the master and the worker share: a Spark port and a UI port, a folder under ``<state>/spark``
    named by ``ROLE``, and the daemons' environment. Nothing to provision: applications register themselves."""

    ROLE: ClassVar[str]
    state: Path
    port: int
    ui_port: int

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.ui_port)

    @property
    def home(self) -> Path:
        return self.state / "spark" / self.ROLE

    def environment(self) -> dict[str, str]:
        return daemon_environment()

    def provision(self) -> None:
        """Nothing to create."""


@dataclass(frozen=True)
class SparkMasterService(SparkDaemon):
    """The standalone master; healthy when its status page says ``ALIVE``."""

    ROLE = "master"
    name: str = "spark-master"

    def prepare(self) -> list[str]:
        self.home.mkdir(parents=True, exist_ok=True)
        args = ["--host", LOCALHOST, "--port", str(self.port), "--webui-port", str(self.ui_port)]
        return launch_command(MASTER_CLASS, args, self.environment())

    def probe(self, timeout: float = 5.0) -> str:
        status = master_state(self.ui_port, timeout)
        if status.get("status") != "ALIVE":
            raise RuntimeError(f"master status is {status.get('status')!r}")
        return f"{master_url(self.port)} ALIVE, {status.get('aliveworkers', 0)} worker(s)"


@dataclass(frozen=True)
class SparkWorkerService(SparkDaemon):
    """One worker registered with the master; healthy when the master lists it as ``ALIVE``."""

    ROLE = "worker"
    master_port: int
    master_ui_port: int
    cores: int
    memory: str
    name: str = "spark-worker"

    def prepare(self) -> list[str]:
        (self.home / "work").mkdir(parents=True, exist_ok=True)
        args = [
            master_url(self.master_port),
            "--host", LOCALHOST, "--port", str(self.port), "--webui-port", str(self.ui_port),
            "--cores", str(self.cores), "--memory", self.memory, "--work-dir", str(self.home / "work"),
        ]  # fmt: skip
        return launch_command(WORKER_CLASS, args, self.environment())

    def probe(self, timeout: float = 5.0) -> str:
        workers = master_state(self.master_ui_port, timeout).get("workers", [])
        mine = [w for w in workers if w.get("port") == self.port and w.get("state") == "ALIVE"]
        if not mine:
            raise RuntimeError(f"the master lists no ALIVE worker on port {self.port}")
        return f"ALIVE, {mine[0].get('cores')} cores, {mine[0].get('memory')} MiB"


def spark_services(state: Path) -> list[SparkMasterService | SparkWorkerService]:
    """Master and worker on the ports from the environment (the master first: the worker needs it)."""
    cores = env_int("RECFLOW_SPARK_WORKER_CORES", os.cpu_count() or 2)
    memory = os.environ.get("RECFLOW_SPARK_WORKER_MEMORY", "4g")
    master = SparkMasterService(state, master_port(), master_ui_port())
    worker = SparkWorkerService(
        state, worker_port(), worker_ui_port(), master.port, master.ui_port, cores=cores, memory=memory
    )
    return [master, worker]
