"""Jar sets resolved by Maven from Maven Central into a git-ignored cache.

Why Maven and not tarballs: the versions live in small ``poms/<set>.xml`` files in the repo, Maven
resolves the transitive dependencies and caches them in ``~/.m2``, and no binary is checked in. Each set
lands in ``<state>/jars/<set>/`` with a marker holding the POM's hash, so a resolved set is reused and an
edited POM is resolved again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from recflow.config.settings import state_dir
from recflow.services.process import ServiceError, file_lock, tail

log = logging.getLogger(__name__)

POMS_DIR = Path(__file__).resolve().parent / "poms"
MARKER = ".resolved"
# Pinned so resolution behaves the same whatever Maven version the user has (3.8 defaults to 2.8).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

_INSTALL_HINTS = {
    "java": "install a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME",
    "mvn": "install Apache Maven 3.8+ (e.g. `apt-get install maven`) or put `mvn` on PATH",
}


@dataclass(frozen=True)
class JarSet:
    """A named set of jars, described by ``poms/<name>.xml``."""

    name: str

    @property
    def pom(self) -> Path:
        return POMS_DIR / f"{self.name}.xml"


KAFKA = JarSet("kafka")
S3PROXY = JarSet("s3proxy")
SPARK_KAFKA = JarSet("spark-kafka")
SPARK_S3A = JarSet("spark-s3a")


def require_tool(name: str) -> str:
    """Absolute path of ``java`` or ``mvn``, or a :class:`ServiceError` saying what to install."""
    if name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"`{name}` not found on PATH: {_INSTALL_HINTS.get(name, 'install it')}")
    return found


def jars_dir(jar_set: JarSet, state: Path | None = None) -> Path:
    return (state or state_dir()) / "jars" / jar_set.name


def mvn_argv(mvn: str, pom: Path, output_dir: Path) -> list[str]:
    """The Maven command that copies a POM's dependencies (transitively) into ``output_dir``."""
    return [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
    ]


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def is_resolved(jar_set: JarSet, state: Path | None = None) -> bool:
    marker = jars_dir(jar_set, state) / MARKER
    return marker.is_file() and marker.read_text().strip() == _pom_digest(jar_set.pom)


def resolve(jar_set: JarSet, state: Path | None = None, *, timeout: float = 900.0) -> Path:
    """Resolve ``jar_set`` unless already done; return its folder.

    Maven writes into a temporary sibling folder that is renamed at the end, so a run killed midway never
    leaves a half-filled set that looks resolved.
    """
    target = jars_dir(jar_set, state)
    if is_resolved(jar_set, state):
        return target
    with file_lock(target.parent / f".{jar_set.name}.lock"):
        if is_resolved(jar_set, state):
            return target
        require_tool("java")
        mvn = require_tool("mvn")
        tmp = Path(tempfile.mkdtemp(prefix=f".{jar_set.name}-", dir=target.parent))
        argv = mvn_argv(mvn, jar_set.pom, tmp)
        log.info("resolving jar set %s with Maven (%s)", jar_set.name, jar_set.pom)
        mvn_log = tmp.parent / f"{jar_set.name}.mvn.log"
        try:
            with mvn_log.open("wb") as out:
                done = subprocess.run(  # argument list, no shell
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
                )
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ServiceError(f"Maven took over {timeout:.0f}s resolving {jar_set.name}") from exc
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ServiceError(
                f"Maven failed to resolve {jar_set.name} (exit {done.returncode}); "
                f"is Maven Central reachable? Log: {mvn_log}\n{tail(mvn_log)}"
            )
        (tmp / MARKER).write_text(_pom_digest(jar_set.pom) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        mvn_log.unlink(missing_ok=True)
    return target


_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d+(?:\.\d+)+[^/]*)\.jar$")


def artifact_name(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients`` (the version is the first ``-N.N`` segment)."""
    match = _JAR_NAME.match(jar)
    return match.group("artifact") if match else jar.removesuffix(".jar")


def _pyspark_jars_dir() -> Path | None:
    spec = importlib.util.find_spec("pyspark")  # locate, do not import: pyspark is heavy
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "jars"


def select_extra_jars(candidates: list[Path], provided: set[str]) -> list[Path]:
    """The candidates whose artifact Spark does not already ship (a second copy would clash)."""
    return sorted(jar for jar in candidates if artifact_name(jar.name) not in provided)


def spark_kafka_jars(state: Path | None = None) -> list[Path]:
    """Jars to pass to ``spark-submit --jars`` for Structured Streaming on Kafka (resolving if needed).

    The connector must match pyspark's version exactly; Scala, Hadoop and logging jars that pyspark
    already ships are left out, which leaves the connector, its token provider, kafka-clients and
    commons-pool2.
    """
    return _extra_jars(SPARK_KAFKA, state)


def _extra_jars(jar_set: JarSet, state: Path | None) -> list[Path]:
    """``jar_set``'s jars (resolved if needed) less the artifacts pyspark already ships."""
    folder = resolve(jar_set, state)
    spark_jars = _pyspark_jars_dir()
    provided = (
        {artifact_name(p.name) for p in spark_jars.glob("*.jar")}
        if spark_jars is not None and spark_jars.is_dir()
        else set()
    )
    return select_extra_jars(list(folder.glob("*.jar")), provided)


def spark_s3a_jars(state: Path | None = None) -> list[Path]:
    """Jars that give Spark the ``s3a://`` filesystem: ``hadoop-aws`` matching pyspark's Hadoop (3.5.0) and
    the AWS SDK v2 bundle it was built with (resolving if needed; Hadoop's own jars are left out).

    Why a class path and not ``--jars``: the SDK bundle is about 650 MB, and ``--jars`` would copy it to
    every executor of every application. Each node keeps the set at the same path (here the state folder;
    in an image, baked in) and ``spark.{driver,executor}.extraClassPath`` names it.
    """
    return _extra_jars(SPARK_S3A, state)
