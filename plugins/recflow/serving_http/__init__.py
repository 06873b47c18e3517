"""The synchronous HTTP API (``recflow serve``): the champion's top-K on request, on the one scoring core.

``POST /v1/recommend`` answers one user; the KServe Open Inference Protocol v2 endpoints (``/v2/...``)
answer the same model for tools that speak it; ``/metrics`` is Prometheus. Requests obey the Kafka
protocol's rules and reason codes (:mod:`recflow.streaming.protocol`), answers come from the same core
(:mod:`recflow.streaming.answers`) and the model from the same follower (:mod:`recflow.streaming.follower`).
"""
