"""Prometheus metrics of one ingress replica, in its own registry.

A registry per app (not the process-global one) so that tests can build several apps in
one process and so Ray's own collectors never mix with ours.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

# Request latencies run from a few ms (models list) to minutes (big batches on CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """Request counts by route and status, request latency, images generated, model
    replica failures, the models' fair queues."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kiln_http_requests",
            "HTTP requests answered, by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "kiln_http_request_duration_seconds",
            "Time to answer a request, by route template",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.images = Counter(
            "kiln_images_generated",
            "Images delivered to clients, by model",
            ("model",),
            registry=self.registry,
        )

        # A replica death seen by this process counts once (by the dead actor), however
        # many requests it took down; what became of those requests is counted apart.
        self.replica_failures = Counter(
            "kiln_model_replica_failures",
            "Model replicas that died under requests (process killed, node lost), by model",
            ("model",),
            registry=self.registry,
        )
        self.replica_failed_requests = Counter(
            "kiln_model_replica_failed_requests",
            "Requests whose model replica died under them, by model and outcome "
            "(retried: served on another replica; unavailable: answered 503)",
            ("model", "outcome"),
            registry=self.registry,
        )

        # The fair queue in front of each model (serving.core.scheduling): what waits in
        # this process for admission, and how long admitted calls waited.
        self.queued_images = Gauge(
            "kiln_queue_images",
            "Images waiting for admission to a model, by model and priority class",
            ("model", "priority"),
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "kiln_queue_wait_seconds",
            "Time a model call waited in the model's fair queue, by model and priority class",
            ("model", "priority"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scheduler_restarts = Counter(
            "kiln_scheduler_restarts",
            "Model scheduler actors found dead by this process (their callers re-queued)",
            ("model",),
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
