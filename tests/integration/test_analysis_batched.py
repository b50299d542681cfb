"""Batched built-in checks against a real Prometheus: the same verdicts as one query per Rollout.

Prometheus is filled with a known history of Istio's metrics (``istio_history``, backfilled by
``promtool``) for many Rollouts — good, bad, without canary traffic, with too little, with NaN
counters or buckets, with a broken or a worse stable baseline, and a Rollout in another
namespace with the same service and revision names — then every Rollout's gate is measured
both ways at the same instants: one query per Rollout and check (``GateRunner`` without shared
answers, as ``rollout analyze``), and batched (one grouped query per check shape, as the
controller). Every verdict (phase, value, message) must be equal, and the batched way must send
one query per shape whatever the number of Rollouts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analysis.batch import SharedAnswers
from analysis.checks import evaluation_instant, slot_of
from analysis.prometheus import PrometheusProvider
from analysis.provider import Sample
from analysis.runner import GateContext, GateRunner
from rollout.api.gate import Analysis
from rollout.api.status import Measurement
from rollout.sandbox.istio_history import History, openmetrics
from rollout.sandbox.prometheus import PrometheusMissing, PrometheusServer

pytestmark = pytest.mark.integration

STEP = 15  # seconds between samples, the gates' scrapeInterval
NAN_REQUESTS = frozenset({"requests"})
# (namespace, service) -> (canary, stable) behaviour; canaries are "c1", stables "s1" (the same
# revision names in every service: only the service and namespace tell them apart)
ROLLOUTS: dict[tuple[str, str], tuple[History | None, History | None]] = {}


def _rollout(
    namespace: str, service: str, canary: dict[str, Any] | None, stable: dict[str, Any] | None
) -> None:
    ROLLOUTS[(namespace, service)] = (
        History(namespace, service, "c1", **canary) if canary is not None else None,
        History(namespace, service, "s1", **stable) if stable is not None else None,
    )


HEALTHY: dict[str, Any] = {"rps": 100, "error_rate": 0.001}
_rollout("shop", "good", HEALTHY, HEALTHY)
_rollout(
    "shop", "bad", {"rps": 100, "error_rate": 0.05, "slow_ms": 900, "slow_share": 0.05}, HEALTHY
)
_rollout("shop", "quiet", None, HEALTHY)  # the canary has no series at all
_rollout("shop", "few", {"rps": 0.05}, HEALTHY)  # 3 requests a minute, minRequests 20
_rollout("shop", "nan", {"rps": 100, "broken": NAN_REQUESTS}, HEALTHY)
_rollout("shop", "nan-p99", {"rps": 100, "broken": frozenset({"buckets"})}, HEALTHY)
_rollout("shop", "nan-errors", {"rps": 100, "broken": frozenset({"errors"})}, HEALTHY)
# 0.8% vs 0.1% errors (under max 0.01, over maxIncreaseOverStable 0.005); p99 175 vs 75 ms
_rollout("shop", "relative", {"rps": 200, "error_rate": 0.008, "slow_ms": 200}, HEALTHY)
_rollout("shop", "broken-stable", HEALTHY, {"rps": 100, "broken": NAN_REQUESTS})
_rollout("shop", "no-stable", HEALTHY, None)
# the same service and revision names as shop/good, another namespace, bad numbers
_rollout("other", "good", {"rps": 100, "error_rate": 0.2, "slow_ms": 2000}, HEALTHY)

CHECKS = {
    # relative thresholds: the grouped answer gives stable's parts too
    "relative": [
        {"name": "errors", "errorRate": {"max": 0.01, "maxIncreaseOverStable": 0.005}},
        {"name": "latency", "latencyP99": {"maxMs": 500, "maxRatioToStable": 2}},
    ],
    "absolute": [
        {"name": "errors", "errorRate": {"max": 0.01}},
        {"name": "latency", "latencyP99": {"maxMs": 500}},
    ],
    "long-window": [
        {"name": "errors", "errorRate": {"max": 0.01, "window": "2m"}},
        {"name": "latency", "latencyP99": {"maxMs": 500, "maxRatioToStable": 2, "window": "2m"}},
    ],
}
ANALYSES = {
    name: Analysis.model_validate(
        {"interval": "1m", "prometheus": {"scrapeInterval": f"{STEP}s"}, "checks": checks}
    )
    for name, checks in CHECKS.items()
}
SHAPES = 4  # (errorRate, latencyP99) x (1m, 2m)

# What the "relative" gate must say, so that the comparison is not between two empty answers.
EXPECTED = {
    ("shop", "good"): ("Successful", "Successful"),
    ("shop", "bad"): ("Failed", "Failed"),
    ("shop", "quiet"): ("Inconclusive", "Inconclusive"),
    ("shop", "few"): ("Inconclusive", "Inconclusive"),
    ("shop", "nan"): ("Error", "Error"),
    # NaN buckets: Prometheus's histogram_quantile answers the highest finite bound, 3600000 ms
    ("shop", "nan-p99"): ("Successful", "Failed"),
    ("shop", "nan-errors"): ("Error", "Successful"),
    ("shop", "relative"): ("Failed", "Failed"),
    ("shop", "broken-stable"): ("Error", "Error"),
    ("shop", "no-stable"): ("Inconclusive", "Inconclusive"),
    ("other", "good"): ("Failed", "Failed"),
}


class Counting:
    """The real provider, counting the queries sent through the MetricProvider seam."""

    def __init__(self, provider: PrometheusProvider) -> None:
        self.provider = provider
        self.sent: list[tuple[str, datetime | None]] = []
        self._lock = threading.Lock()

    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        with self._lock:
            self.sent.append((promql, at))
        return self.provider.query(promql, at=at)

    def healthy(self) -> bool:
        return self.provider.healthy()


class Backfilled:
    def __init__(self, server: PrometheusServer, start: int) -> None:
        self.server = server
        self.start = start

    def instants(self) -> list[datetime]:
        """Aligned instants inside the history: early (a 2m window reaching before the data),
        in the middle, late."""
        return [datetime.fromtimestamp(self.start + s, tz=UTC) for s in (90, 300, 585)]


@pytest.fixture(scope="module")
def history() -> Iterator[Backfilled]:
    now = int(time.time())
    start = now - now % 60 - 900  # 15 min ago to 5 min ago, every STEP seconds
    histories = [h for pair in ROLLOUTS.values() for h in pair if h is not None]
    server = PrometheusServer(
        [],
        port=0,
        scrape_interval=f"{STEP}s",
        openmetrics=openmetrics(histories, start, start + 600, STEP),
    )
    try:
        server.start()
    except PrometheusMissing as missing:
        pytest.fail(f"{missing} (CI installs it with scripts/install-prometheus)", pytrace=False)
    try:
        yield Backfilled(server, start)
    finally:
        server.stop()


def context(namespace: str, service: str) -> GateContext:
    return GateContext(service, namespace, service, "c1", "s1")


def verdicts(measurements: list[Measurement]) -> list[tuple[str, float | None, str | None]]:
    return [(m.phase, m.value, m.message) for m in measurements]


def test_batched_verdicts_equal_one_query_per_rollout(history: Backfilled) -> None:
    provider = PrometheusProvider(history.server.url, timeout=10.0)
    counting = Counting(provider)
    alone = GateRunner(lambda _ns, _name: None, workers=4)
    shared = SharedAnswers()
    batched = GateRunner(lambda _ns, _name: None, workers=4, shared=shared)
    try:
        for at in history.instants():
            for name, analysis in ANALYSES.items():
                names = [c.name for c in analysis.checks]
                for where in ROLLOUTS:
                    ctx = context(*where)
                    one = alone.measure(analysis, ctx, provider, names, at)
                    # measured a few seconds into the slot: evaluated at its aligned start
                    later = at + timedelta(seconds=7)
                    assert evaluation_instant(later, slot_of(analysis)) == at
                    many = batched.measure(analysis, ctx, counting, names, later, source="p")
                    label = f"{name} gate of {where} at {at:%H:%M:%S}"
                    assert verdicts([t.measurement for t in many]) == verdicts(
                        [t.measurement for t in one]
                    ), label
                    assert all(t.measurement.at == at for t in many), label
                    if name == "relative" and at == history.instants()[1]:
                        phases = tuple(t.measurement.phase for t in many)
                        assert phases == EXPECTED[where], (
                            f"{label}: {verdicts([t.measurement for t in many])}"
                        )
        # one grouped query per shape and instant, whatever the number of Rollouts
        assert len(counting.sent) == SHAPES * len(history.instants()), counting.sent
    finally:
        alone.close()
        batched.close()


def test_rollouts_due_in_one_slot_share_one_query_per_shape(history: Backfilled) -> None:
    """Every Rollout's gate measured concurrently (as the controller's workers do), at times
    spread over one scrape-interval slot: one query per check shape, not one per Rollout."""
    counting = Counting(PrometheusProvider(history.server.url, timeout=10.0))
    shared = SharedAnswers()
    runner = GateRunner(lambda _ns, _name: None, workers=8, shared=shared)
    slot_start = history.instants()[1]
    jobs = [
        (analysis, where, slot_start + timedelta(seconds=(i * 1.7) % STEP))
        for i, (analysis, where) in enumerate(
            (analysis, where) for analysis in ANALYSES.values() for where in ROLLOUTS
        )
    ]
    try:
        with ThreadPoolExecutor(max_workers=4) as workers:  # the controller's reconcile workers
            taken = list(
                workers.map(
                    lambda job: runner.measure(
                        job[0],
                        context(*job[1]),
                        counting,
                        [c.name for c in job[0].checks],
                        job[2],
                        source="p",
                    ),
                    jobs,
                )
            )
        assert len(taken) == len(ANALYSES) * len(ROLLOUTS) == 33
        assert len(counting.sent) == SHAPES, counting.sent
        assert {at for _, at in counting.sent} == {slot_start}
        # the next slot asks again: an answer is never read for another instant
        next_slot = slot_start + timedelta(seconds=STEP)
        runner.measure(
            ANALYSES["absolute"],
            context("shop", "good"),
            counting,
            ["errors"],
            next_slot,
            source="p",
        )
        assert len(counting.sent) == SHAPES + 1
        assert counting.sent[-1][1] == next_slot
    finally:
        runner.close()
