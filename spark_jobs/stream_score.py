"""Serve the champion's top-K over Kafka with Spark Structured Streaming; hot-swaps on model updates.

Launch (needs the Kafka connector jars; `recflow stream` resolves them and builds this command):
    spark-submit --master 'local[2]' --jars <spark-sql-kafka-0-10_2.13 4.2.0 and deps> \
        spark_jobs/stream_score.py --checkpoint .recflow/stream/checkpoint --ready-file .recflow/run/stream.ready
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from types import FrameType

from recflow.config import load_settings
from recflow.events import kafka_producer
from recflow.registry import ModelRegistry
from recflow.spark import get_spark
from recflow.streaming import ChampionHolder, start_stream


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--ready-file", type=Path, default=None, help="touched once the first batch ran")
    parser.add_argument("--max-per-batch", type=int, default=20000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    holder = ChampionHolder(ModelRegistry.from_settings(settings))
    holder.load()
    spark = get_spark("recflow-stream-scorer", conf={"spark.sql.shuffle.partitions": "2"})
    query = start_stream(
        spark,
        topics=settings.kafka,
        holder=holder,
        producer=kafka_producer(settings.kafka),
        checkpoint=args.checkpoint,
        max_per_batch=args.max_per_batch,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        query.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while query.isActive and query.lastProgress is None:
            time.sleep(0.2)
        if args.ready_file is not None and query.isActive:
            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
            args.ready_file.write_text(f"{holder.version}\n")
        query.awaitTermination()
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
        spark.stop()


if __name__ == "__main__":
    main()
