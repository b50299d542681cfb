"""Istio's standard metrics, as a sidecar would export them, for simulated traffic.

``istio_requests_total`` (counter) and ``istio_request_duration_milliseconds`` (histogram
with Istio's default buckets), with Istio's label names, served on /metrics by
``prometheus_client`` for a real Prometheus to scrape. ``Traffic`` generates requests for
workloads whose behaviour (rate, error share, latency) a test or the traffic simulator sets,
in fixed ticks driven by one thread that stops by itself.

Error share. A revision with ``error_rate`` r fails exactly r of its requests, spread evenly
(``ErrorShare``): any n consecutive requests hold floor(n*r) or ceil(n*r) failures, so every
measurement window tells the truth. Failing each request by a coin flip (as before) gave a
binomial spread instead: the demo's canary at 10-20 requests/s holds 40-80 requests in its 5 s
window, where a coin flip at 0.3 reads 0.5 or more in one window out of 160 (40 requests) to one
out of 7,000 (80) — the "0.3 measured as 0.50" of issue 12. The query was right: errors and
requests come from the same scrapes, so their ``increase()`` extrapolation cancels in the ratio.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

# Istio's default buckets for istio_request_duration_milliseconds.
ISTIO_BUCKETS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)  # fmt: skip
LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_version",
    "response_code",
    "request_protocol",
)


@dataclass(frozen=True)
class Workload:
    """One revision of one service, and how it behaves."""

    namespace: str
    service: str
    revision: str
    rps: float = 50.0
    error_rate: float = 0.0
    latency_ms: float = 20.0  # median, log-normal
    latency_p99_ms: float | None = None  # default: 3x the median
    workload: str | None = None  # destination_workload; default: ``<service>-<revision>``
    destination_service: str | None = None  # the host's Service; default: ``service``

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.service, self.revision)


class ErrorShare:
    """Which requests fail: exactly ``error_rate`` of each revision's requests, evenly spread.

    Per revision, each request adds ``error_rate`` to a running fraction that starts at 0.5 and
    fails when it reaches 1 (keeping the remainder): after n requests round(n * r) have failed,
    and any n consecutive requests hold floor(n * r) or ceil(n * r) failures. Thread-safe.
    """

    def __init__(self) -> None:
        self._owed: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def fails(self, workload: Workload) -> bool:
        """Whether the next request ``workload`` serves fails."""
        rate = min(1.0, max(0.0, workload.error_rate))
        with self._lock:
            owed = self._owed.get(workload.key, 0.5) + rate
            failed = owed >= 1.0
            self._owed[workload.key] = owed - 1.0 if failed else owed
        return failed


def sample(
    workload: Workload, rng: random.Random, errors: ErrorShare | None = None
) -> tuple[int, float]:
    """(response code, milliseconds) of one request served by ``workload``: a 500 with its
    error share, a log-normal latency with its median and p99 (default: 3x the median).

    With ``errors`` (what the simulators pass) the share is exact over any run of requests;
    without, each request fails by a coin flip, which is only right on average."""
    if errors is not None:
        failed = errors.fails(workload)
    else:
        failed = rng.random() < workload.error_rate
    code = 500 if failed else 200
    p99 = workload.latency_p99_ms or 3 * workload.latency_ms
    sigma = max(math.log(max(p99, workload.latency_ms) / workload.latency_ms) / 2.326, 1e-6)
    return code, workload.latency_ms * math.exp(rng.gauss(0, sigma))


class IstioMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "istio_requests_total",
            "Requests, as Istio counts them.",
            LABELS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds.",
            LABELS,
            buckets=ISTIO_BUCKETS,
            registry=self.registry,
        )
        self._servers: list[WSGIServer] = []
        # The labelled children per (workload, code): labels() per request cost more than the
        # increment. Bounded by the series the registry keeps anyway.
        self._children: dict[tuple[Workload, int], tuple[Any, Any]] = {}

    def record(self, workload: Workload, code: int, millis: float) -> None:
        children = self._children.get((workload, code))
        if children is None:
            labels = self._labels(workload, code)
            children = (self.requests.labels(**labels), self.duration.labels(**labels))
            self._children[(workload, code)] = children
        children[0].inc()
        children[1].observe(millis)

    def _labels(self, workload: Workload, code: int) -> dict[str, str]:
        service = workload.destination_service or workload.service
        host = f"{service}.{workload.namespace}.svc.cluster.local"
        labels = {
            "reporter": "destination",
            "source_workload": "loadgen",
            "source_workload_namespace": workload.namespace,
            "destination_workload": workload.workload or f"{workload.service}-{workload.revision}",
            "destination_workload_namespace": workload.namespace,
            "destination_service": host,
            "destination_service_name": service,
            "destination_service_namespace": workload.namespace,
            "destination_canonical_service": workload.service,
            "destination_canonical_revision": workload.revision,
            "destination_version": workload.revision,
            "response_code": str(code),
            "request_protocol": "http",
        }
        return labels

    def serve(self, port: int = 0) -> int:
        """Serve /metrics on 127.0.0.1 in a thread; return the port (0: any free one)."""
        server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._servers.append(server)
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop serving /metrics."""
        while self._servers:
            server = self._servers.pop()
            server.shutdown()
            server.server_close()


class Traffic:
    """Requests for a set of workloads, ``tick`` seconds at a time, until ``stop`` or ``until``."""

    def __init__(self, metrics: IstioMetrics, *, tick: float = 0.1, seed: int = 7) -> None:
        self.metrics = metrics
        self.tick = tick
        self._random = random.Random(seed)
        self._errors = ErrorShare()
        self._workloads: dict[tuple[str, str, str], Workload] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._carry: dict[tuple[str, str, str], float] = {}

    def set(self, workload: Workload) -> None:
        with self._lock:
            self._workloads[workload.key] = workload

    def update(self, namespace: str, service: str, revision: str, **changes: float) -> None:
        with self._lock:
            key = (namespace, service, revision)
            self._workloads[key] = replace(self._workloads[key], **changes)  # type: ignore[arg-type]

    def remove(self, namespace: str, service: str, revision: str) -> None:
        with self._lock:
            self._workloads.pop((namespace, service, revision), None)

    def step(self, seconds: float) -> None:
        """Generate ``seconds`` worth of requests for every workload."""
        with self._lock:
            workloads = list(self._workloads.values())
        for workload in workloads:
            due = workload.rps * seconds + self._carry.get(workload.key, 0.0)
            count = int(due)
            self._carry[workload.key] = due - count
            for _ in range(count):
                self.metrics.record(workload, *sample(workload, self._random, self._errors))

    def run(self, until: float) -> threading.Thread:
        """Generate traffic in a thread until ``stop()`` or ``until`` (a monotonic deadline)."""

        def loop() -> None:
            last = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < until:
                self._stop.wait(self.tick)
                now = time.monotonic()
                self.step(now - last)
                last = now

        thread = threading.Thread(target=loop, name="istio-traffic", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
