"""A run's first batched measurement sees as much canary traffic as the unbatched one would.

The canary's Istio series appear with its first request, when the run starts, and a real
Prometheus scrapes them every ``scrapeInterval`` at its own phase (not aligned to the epoch).
``increase()`` needs two samples of a series in its window. Unbatched, the first measurement,
an interval (30 s) after the run's start, covers two scrapes of the canary; batched, its
instant is aligned to the slot (15 s): were it floored to before the run's start + interval, its
window would hold one scrape of the canary, "0 requests", Inconclusive — with the default
``inconclusiveLimit: 0``, a healthy canary paused for an operator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from analysis import measurement as gate
from analysis.batch import SharedAnswers
from analysis.prometheus import PrometheusProvider
from analysis.runner import GateContext, GateRunner
from rollout.api.gate import Analysis
from rollout.sandbox.istio_history import History, openmetrics
from rollout.sandbox.prometheus import PrometheusMissing, PrometheusServer

pytestmark = pytest.mark.integration

STEP = 15
PHASE = 7  # Prometheus scrapes at k*15 + 7 s: its own phase, not the epoch's
CHECKS = [
    {"name": "errors", "errorRate": {"max": 0.01}},
    {"name": "latency", "latencyP99": {"maxMs": 500}},
]
ANALYSIS = Analysis.model_validate({"checks": CHECKS})  # interval 30s, scrapeInterval 15s


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[PrometheusServer, datetime]]:
    now = int(time.time())
    base = now - now % STEP - 900
    run_start = base + STEP - 1  # a second before a slot boundary
    first_scrape = base + STEP + PHASE  # the first scrape after the canary's first request
    canary = History("shop", "reviews", "c2", rps=100, error_rate=0.001)
    server = PrometheusServer(
        [],
        port=0,
        scrape_interval=f"{STEP}s",
        openmetrics=openmetrics([canary], first_scrape, first_scrape + 600, STEP),
    )
    try:
        server.start()
    except PrometheusMissing as missing:
        pytest.fail(f"{missing} (CI installs it with scripts/install-prometheus)", pytrace=False)
    try:
        yield server, datetime.fromtimestamp(run_start, tz=UTC)
    finally:
        server.stop()


def test_the_first_batched_measurement_covers_a_full_interval_of_canary_traffic(
    started: tuple[PrometheusServer, datetime],
) -> None:
    server, run_start = started
    provider = PrometheusProvider(server.url, timeout=10.0)
    context = GateContext("reviews", "shop", "reviews", "c2", "c1")
    names = [c.name for c in ANALYSIS.checks]
    alone = GateRunner(lambda _ns, _name: None, workers=2)
    batched = GateRunner(lambda _ns, _name: None, workers=2, shared=SharedAnswers())
    try:
        run = gate.new_run(ANALYSIS, run_start, None)
        now = run_start
        while not gate.due_checks(run, ANALYSIS, now):  # the controller wakes when due
            due = gate.next_due_at(run, ANALYSIS)
            assert due is not None and due > now, (due, now)
            now = due
        taken = batched.measure(ANALYSIS, context, provider, names, now, source="p")
        one = alone.measure(ANALYSIS, context, provider, names, now)
        assert [t.measurement.phase for t in one] == ["Successful", "Successful"]
        for t in taken:
            assert t.measurement.at >= run_start + timedelta(seconds=ANALYSIS.interval), t
        assert [(t.measurement.phase, t.measurement.message) for t in taken] == [
            (t.measurement.phase, t.measurement.message) for t in one
        ]
        run = gate.record(run, ANALYSIS, [(t.check, t.measurement) for t in taken])
        assert run.phase == "Running", run
    finally:
        alone.close()
        batched.close()
