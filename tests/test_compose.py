"""docker-compose.yml, checked without a Docker engine: the Compose Specification schema, then every reference.

The schema is read in place from ``../shared/specs/compose-spec.json`` (relative to the repository root;
it is never copied into the repository). Beyond the schema: every service, volume, network and
``depends_on`` target resolves, every ``${VAR}`` has a value in ``.env.example`` or a default, every image
is pinned to an exact version (the Airflow and Spark ones to the versions the lock resolves), every
long-running service has a health check, and the Dockerfile installs from ``uv.lock``.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "specs" / "compose-spec.json"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``, ``${NAME?error}``; ``$$`` escapes.
_VAR = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
_EXACT_TAG = re.compile(r"^[^:@\s]+:(?:[a-z0-9.-]*-)?v?\d+\.\d+(?:\.\d+)?(?:[-.][A-Za-z0-9.-]+)?$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _lock_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    from jsonschema import Draft7Validator

    assert SCHEMA.is_file(), f"the Compose Specification schema is read in place from {SCHEMA}; it is missing"
    schema = json.loads(SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    errors = sorted(Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_validator_rejects_a_broken_file(compose: dict[str, Any]) -> None:
    """The schema check must be able to fail: an unknown key and a wrongly typed field are caught."""
    from jsonschema import Draft7Validator

    broken = json.loads(json.dumps(compose))
    broken["services"]["postgres"]["helthcheck"] = {}
    broken["services"]["kafka"]["depends_on"] = 3
    errors = list(Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))
    assert len(errors) >= 2


def test_every_variable_resolves_and_the_example_holds_placeholders_only(compose: dict[str, Any]) -> None:
    example = _env_example()
    unresolved = set()
    for text in _strings(compose):
        for match in _VAR.finditer(text):
            has_default = match.group("op") in {":-", "-"}
            if match.group("name") not in example and not has_default:
                unresolved.add(match.group("name"))
    assert not unresolved, f"variables with no value in .env.example and no default: {sorted(unresolved)}"
    secret = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
    real = {k: v for k, v in example.items() if secret.search(k) and not v.startswith("change-me")}
    assert not real, f".env.example must hold placeholders only: {sorted(real)}"


def test_every_reference_resolves(compose: dict[str, Any]) -> None:
    services: dict[str, Any] = compose["services"]
    networks = set(compose.get("networks") or {})
    volumes = set(compose.get("volumes") or {})
    targets = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep, spec in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            assert dep in services, f"{name} depends on unknown service {dep}"
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no check"
            if spec.get("condition") == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot job for {name}"
        for net in svc.get("networks") or []:
            assert net in networks, f"{name} uses undeclared network {net}"
        for mount in svc.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        if "build" in svc:
            assert svc["build"]["target"] in targets, f"{name} builds unknown Dockerfile target"
    used = {n for svc in services.values() for n in svc.get("networks") or []}
    used_volumes = {m.split(":", 1)[0] for svc in services.values() for m in svc.get("volumes") or []}
    assert networks <= used and volumes <= used_volumes, "declared but unused networks or volumes"


def test_images_are_pinned_to_exact_versions_matching_the_lock(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert "image" in svc, f"{name} has no image"
        assert _EXACT_TAG.match(svc["image"]), f"{name}: {svc['image']} is not an exact version tag"
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    for arg in ("AIRFLOW_IMAGE", "SPARK_IMAGE", "MAVEN_IMAGE"):
        assert _EXACT_TAG.match(args[arg]), f"Dockerfile {arg}={args[arg]} is not an exact version tag"
    assert args["AIRFLOW_IMAGE"].startswith(f"apache/airflow:{_lock_version('apache-airflow')}-")
    assert args["SPARK_IMAGE"].startswith(f"apache/spark:{_lock_version('pyspark')}-")
    assert "uv sync --frozen" in DOCKERFILE.read_text(), "images must install from uv.lock"


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck") or {}
        if svc.get("restart") == "no":
            continue  # a one-shot job (the init service) is waited for by completion, not health
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    required = {"postgres", "kafka", "s3", "spark-master", "airflow-init", "airflow-api-server", "airflow-scheduler",
                "airflow-dag-processor", "airflow-triggerer", "scorer", "serve"}  # fmt: skip
    assert required <= set(compose["services"]), sorted(required - set(compose["services"]))
    workers = [n for n, s in compose["services"].items() if "deploy.worker.Worker" in " ".join(s.get("command", []))]
    assert len(workers) == 2, workers
