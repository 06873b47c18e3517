"""Prometheus metrics of the HTTP API, served on its own ``/metrics``.

Why prometheus_client's multiprocess mode when there are several workers: a scrape reaches one worker,
so each worker's counters alone would jump between scrapes. The server sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start; each worker's values then live in files that ``/metrics`` sums.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from recflow.streaming.metrics import LATENCY_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpMetrics:
    """Requests by endpoint and status, latency by endpoint, the model version served, swaps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recflow_http_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.latency = Histogram(
            "recflow_http_latency_seconds",
            "Time from the request reaching the app to its answer",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model = Gauge(
            "recflow_http_model",
            "1 for the model version a worker serves",
            ["version"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.swaps = Counter("recflow_http_swaps", "Model swaps since start", registry=r)
        self._version: str | None = None

    def set_model(self, version: str) -> None:
        if version == self._version:
            return
        if self._version is not None:
            self.model.remove(self._version)
        self.model.labels(version=version).set(1)
        self._version = version

    def exposition(self) -> bytes:
        """The text format of every worker's metrics (or this process's, with one worker)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined)
        return generate_latest(self.registry)
