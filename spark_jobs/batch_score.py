"""Score the active users of one day with a given registry version; publish top-K only if it is valid.

Launch (the batch_scoring DAG builds the same list; the version is resolved by its plan task):
    spark-submit --master 'local[*]' spark_jobs/batch_score.py --lake .recflow/lake --date 2026-11-08 \
        --k 10 --active-days 30 --version als-20261108T0000-3f9a2c1b7e04 --digest <manifest sha256> \
        [--offers ../shared/data/pcard/offerList.csv]

Exit status 1 with one last line ``batch_score failed: <Error>: <message>`` for bad inputs (unknown,
unblessed or unreadable version, a digest other than the planner's, no active users, output rejected
by the suite); the previous partition is kept.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path

from recflow.batch.job import run_batch_scoring
from recflow.batch.layout import ScoringRequest
from recflow.config.logs import configure_json_logs
from recflow.data.offers import OfferCatalogError
from recflow.registry import RegistryError
from recflow.registry.serving import fetch_artifact
from recflow.scoring.core import ScoringError
from recflow.spark.session import get_spark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--date", required=True, type=date.fromisoformat, help="the day being scored")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--active-days", type=int, default=30, help="a user is active with events in these days")
    parser.add_argument("--version", required=True, help="registry version (the DAG pins it when it plans)")
    parser.add_argument("--digest", required=True, help="the manifest sha256 the planner resolved; nothing else loads")
    parser.add_argument("--users-json", default=None, help="score only these user ids (a JSON list)")
    parser.add_argument(
        "--offers",
        default=None,
        help="offer catalog file (the DAG's planner resolves it); with it the day's offers are published with "
        "the scores, without it none",
    )
    args = parser.parse_args(argv)
    configure_json_logs(model_version=args.version)  # JSON lines with the DAG run (AIRFLOW_CTX_*) and version
    users = tuple(str(u) for u in json.loads(args.users_json)) if args.users_json else None
    try:
        request = ScoringRequest(
            day=args.date,
            version=args.version,
            k=args.k,
            active_days=args.active_days,
            users=users,
            offer_catalog=args.offers,
        )
        with tempfile.TemporaryDirectory(prefix="recflow-score-") as tmp:
            artifact = fetch_artifact(args.version, args.digest, Path(tmp))
            spark = get_spark("recflow-batch-score")
            try:
                summary = run_batch_scoring(spark, artifact_dir=artifact, request=request, lake_root=args.lake)
            finally:
                spark.stop()
    except (ScoringError, RegistryError, OfferCatalogError) as exc:
        raise SystemExit(f"batch_score failed: {type(exc).__name__}: {exc}") from exc
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
