"""Score every active user with the champion (or a given version) and write top-K to the lake.

Launch (the batch_scoring DAG builds the same list):
    spark-submit --master 'local[*]' spark_jobs/batch_score.py --lake .recflow/lake --date 2026-11-08 --k 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path

from recflow.scoring import fetch_artifact, run_batch_scoring
from recflow.spark import get_spark


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True)
    parser.add_argument("--date", required=True, type=date.fromisoformat, help="the day being scored")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--active-days", type=int, default=30, help="a user is active with events in these days")
    parser.add_argument("--version", default=None, help="registry version (default: the current champion)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recflow-score-") as tmp:
        version, artifact = fetch_artifact(args.version, Path(tmp))
        spark = get_spark("recflow-batch-score")
        try:
            summary = run_batch_scoring(
                spark,
                artifact_dir=artifact,
                version=version,
                lake_root=args.lake,
                day=args.date,
                k=args.k,
                active_days=args.active_days,
            )
        finally:
            spark.stop()
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
