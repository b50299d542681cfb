"""A real Prometheus scraping simulated Istio metrics, shared by the analysis integration tests.

``start_world`` serves Istio-named metrics for every workload in ``WORKLOADS`` from an
``IstioMetrics`` exporter, drives them with ``Traffic`` (which stops by itself at its deadline),
starts Debian's ``prometheus`` binary on a free port scraping the exporter every second (twice:
``spare`` is for a test to stop), and yields once every workload's last ``WINDOW`` seconds are in
Prometheus. Each test reads its own service, so tests never interfere. Without the binary the
tests fail with the install hint: CI installs it, so a skip would hide a broken setup.

A test module makes it a fixture::

    @pytest.fixture(scope="module")
    def world() -> Iterator[PrometheusWorld]:
        yield from start_world()
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from analysis.prometheus import PrometheusProvider
from rollout.api.gate import Analysis
from rollout.sandbox.istio_metrics import IstioMetrics, Traffic, Workload
from rollout.sandbox.prometheus import PrometheusMissing, PrometheusServer

NAMESPACE = "analysis"
WINDOW = 5  # seconds: interval 5s, scrapeInterval 1s
DATA_DEADLINE = 20.0
TRAFFIC_SECONDS = 900.0  # Traffic's own deadline: it stops by itself after the tests

# (service, revision) -> behaviour. Canary revisions are "c1", stable ones "s1".
WORKLOADS = [
    # healthy canary and stable: no errors, p99 ~ 60 ms. Histogram quantiles interpolate within
    # Istio's buckets (50, 100] here: enough requests keep the estimate off the bucket edges.
    Workload(NAMESPACE, "healthy", "c1", rps=500, latency_ms=20, latency_p99_ms=60),
    Workload(NAMESPACE, "healthy", "s1", rps=500, latency_ms=20, latency_p99_ms=60),
    # 5% of the canary's requests fail
    Workload(NAMESPACE, "errors", "c1", rps=200, error_rate=0.05),
    Workload(NAMESPACE, "errors", "s1", rps=100),
    # the canary's p99 is ~900 ms
    Workload(NAMESPACE, "slow", "c1", rps=100, latency_ms=100, latency_p99_ms=900),
    # only stable serves: the canary has no traffic at all
    Workload(NAMESPACE, "quiet", "s1", rps=100),
    # canary 0.8% errors vs stable 0.1%: under max 0.01, over maxIncreaseOverStable 0.005.
    # Many requests, so that the measured rates sit well within the thresholds' margins.
    Workload(NAMESPACE, "relative-errors", "c1", rps=5000, error_rate=0.008),
    Workload(NAMESPACE, "relative-errors", "s1", rps=5000, error_rate=0.001),
    # canary p99 ~200 ms vs stable ~60 ms: under maxMs 500, ~3x stable
    Workload(NAMESPACE, "relative-latency", "c1", rps=1000, latency_ms=20, latency_p99_ms=200),
    Workload(NAMESPACE, "relative-latency", "s1", rps=1000, latency_ms=20, latency_p99_ms=60),
    # for AnalysisTemplates: 2% errors
    Workload(NAMESPACE, "templated", "c1", rps=400, error_rate=0.02),
    # for the Prometheus that is stopped mid-run
    Workload(NAMESPACE, "stopped", "c1", rps=100),
    # the demo's bad canary: 30% errors at 20% of 100 requests/s; must measure 0.3 in every window
    Workload(NAMESPACE, "truth", "c1", rps=20, error_rate=0.3),
    Workload(NAMESPACE, "truth", "s1", rps=80),
    # for `rollout analyze`
    Workload(NAMESPACE, "cli-healthy", "c1", rps=100, latency_ms=20, latency_p99_ms=60),
    Workload(NAMESPACE, "cli-healthy", "s1", rps=100, latency_ms=20, latency_p99_ms=60),
    Workload(NAMESPACE, "cli-errors", "c1", rps=200, error_rate=0.05),
    Workload(NAMESPACE, "cli-errors", "s1", rps=100),
]


@dataclass
class PrometheusWorld:
    metrics: IstioMetrics
    traffic: Traffic
    prometheus: PrometheusServer
    # A second Prometheus scraping the same exporter, for a test to stop. Started with the
    # first one: Prometheus's first scrape waits ~5 s for its target discovery to settle.
    spare: PrometheusServer
    exporter: str  # host:port of the exporter's /metrics

    @property
    def url(self) -> str:
        return self.prometheus.url

    def provider(self, **options: Any) -> PrometheusProvider:
        return PrometheusProvider(self.url, **options)


def analysis(*checks: dict[str, Any], **fields: Any) -> Analysis:
    """A gate measured every 5 s on a Prometheus scraping every 1 s: a 5 s window."""
    return Analysis.model_validate(
        {"interval": "5s", "prometheus": {"scrapeInterval": "1s"}, "checks": list(checks), **fields}
    )


def instant(url: str, promql: str) -> dict[str, Any]:
    """Prometheus's own answer to an instant query (no client library in between)."""
    query = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as reply:
            body: dict[str, Any] = json.load(reply)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    return body


def requests_in_window(url: str, namespace: str = NAMESPACE) -> dict[tuple[str, str], float]:
    """Requests each (service, revision) served in the last WINDOW seconds, per Prometheus."""
    promql = (
        "sum by (destination_canonical_service, destination_canonical_revision) "
        f'(increase(istio_request_duration_milliseconds_count{{destination_workload_namespace="{namespace}"}}'
        f"[{WINDOW}s]))"
    )
    body = instant(url, promql)
    found = {}
    for series in body.get("data", {}).get("result", []):
        labels = series["metric"]
        key = (labels["destination_canonical_service"], labels["destination_canonical_revision"])
        found[key] = float(series["value"][1])
    return found


def wait_for_data(
    url: str,
    workloads: list[Workload],
    deadline: float = DATA_DEADLINE,
    namespace: str = NAMESPACE,
) -> None:
    """Poll until Prometheus holds (nearly) a full window of every workload's traffic."""
    give_up = time.monotonic() + deadline
    missing: list[str] = []
    while time.monotonic() < give_up:
        seen = requests_in_window(url, namespace)
        missing = [
            f"{w.service}/{w.revision}"
            for w in workloads
            if seen.get((w.service, w.revision), 0.0) < 0.8 * w.rps * WINDOW
        ]
        if not missing:
            return
        time.sleep(0.25)  # polling Prometheus, not waiting blindly
    raise AssertionError(f"no full window of data within {deadline}s for: {', '.join(missing)}")


def start_prometheus(targets: list[str]) -> PrometheusServer:
    server = PrometheusServer(targets, port=0, scrape_interval="1s")
    try:
        server.start()
    except PrometheusMissing as missing:
        pytest.fail(f"{missing} (CI installs it with scripts/install-prometheus)", pytrace=False)
    return server


def start_world() -> Iterator[PrometheusWorld]:
    """Start the exporter, its traffic and two Prometheus servers; stop them when resumed."""
    metrics = IstioMetrics()
    exporter = f"127.0.0.1:{metrics.serve(0)}"
    traffic = Traffic(metrics, tick=0.05)
    for workload in WORKLOADS:
        traffic.set(workload)
    traffic.run(until=time.monotonic() + TRAFFIC_SECONDS)
    servers: list[PrometheusServer] = []
    try:
        servers.append(start_prometheus([exporter]))
        servers.append(start_prometheus([exporter]))
        wait_for_data(servers[0].url, WORKLOADS)
        yield PrometheusWorld(metrics, traffic, servers[0], servers[1], exporter)
    finally:
        for server in servers:
            server.stop()  # by its PID; a no-op for one a test already stopped
        traffic.stop()
        metrics.close()
