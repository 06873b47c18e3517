"""The streaming scorer: a Kafka consumer-group service that answers score requests in milliseconds.

Why not Spark Structured Streaming: its micro-batch floor (hundreds of ms per trigger on 2 cores) alone
breaks a 50 ms p99, and Real-Time Mode cannot run our Python scoring (see bench/results/streaming.md).
A plain consumer that batches each poll into one matrix product is both faster and simpler to keep up:
it scales out the way Kafka does (more partitions, more copies of the same process in one group).

Modules: :mod:`.protocol` (requests, answers, dead letters), :mod:`.answers` (requests in, top-k out),
:mod:`.follower` (follows the champion off the serving path), :mod:`.engine` (the consume -> score ->
produce -> commit loop), which calls :mod:`.replies` (a poll's answers and dead letters), :mod:`.outbox`
(deliveries and retries) and :mod:`.offsets` (commits); :mod:`.service` (the process, ``python -m
recflow.streaming``), :mod:`.metrics` (Prometheus), :mod:`.launcher` (start/stop/status as a detached
process), :mod:`.client` (callers' side), :mod:`.probe` and :mod:`.reconcile` (checks).
"""
