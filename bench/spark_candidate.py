"""Bench-only engine candidate: Spark Structured Streaming micro-batches, same scoring and answer format.

Why it lives in bench/: the project serves with the Kafka consumer-group scorer (``recflow.streaming``);
this job exists so ``make bench-streaming`` measures the micro-batch floor in the same run, with the
same request parsing, scoring call and answer encoding as the default engine. ``--probe-real-time``
instead tries Spark 4's Real-Time Mode (``trigger(realTime=...)``) on our scoring and reports what
happens as JSON.

Launch (bench/streaming.py builds this command, with the Kafka connector jars from Maven):
    spark-submit --master 'local[2]' --jars <spark-sql-kafka jars> bench/spark_candidate.py \
        --ready-file /tmp/ready --checkpoint /tmp/ckpt [--probe-real-time --probe-out /tmp/rtm.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from recflow.config.kafka import spark_kafka_options
from recflow.config.settings import load_settings
from recflow.registry import ModelRegistry
from recflow.spark.session import get_spark
from recflow.streaming.events import kafka_producer
from recflow.streaming.follower import download_fresh, resolve_champion


def _source(spark: Any, settings: Any) -> Any:
    return (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(settings.kafka))  # the address and the Connection's security
        .option("subscribe", settings.kafka.score_requests_topic)
        .option("startingOffsets", "latest")
        .option("kafka.fetch.max.wait.ms", "5")
        .load()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--probe-real-time", action="store_true")
    parser.add_argument("--probe-out", type=Path, default=None)
    args = parser.parse_args()
    from recflow.models.artifact import load_recommender
    from recflow.streaming.answers import score_requests
    from recflow.streaming.protocol import Request, encode_answer, parse_request

    settings = load_settings()
    registry = ModelRegistry.from_settings(settings)
    resolved = resolve_champion(registry)
    assert resolved is not None, "no champion"
    version = resolved[0]
    model = load_recommender(download_fresh(registry, version, Path(tempfile.mkdtemp())))
    spark = get_spark("recflow-bench-spark-candidate", conf={"spark.sql.shuffle.partitions": "2"})
    if args.probe_real_time:
        _probe_real_time(spark, settings, args)
        return
    producer = kafka_producer(settings.kafka)
    topic = settings.kafka.score_results_topic

    def on_batch(batch: Any, batch_id: int) -> None:
        rows = batch.select("key", "value", "partition", "offset", "timestamp").collect()
        received = int(time.time() * 1000)
        parsed = [
            parse_request(
                r["value"], r["key"], partition=r["partition"], offset=r["offset"],
                timestamp_ms=int(r["timestamp"].timestamp() * 1000),
            )
            for r in rows
        ]  # fmt: skip
        requests = [p for p in parsed if isinstance(p, Request)]
        began = time.perf_counter()
        scored = score_requests(model, requests)
        timing = {"received_at_ms": received, "scoring_ms": (time.perf_counter() - began) * 1000}
        now = int(time.time() * 1000)
        for request, body in zip(requests, scored, strict=True):
            value = encode_answer(
                request, items=body.items, scores=body.scores, source=body.source, model_version=version,
                timing={**timing, "answered_at_ms": now, "batch_size": len(rows)},
            )  # fmt: skip
            producer.produce(topic, key=request.key, value=value)
        if producer.flush(30):
            raise RuntimeError("answers not delivered")

    query = (
        _source(spark, settings)
        .writeStream.foreachBatch(on_batch)
        .option("checkpointLocation", str(args.checkpoint))
        .start()
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        query.stop()

    signal.signal(signal.SIGTERM, stop)
    while query.isActive and query.lastProgress is None:
        time.sleep(0.2)
    args.ready_file.write_text(version)
    query.awaitTermination()
    spark.stop()


def _probe_real_time(spark: Any, settings: Any, args: argparse.Namespace) -> None:
    """Try Real-Time Mode two ways our scoring could run in it; write what happened."""
    results: dict[str, Any] = {}
    attempts = {
        "foreachBatch + realTime": lambda: (
            _source(spark, settings)
            .writeStream.foreachBatch(lambda df, i: None)
            .trigger(realTime="5 seconds")
            .outputMode("update")
            .option("checkpointLocation", str(args.checkpoint / "a"))
            .start()
        ),
        "mapInPandas (Python scoring) -> kafka sink + realTime": lambda: (
            _source(spark, settings)
            .selectExpr("key", "value")
            .mapInPandas(lambda it: it, schema="key binary, value binary")
            .writeStream.format("kafka")
            .options(**spark_kafka_options(settings.kafka))
            .option("topic", settings.kafka.score_requests_dlq_topic)  # no requests flow during the probe
            .trigger(realTime="5 seconds")
            .outputMode("update")
            .option("checkpointLocation", str(args.checkpoint / "b"))
            .start()
        ),
    }
    for name, start in attempts.items():
        try:
            query = start()
            time.sleep(15)
            error = query.exception()
            results[name] = {"started": True, "active": query.isActive, "error": str(error)[:600] if error else None}
            query.stop()
        except Exception as exc:
            results[name] = {"started": False, "error": f"{type(exc).__name__}: {str(exc)[:600]}"}
    if args.probe_out is not None:
        args.probe_out.write_text(json.dumps(results, indent=2))
    args.ready_file.write_text("probe done")
    spark.stop()


if __name__ == "__main__":
    main()
