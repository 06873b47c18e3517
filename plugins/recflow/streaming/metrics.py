"""Prometheus metrics of the scorer, on ``127.0.0.1:$RECFLOW_SCORER_METRICS_PORT`` (default 9308).

Why a registry of its own: tests and the in-process benchmark build several scorers in one interpreter;
the global default registry would refuse the second set of metric names.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from recflow.config.settings import scorer_metrics_port

#: Latency buckets in seconds: dense where the goals are (10 ms p50, 50 ms p99), coarse up to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ScorerMetrics:
    """requests, answers (by source), dead letters (by reason), latency, model version, swaps, lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("recflow_scorer_requests", "Records read from the request topic", registry=r)
        self.answers = Counter("recflow_scorer_answers", "Answers produced", ["source"], registry=r)
        self.dlq = Counter("recflow_scorer_dlq", "Records sent to the dead-letter topic", ["reason"], registry=r)
        self.latency = Histogram(
            "recflow_scorer_latency_seconds",
            "Request record timestamp to answer produced",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Gauge("recflow_scorer_model", "1 for the model version being served", ["version"], registry=r)
        self.swaps = Counter("recflow_scorer_swaps", "Model swaps since start", registry=r)
        self.consumer_lag = Gauge(
            "recflow_scorer_consumer_lag", "Records not yet read from the request topic", registry=r
        )
        self.model_load_failures = Gauge(
            "recflow_scorer_model_load_failures",
            "New champions that did not replace the serving model since start, by failed stage",
            ["stage"],
            registry=r,
        )
        self._version: str | None = None

    def watch_load_failures(self, counts: dict[str, int]) -> None:
        """Export the follower's failure counts, read at each scrape (they change on its own thread)."""
        for stage in counts:
            self.model_load_failures.labels(stage=stage).set_function(partial(counts.__getitem__, stage))

    def set_model(self, version: str) -> None:
        if self._version is not None:
            self.model.remove(self._version)
        self.model.labels(version=version).set(1)
        self._version = version

    def serve(self, port: int | None = None, addr: str = "127.0.0.1") -> Any:
        """Start the HTTP endpoint on a daemon thread; returns the server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(
            port if port is not None else scorer_metrics_port(), addr=addr, registry=self.registry
        )
        return server
