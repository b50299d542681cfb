"""Benchmark: Prometheus queries per interval for built-in checks, one per Rollout vs batched.

    .venv/bin/python bench/batched_queries.py                      # 10, 100, 1000 Rollouts
    .venv/bin/python bench/batched_queries.py --sizes 10 100 300   # quicker

For each size N: Debian's ``prometheus`` is started on a known history of Istio's metrics
(``rollout.sandbox.istio_history`` backfilled by ``promtool``) for N Rollouts, each a canary
and a stable revision (a tenth with a bad canary), all with the same gate: interval 30s,
scrapeInterval 15s, errorRate (max + maxIncreaseOverStable) and latencyP99 (maxMs +
maxRatioToStable). One *round* is one interval of the controller's work: every Rollout's gate
measured once, at instants spread evenly over the 30 s (as its timers fall due), by 4 threads
(the controller's reconcile workers) through ``GateRunner`` and ``PrometheusProvider``:

- before: one query per Rollout and check (``GateRunner`` without shared answers);
- after: batched (``SharedAnswers``, as ``GateMeasurer`` does): one grouped query per check
  shape and 15 s slot.

Printed per N and way: the queries Prometheus served in the round (its own
``prometheus_http_requests_total{handler="/api/v1/query"}``, read from /metrics), the round's
wall time and time per Rollout measured, and how many verdicts differ between the two ways at
the same instants (must be 0). Target: queries per interval independent of N.
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from analysis.batch import SharedAnswers
from analysis.checks import evaluation_instant, slot_of
from analysis.prometheus import PrometheusProvider
from analysis.runner import GateContext, GateRunner, Taken
from rollout.api.gate import Analysis
from rollout.sandbox.istio_history import History, openmetrics
from rollout.sandbox.prometheus import PrometheusServer

INTERVAL = 30
SCRAPE = 15
ANALYSIS = Analysis.model_validate(
    {
        "interval": f"{INTERVAL}s",
        "prometheus": {"scrapeInterval": f"{SCRAPE}s"},
        "checks": [
            {"name": "errors", "errorRate": {"max": 0.01, "maxIncreaseOverStable": 0.005}},
            {"name": "latency", "latencyP99": {"maxMs": 500, "maxRatioToStable": 2}},
        ],
    }
)
NAMES = [c.name for c in ANALYSIS.checks]
WORKERS = 4


def histories(n: int) -> list[History]:
    """Canary c1 and stable s1 of services svc-0..n-1 in namespace bench; every tenth canary
    fails (5% errors, p99 ~900 ms). One client, destination reports only: small data."""
    found = []
    for i in range(n):
        stable = History("bench", f"svc-{i}", "s1", rps=50, sources=1, reporters=("destination",))
        canary = replace(stable, revision="c1")
        if i % 10 == 9:
            canary = replace(canary, error_rate=0.05, slow_ms=900, slow_share=0.05)
        found += [canary, stable]
    return found


def queries_served(url: str) -> float:
    """Prometheus's own count of /api/v1/query requests, from its /metrics (not a query)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def one_round(
    runner: GateRunner, provider: PrometheusProvider, n: int, start: datetime, batched: bool
) -> list[list[Taken]]:
    """Every Rollout's gate measured once, due at instants spread over one interval."""
    jobs = [
        (
            GateContext(f"svc-{i}", "bench", f"svc-{i}", "c1", "s1"),
            start + timedelta(seconds=INTERVAL * i / n),
        )
        for i in range(n)
    ]
    source = "bench" if batched else None
    with ThreadPoolExecutor(max_workers=WORKERS) as workers:
        return list(
            workers.map(
                lambda job: runner.measure(
                    ANALYSIS, job[0], provider, NAMES, job[1], source=source
                ),
                jobs,
            )
        )


def measure(n: int) -> None:
    now = int(time.time())
    begin = now - now % 60 - 600
    text = openmetrics(histories(n), begin, begin + 180, SCRAPE)
    prometheus = PrometheusServer([], port=0, scrape_interval=f"{SCRAPE}s", openmetrics=text)
    began = time.perf_counter()
    prometheus.start(timeout=120)
    loaded = time.perf_counter() - began
    provider = PrometheusProvider(prometheus.url, timeout=30.0)
    slot = slot_of(ANALYSIS)
    start = datetime.fromtimestamp(begin + 120, tz=UTC)
    alone = GateRunner(lambda _ns, _name: None, workers=8)
    shared = GateRunner(lambda _ns, _name: None, workers=8, shared=SharedAnswers())
    try:
        # warm up Prometheus's caches and ours on another instant, the same way for both
        one_round(alone, provider, min(n, 10), start - timedelta(seconds=60), batched=False)
        one_round(shared, provider, min(n, 10), start - timedelta(seconds=60), batched=True)
        results = {}
        for batched, runner in ((False, alone), (True, shared)):
            before = queries_served(prometheus.url)
            began = time.perf_counter()
            taken = one_round(runner, provider, n, start, batched)
            wall = time.perf_counter() - began
            served = queries_served(prometheus.url) - before
            results[batched] = taken
            way = "batched " if batched else "unbatched"
            print(
                f"N={n:5d}  {way}  queries/interval {served:6.0f}  round {wall * 1e3:8.1f} ms  "
                f"per Rollout {wall / n * 1e3:6.2f} ms",
                flush=True,
            )
        # the same instants for both ways: the unbatched verdict at the batched instant
        differ = 0
        phases: dict[str, int] = {}
        for i, batched_taken in enumerate(results[True]):
            at = evaluation_instant(start + timedelta(seconds=INTERVAL * i / n), slot)
            context = GateContext(f"svc-{i}", "bench", f"svc-{i}", "c1", "s1")
            unbatched = alone.measure(ANALYSIS, context, provider, NAMES, at)
            for a, b in zip(unbatched, batched_taken, strict=True):
                mine = (a.measurement.phase, a.measurement.value, a.measurement.message)
                theirs = (b.measurement.phase, b.measurement.value, b.measurement.message)
                differ += mine != theirs
                phases[b.measurement.phase] = phases.get(b.measurement.phase, 0) + 1
        print(
            f"N={n:5d}  verdicts differing batched vs unbatched at the same instant: {differ} "
            f"of {2 * n} {phases}  (history of {len(text) / 1e6:.0f} MB loaded in {loaded:.1f} s)",
            flush=True,
        )
    finally:
        alone.close()
        shared.close()
        prometheus.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    print(
        f"gate: interval {INTERVAL}s, scrapeInterval {SCRAPE}s, 2 built-in checks with stable; "
        f"{WORKERS} workers; one round = every Rollout measured once over one interval"
    )
    for n in args.sizes:
        measure(n)


if __name__ == "__main__":
    main()
