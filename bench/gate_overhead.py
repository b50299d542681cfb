"""Benchmark of the analysis gate against a real Prometheus, run by hand (never as a test).

    .venv/bin/python bench/gate_overhead.py                    # 200 measurements, ~20 s
    .venv/bin/python bench/gate_overhead.py --measurements 50  # a quick look

It starts the sandbox's Istio-metrics exporter with simulated traffic for a canary and a stable
revision, and Debian's ``prometheus`` binary scraping it every second; waits for a full 5 s
window of data; then, for a gate of four checks (errorRate with maxIncreaseOverStable,
latencyP99 with maxRatioToStable, and two AnalysisTemplates):

1. queries per measurement: ``GateRunner.measure`` of every check, N times, counting the queries
   Prometheus itself served (``prometheus_http_requests_total{handler="/api/v1/query"}`` read
   from its /metrics, which is not a query). Expected: one per check.
2. overhead per measurement: ``GateRunner.measure_one`` (PromQL built, PrometheusProvider with
   its retry wrapper, token and header handling, the JSON parsed, the verdict) minus a bare
   ``requests`` GET of the same PromQL at the same evaluation time on a keep-alive session, the
   two in alternating order, N times per check. Target: at most 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from datetime import UTC, datetime

import requests

from analysis.prometheus import PrometheusProvider
from analysis.runner import GateContext, GateRunner
from rollout.api.gate import Analysis
from rollout.api.template import AnalysisTemplateSpec
from rollout.sandbox.istio_metrics import IstioMetrics, Traffic, Workload
from rollout.sandbox.prometheus import PrometheusServer

NS = "bench"
SERVICE = "reviews"
WINDOW = 5
TARGET_MS = 5.0
WORKLOADS = [
    Workload(NS, SERVICE, "canary", rps=200, error_rate=0.002, latency_ms=20, latency_p99_ms=80),
    Workload(NS, SERVICE, "stable", rps=200, error_rate=0.001, latency_ms=20, latency_p99_ms=60),
]
TEMPLATES = {
    "error-share": AnalysisTemplateSpec.model_validate(
        {
            "args": [{"name": "service"}],
            "query": (
                '(sum(rate(istio_requests_total{destination_canonical_service="{{args.service}}",'
                'destination_canonical_revision="{{canary.revision}}",response_code=~"5.."}'
                "[{{interval}}])) or vector(0)) / sum(rate(istio_requests_total{"
                'destination_canonical_service="{{args.service}}",'
                'destination_canonical_revision="{{canary.revision}}"}[{{interval}}]))'
            ),
            "max": 0.05,
        }
    ),
    "request-rate": AnalysisTemplateSpec.model_validate(
        {
            "query": (
                'sum(rate(istio_requests_total{destination_workload_namespace="{{namespace}}",'
                'destination_canonical_revision="{{canary.revision}}"}[{{interval}}]))'
            ),
            "min": 10,
        }
    ),
}
ANALYSIS = Analysis.model_validate(
    {
        "interval": "5s",
        "prometheus": {"scrapeInterval": "1s"},
        "checks": [
            {"name": "errors", "errorRate": {"max": 0.01, "maxIncreaseOverStable": 0.005}},
            {"name": "latency", "latencyP99": {"maxMs": 300, "maxRatioToStable": 2}},
            {"name": "share", "templateRef": {"name": "error-share", "args": {"service": SERVICE}}},
            {"name": "rate", "templateRef": {"name": "request-rate"}},
        ],
    }
)
CONTEXT = GateContext(SERVICE, NS, SERVICE, "canary", "stable")


def queries_served(url: str) -> float:
    """Prometheus's own count of /api/v1/query requests, from its /metrics (not a query)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_window(url: str, deadline: float = 30.0) -> None:
    promql = (
        f'sum(increase(istio_requests_total{{destination_workload_namespace="{NS}"}}[{WINDOW}s]))'
    )
    want = 0.8 * sum(w.rps for w in WORKLOADS) * WINDOW
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        reply = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
        result = reply["data"]["result"]
        if result and float(result[0]["value"][1]) >= want:
            return
        time.sleep(0.25)
    raise SystemExit(f"no full {WINDOW}s window of data within {deadline}s")


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"mean {statistics.fmean(values) * 1e3:6.2f}  median {statistics.median(values) * 1e3:6.2f}"
        f"  p95 {p95 * 1e3:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--measurements", type=int, default=200, help="per check (default 200)")
    args = parser.parse_args()
    n = args.measurements

    metrics = IstioMetrics()
    exporter = f"127.0.0.1:{metrics.serve(0)}"
    traffic = Traffic(metrics)
    for workload in WORKLOADS:
        traffic.set(workload)
    traffic.run(until=time.monotonic() + 600)
    prometheus = PrometheusServer([exporter], port=0, scrape_interval="1s")
    runner = GateRunner(lambda _ns, name: TEMPLATES.get(name))
    try:
        prometheus.start()
        wait_for_window(prometheus.url)
        provider = PrometheusProvider(prometheus.url, timeout=10.0)
        names = [c.name for c in ANALYSIS.checks]

        # 1. queries per measurement, as Prometheus counts them
        before = queries_served(prometheus.url)
        for _ in range(n):
            taken = runner.measure(ANALYSIS, CONTEXT, provider, names, datetime.now(UTC))
        served = queries_served(prometheus.url) - before
        phases = {t.check: t.measurement.phase for t in taken}
        print(f"gate: {len(names)} checks, last phases {phases}")
        print(
            f"queries per gate measurement: {served / n:.2f} "
            f"({served / (n * len(names)):.2f} per check; {served:.0f} served for {n} rounds)"
        )

        # 2. overhead beyond Prometheus's own time, per check measurement
        session = requests.Session()
        overall: list[float] = []
        for check in ANALYSIS.checks:
            gate_times: list[float] = []
            raw_times: list[float] = []
            # The PromQL does not depend on the time: build it once (this also warms up).
            query = runner.measure_one(ANALYSIS, check, CONTEXT, provider, datetime.now(UTC)).query
            for i in range(n):
                now = datetime.now(UTC)
                for gate_first in (True, False) if i % 2 else (False, True):
                    began = time.perf_counter()
                    if gate_first:
                        runner.measure_one(ANALYSIS, check, CONTEXT, provider, now)
                        gate_times.append(time.perf_counter() - began)
                    else:
                        session.get(
                            f"{prometheus.url}/api/v1/query",
                            params={"query": query, "time": f"{now.timestamp():.3f}"},
                            timeout=10,
                        ).json()
                        raw_times.append(time.perf_counter() - began)
            overhead = [g - r for g, r in zip(gate_times, raw_times, strict=True)]
            overall += overhead
            print(f"{check.name:8}  gate   {ms(gate_times)}")
            print(f"{'':8}  raw    {ms(raw_times)}")
            print(f"{'':8}  extra  mean {statistics.fmean(overhead) * 1e3:6.2f} ms")
        mean = statistics.fmean(overall) * 1e3
        verdict = "within" if mean <= TARGET_MS else "OVER"
        print(
            f"gate overhead per measurement: mean {mean:.2f} ms, median "
            f"{statistics.median(overall) * 1e3:.2f} ms over {len(overall)} measurements "
            f"({verdict} the {TARGET_MS:g} ms target)"
        )
    finally:
        runner.close()
        prometheus.stop()
        traffic.stop()
        metrics.close()


if __name__ == "__main__":
    main()
