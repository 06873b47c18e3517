"""The ``recflow`` command line (``recflow services up|down|status``; more subcommands plug in).

To add a subcommand, write an ``_add_<name>(subparsers)`` function that creates its parser and sets
``func`` (a ``(argparse.Namespace) -> int`` handler) via ``set_defaults``, and append it to
``SUBCOMMANDS``. What this module imports at the top stays light (no pandas, Spark, TensorFlow or Airflow),
so ``recflow --help`` and ``recflow services status`` start fast; a handler needing more defers it.
Every handler returns the process exit code; a :class:`ServiceError` becomes a message and exit 1.

Airflow is orchestration's alone (the CLI runs where it may not be installed): ``recflow provision
--connections`` writes the Airflow Connections through orchestration's own entry point, in a subprocess.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date

from recflow.cli.registry import add_registry
from recflow.cli.scorer import add_scorer
from recflow.cli.serve import add_serve
from recflow.config.settings import load_settings
from recflow.services import claim_services, ensure_services_up, format_status, manager, service_status, services_down
from recflow.services.kafka import create_topics
from recflow.services.local_airflow import (
    airflow_env,
    api_base_url,
    postgres_available,
    shell_exports,
    standalone_env,
)
from recflow.services.process import ServiceError
from recflow.services.s3 import create_buckets
from recflow.services.spark import master_url
from recflow.serving_http.launcher import stop_all_servers
from recflow.streaming.launcher import stop_all_scorers

#: What ``recflow provision --connections`` runs: the Airflow side of provisioning, in its own process.
CONNECTIONS_COMMAND = (sys.executable, "-m", "recflow.orchestration.provision")

Handler = Callable[[argparse.Namespace], int]


def _services_up(args: argparse.Namespace) -> int:
    began = time.monotonic()
    # The defaults (Kafka, S3); PostgreSQL and the Spark cluster only on request.
    services = manager.default_services()
    if args.with_postgres:
        services.append(manager.postgres_service())
    if args.with_spark:
        services += manager.spark_cluster()
    started = ensure_services_up(services=services, timeout=args.timeout)
    claim_services()  # asked for explicitly: a test run that had started them must not stop them
    rows = service_status()
    print(format_status(rows))
    what = f"started {', '.join(started)}" if started else "all already running"
    print(f"services up ({what}) in {time.monotonic() - began:.1f}s")
    if args.with_spark:
        print(f"Spark jobs go to the cluster with: export RECFLOW_SPARK_MASTER={master_url()}")
    return 0 if all(r.healthy for r in rows) else 1


def _services_down(args: argparse.Namespace) -> int:
    for name in [*stop_all_servers(), *stop_all_scorers()]:
        print(f"stopped {name}")
    stopped = services_down()
    claim_services()  # nothing left for a shared user to stop
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _services_status(args: argparse.Namespace) -> int:
    rows = service_status()
    print(format_status(rows))
    return 0 if all(r.healthy for r in rows) else 1


def _add_services(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "services",
        help="run the local Kafka broker and S3 server",
        description="Manage the local Kafka 4 (KRaft) broker and S3Proxy server under the state folder "
        "(RECFLOW_STATE, default .recflow/), and on request PostgreSQL. Ports: RECFLOW_KAFKA_PORT, "
        "RECFLOW_KAFKA_CONTROLLER_PORT, RECFLOW_S3_PORT, RECFLOW_PG_PORT.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{up,down,status}")
    up = actions.add_parser("up", help="start (or reuse) the services, create topics and buckets")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per service (default 120)")
    up.add_argument(
        "--with-postgres",
        action="store_true",
        help="also start PostgreSQL on RECFLOW_PG_PORT (default 5433) with an `airflow` database, for the "
        "real scheduler; `down` stops it too",
    )
    up.add_argument(
        "--with-spark",
        action="store_true",
        help="also start a Spark standalone master and worker on 127.0.0.1 (RECFLOW_SPARK_MASTER_PORT, default "
        "7077); point the Spark Connection at it with RECFLOW_SPARK_MASTER=spark://127.0.0.1:<port>",
    )
    up.set_defaults(func=_services_up)
    actions.add_parser("down", help="stop the services and check nothing is left").set_defaults(func=_services_down)
    actions.add_parser("status", help="show each service; exit 0 only if all are healthy").set_defaults(
        func=_services_status
    )


def _demo(args: argparse.Namespace) -> int:
    # deferred: the demo reads back its results with pandas and the registry (boto3)
    from recflow.cli.demo import DemoConfig, DemoError, format_summary, run_demo

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds the demo: its Airflow run, Spark jobs and scorer are stopped

    signal.signal(signal.SIGTERM, interrupted)
    config = DemoConfig(keep_services=args.keep_services, burst=args.burst)
    if args.end:
        config.end = date.fromisoformat(args.end)
    try:
        summary = run_demo(config)
    except DemoError as exc:
        print(f"recflow demo: FAILED: {exc}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the whole workflow once on local services")
    parser.add_argument("--end", default=None, help="exclusive end day of the demo data (YYYY-MM-DD)")
    parser.add_argument("--burst", type=int, default=1000, help="streaming requests to send")
    parser.add_argument("--keep-services", action="store_true", help="leave Kafka and S3 running afterwards")
    parser.set_defaults(func=_demo)


def _airflow_env(args: argparse.Namespace) -> int:
    print(shell_exports(airflow_env()))
    return 0


def _add_airflow_env(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "airflow-env",
        help="print the exports that point Airflow at these DAGs, the SQLite DB and the services",
        description='Use as: eval "$(recflow airflow-env)". Variables you already set win; the execution API '
        "URL is derived from AIRFLOW__API__HOST / AIRFLOW__API__PORT (or AIRFLOW__API__BASE_URL).",
    )
    parser.set_defaults(func=_airflow_env)


def _airflow(args: argparse.Namespace) -> int:
    services = manager.default_services()
    database_url = None
    if not os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        if postgres_available():
            postgres = manager.postgres_service()
            services.append(postgres)
            database_url = postgres.sqlalchemy_url()
        else:
            print(
                "recflow: PostgreSQL is not installed: using SQLite (one writer at a time; backfills may hit "
                "'database is locked'). Install it with: apt-get install postgresql",
                file=sys.stderr,
            )
    ensure_services_up(services=services)
    claim_services()
    env = standalone_env(os.environ, database_url)
    home = env["AIRFLOW_HOME"]
    os.makedirs(home, exist_ok=True)
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[0]
    print(f"recflow: Airflow UI at {api_base_url(env)} (answers after a minute or two: every component loads the DAGs)")
    print(
        f"recflow: metadata DB {db}, LocalExecutor with parallelism {env['AIRFLOW__CORE__PARALLELISM']}, "
        f"execution API {env['AIRFLOW__CORE__EXECUTION_API_SERVER_URL']}"
    )
    print(
        f"recflow: login admin, password in {home}/simple_auth_manager_passwords.json.generated "
        "(printed below on the first start only)",
        flush=True,
    )
    airflow_bin = os.path.join(os.path.dirname(sys.executable), "airflow")
    os.execve(airflow_bin, [airflow_bin, "standalone"], env)  # replaces this process: Ctrl-C reaches Airflow


def _add_airflow(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "airflow",
        help="run `airflow standalone` with these DAGs and the services (what `make airflow` does)",
        description="Starts Kafka, the S3 server and, when installed, PostgreSQL as the metadata DB (else "
        "SQLite), then `airflow standalone`. Your AIRFLOW__* variables win: AIRFLOW__API__PORT (default "
        "8080, Airflow's own), AIRFLOW__API__HOST (default 127.0.0.1), AIRFLOW__CORE__PARALLELISM (default "
        "one per core), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN.",
    )
    parser.set_defaults(func=_airflow)


def _provision(args: argparse.Namespace) -> int:
    settings = load_settings()
    create_buckets(settings.s3, settings.s3.buckets)
    print(f"buckets on {settings.s3.endpoint_url}: {', '.join(settings.s3.buckets)}")
    create_topics(settings.kafka.bootstrap_servers, settings.kafka.topics, security=settings.kafka.security)
    print(f"topics on {settings.kafka.bootstrap_servers}: {', '.join(settings.kafka.topics)}")
    return _write_connections() if args.connections else 0


def _write_connections() -> int:
    """Write the Airflow Connections with orchestration's entry point; its exit code is ours.

    Why a subprocess: the Connections are Airflow's business, and the CLI imports nothing that reaches
    Airflow (the architecture test holds it to that). The child inherits the environment it reads.
    """
    sys.stdout.flush()  # our lines first, then the child's
    return subprocess.run(CONNECTIONS_COMMAND, check=False).returncode


def _add_provision(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "provision",
        help="create the buckets and topics on the configured S3 and Kafka (services recflow does not run)",
        description="Idempotent. Targets RECFLOW_S3_ENDPOINT and RECFLOW_KAFKA_BOOTSTRAP; with --connections "
        "also writes the recflow_s3, kafka_default and spark_default Connections to Airflow's metadata DB "
        "(the docker-compose init service).",
    )
    parser.add_argument("--connections", action="store_true", help="also create the Airflow Connections")
    parser.set_defaults(func=_provision)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_services,
    _add_demo,
    _add_airflow_env,
    add_scorer,
    add_serve,
    _add_airflow,
    _add_provision,
    add_registry,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recflow", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``recflow`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="recflow: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.func
    try:
        return handler(args)
    except ServiceError as exc:
        print(f"recflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recflow: interrupted", file=sys.stderr)
        return 130
