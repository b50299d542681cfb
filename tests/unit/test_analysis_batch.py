"""Batched built-in checks: the grouped PromQL, splitting its answer per Rollout, the aligned
instant, and one query per shape for many Rollouts. Pure but for the runner's threads.

The runner is driven through the MetricProvider seam by ``GroupedProvider``, an in-test
implementation answering canned grouped samples; that the batched verdicts equal the unbatched
ones on real data is ``tests/integration/test_analysis_batched.py``.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from analysis.batch import SharedAnswers
from analysis.checks import (
    SERIES_LABELS,
    Shape,
    Target,
    error_rate_query,
    evaluation_instant,
    grouped_query,
    judge_error_rate,
    latency_query,
    parts_for,
    slot_of,
    split_grouped,
)
from analysis.provider import BadResponse, Sample, Unreachable
from analysis.runner import GateContext, GateRunner
from rollout.api.gate import Analysis, ErrorRateCheck, LatencyP99Check, PrometheusConfig
from rollout.api.template import AnalysisTemplateSpec
from rollout.cluster.access import ClusterAccess
from rollout.controller.gates import GateMeasurer
from tests.unit.world import T0

BY = ", ".join(SERIES_LABELS)
TARGET = Target("shop", "reviews", "c1", "s1", 60)


def widened(unbatched: str, target: Target) -> str:
    """The unbatched query with its per-Rollout selector dropped and each sum grouped by the
    Rollout-telling labels: what the grouped query must be, textually."""
    return (
        unbatched.replace(target.selector(target.canary_revision), 'reporter="destination"')
        .replace("sum by (le) (", f"sum by (le, {BY}) (")
        .replace("sum(", f"sum by ({BY}) (")
        .replace('"part", "canary_', '"part", "')
    )


@pytest.mark.parametrize(
    ("kind", "unbatched"),
    [
        ("errorRate", error_rate_query(ErrorRateCheck(max=0.01), TARGET)),
        ("latencyP99", latency_query(LatencyP99Check(max_ms=300), TARGET)),
    ],
)
def test_grouped_query_is_the_check_query_with_the_rollout_taken_out(
    kind: Any, unbatched: str
) -> None:
    grouped = grouped_query(Shape(kind, 60))
    assert grouped == widened(unbatched, TARGET)
    for name in ("shop", "reviews", "c1", "s1", "canary", "stable"):
        assert name not in grouped
    assert "[1m]" in grouped
    assert grouped_query(Shape(kind, 120)) != grouped


def test_the_stable_side_reads_the_same_grouped_answer() -> None:
    relative = ErrorRateCheck(max=0.01, max_increase_over_stable=0.005)
    unbatched = error_rate_query(relative, TARGET)
    assert TARGET.selector("s1") in unbatched  # unbatched, stable is a second pair of parts
    canary_only = error_rate_query(ErrorRateCheck(max=0.01), TARGET)
    assert grouped_query(Shape("errorRate", 60)) == widened(canary_only, TARGET)


def series(namespace: str, service: str, revision: str, part: str, value: float) -> Sample:
    labels = dict(zip(SERIES_LABELS, (namespace, service, revision), strict=True))
    return Sample(value, {**labels, "part": part})


ANSWER = [
    series("shop", "reviews", "c1", "errors", 8),
    series("shop", "reviews", "c1", "requests", 1000),
    series("shop", "reviews", "s1", "errors", 1),
    series("shop", "reviews", "s1", "requests", 1000),
    # the same revision name in another service, and the same service in another namespace
    series("shop", "ratings", "c1", "requests", 50),
    series("shop", "ratings", "c1", "errors", 50),
    series("other", "reviews", "c1", "requests", 7),
    series("other", "reviews", "c1", "errors", math.nan),
    Sample(3.0, {"unrelated": "x"}),  # not a part: ignored, as unbatched
]


def test_each_rollout_gets_its_own_parts_from_one_answer() -> None:
    answer = split_grouped(ANSWER)
    assert parts_for(answer, TARGET, stable=True) == {
        "canary_errors": 8,
        "canary_requests": 1000,
        "stable_errors": 1,
        "stable_requests": 1000,
    }
    assert parts_for(answer, TARGET, stable=False) == {"canary_errors": 8, "canary_requests": 1000}
    ratings = Target("shop", "ratings", "c1", "s1", 60)
    assert parts_for(answer, ratings, stable=True) == {"canary_errors": 50, "canary_requests": 50}
    other = parts_for(answer, Target("other", "reviews", "c1", "s1", 60), stable=False)
    assert other["canary_requests"] == 7 and math.isnan(other["canary_errors"])


def test_a_rollout_missing_from_the_answer_has_no_series_never_a_pass() -> None:
    answer = split_grouped(ANSWER)
    quiet = Target("shop", "quiet", "c1", "s1", 60)
    assert parts_for(answer, quiet, stable=True) == {}
    verdict = judge_error_rate(
        ErrorRateCheck(max=0.01), parts_for(answer, quiet, stable=False), quiet
    )
    assert verdict.phase == "Inconclusive"
    assert parts_for(split_grouped([]), TARGET, stable=True) == {}


def test_a_part_answered_twice_breaks_only_its_own_rollout() -> None:
    answer = split_grouped([*ANSWER, series("shop", "ratings", "c1", "requests", 51)])
    ratings = Target("shop", "ratings", "c1", "s1", 60)
    with pytest.raises(BadResponse, match="answered canary_requests twice"):
        parts_for(answer, ratings, stable=False)
    assert parts_for(answer, TARGET, stable=True)["canary_requests"] == 1000
    # stable answered twice matters only to a check that reads stable
    twice_stable = split_grouped([*ANSWER, series("shop", "reviews", "s1", "errors", 2)])
    assert parts_for(twice_stable, TARGET, stable=False)["canary_errors"] == 8
    with pytest.raises(BadResponse, match="answered stable_errors twice"):
        parts_for(twice_stable, TARGET, stable=True)


def test_the_evaluation_instant_is_aligned_never_in_the_future() -> None:
    slot = 15
    for offset in (0.0, 0.5, 7, 14.999):
        now = T0 + timedelta(seconds=offset)
        at = evaluation_instant(now, slot)
        assert at == T0
        assert at <= now < at + timedelta(seconds=slot)
    assert evaluation_instant(T0 + timedelta(seconds=15), slot) == T0 + timedelta(seconds=15)
    assert evaluation_instant(T0, slot).tzinfo == UTC


def test_the_slot_is_at_most_the_scrape_interval_and_divides_the_interval() -> None:
    assert slot_of(analysis("30s", "15s")) == 15
    assert slot_of(analysis("5s", "15s")) == 5
    assert slot_of(analysis("1m", "1s")) == 1
    assert slot_of(analysis("20s", "15s")) == 10
    assert slot_of(analysis("37s", "15s")) == 1


@pytest.mark.parametrize(("interval", "scrape"), [("30s", "15s"), ("20s", "15s"), ("45s", "30s")])
def test_aligned_measurements_stay_an_interval_apart(interval: str, scrape: str) -> None:
    """The controller measures when a check falls due (an interval after its last ``at``), a
    little late: the aligned instants it records are never closer than the interval."""
    gate = analysis(interval, scrape)
    slot, every = slot_of(gate), timedelta(seconds=gate.interval)
    at = evaluation_instant(T0 + timedelta(seconds=7.3), slot)  # the first measurement
    for lateness in (0.0, 0.2, 0.9, 3.0, 0.01, 0.5):
        now = at + every + timedelta(seconds=min(lateness, slot - 0.01))
        following = evaluation_instant(now, slot)
        assert following == at + every
        at = following


def analysis(interval: str, scrape: str, **extra: Any) -> Analysis:
    checks = [
        {"name": "errors", "errorRate": {"max": 0.01, "maxIncreaseOverStable": 0.005}},
        {"name": "latency", "latencyP99": {"maxMs": 300}},
        {"name": "custom", "templateRef": {"name": "tmpl"}},
    ]
    return Analysis.model_validate(
        {"interval": interval, "prometheus": {"scrapeInterval": scrape}, "checks": checks, **extra}
    )


class GroupedProvider:
    """A MetricProvider answering grouped queries from per-service numbers; counts queries."""

    def __init__(self, answer: list[Sample] | Exception) -> None:
        self.answer = answer
        self.queries: list[tuple[str, datetime | None]] = []
        self._lock = threading.Lock()

    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        with self._lock:
            self.queries.append((promql, at))
        if isinstance(self.answer, Exception):
            raise self.answer
        if "by (" not in promql:  # an AnalysisTemplate's own query
            return [Sample(0.5)]
        # each shape's answer holds its own parts only
        parts = {"errors", "requests"} if "istio_requests_total" in promql else {"p99", "requests"}
        return [s for s in self.answer if s.labels["part"] in parts]

    def healthy(self) -> bool:
        return True


def gate_answer(services: int) -> list[Sample]:
    """Rollout ``svc-i`` in namespace ``ns``: canary c1 with (i mod 50)% errors (so svc-0,
    svc-50... pass maxIncreaseOverStable 0.005, the rest fail), stable s1 clean, p99 100 ms."""
    samples = []
    for i in range(services):
        for revision, errors in (("c1", 10.0 * (i % 50)), ("s1", 0.0)):
            samples += [
                series("ns", f"svc-{i}", revision, "errors", errors),
                series("ns", f"svc-{i}", revision, "requests", 1000),
                series("ns", f"svc-{i}", revision, "p99", 100),
            ]
    return samples


def lookup(_namespace: str, name: str) -> AnalysisTemplateSpec | None:
    return AnalysisTemplateSpec.model_validate({"query": "sum(x)", "max": 1}) if name else None


def contexts(n: int) -> list[GateContext]:
    return [GateContext(f"svc-{i}", "ns", f"svc-{i}", "c1", "s1") for i in range(n)]


def measure_all(
    runner: GateRunner,
    provider: GroupedProvider,
    gate: Analysis,
    nows: list[datetime],
    names: list[str],
    source: str = "prometheus",
) -> list[list[Any]]:
    """Every Rollout's gate measured from 4 threads, as the controller's workers do."""
    jobs = list(zip(contexts(len(nows)), nows, strict=True))
    with ThreadPoolExecutor(max_workers=4) as workers:
        return list(
            workers.map(
                lambda job: runner.measure(gate, job[0], provider, names, job[1], source=source),
                jobs,
            )
        )


@pytest.fixture
def runner() -> Any:
    gate_runner = GateRunner(lookup, workers=8, shared=SharedAnswers())
    yield gate_runner
    gate_runner.close()


@pytest.mark.parametrize("rollouts", [1, 10, 200])
def test_rollouts_due_in_one_slot_make_one_query_per_check_shape(
    runner: GateRunner, rollouts: int
) -> None:
    gate = analysis("30s", "15s")
    provider = GroupedProvider(gate_answer(rollouts))
    nows = [T0 + timedelta(seconds=(i * 0.37) % 15) for i in range(rollouts)]
    taken = measure_all(runner, provider, gate, nows, ["errors", "latency"])
    assert len(provider.queries) == 2  # errorRate and latencyP99: one each, whatever N
    assert {at for _, at in provider.queries} == {T0}
    for i, rollout in enumerate(taken):
        errors, latency = (t.measurement for t in rollout)
        assert errors.phase == ("Successful" if i % 50 == 0 else "Failed"), (i, errors)
        assert errors.value == pytest.approx((i % 50) / 100)
        assert (latency.phase, latency.value) == ("Successful", 100)
        assert errors.at == latency.at == T0


def test_the_next_slot_asks_again_and_old_answers_are_forgotten(runner: GateRunner) -> None:
    gate = analysis("30s", "15s")
    provider = GroupedProvider(gate_answer(3))
    for k in range(10):
        now = T0 + timedelta(seconds=15 * k + 3)
        measure_all(runner, provider, gate, [now] * 3, ["errors"])
        assert provider.queries[-1][1] == T0 + timedelta(seconds=15 * k)
    assert len(provider.queries) == 10
    assert runner.shared is not None and len(runner.shared) <= 3


def test_templates_stay_per_rollout(runner: GateRunner) -> None:
    gate = analysis("30s", "15s")
    provider = GroupedProvider(gate_answer(5))
    taken = measure_all(runner, provider, gate, [T0] * 5, ["errors", "custom"])
    templated = [q for q, _ in provider.queries if "by (" not in q]
    assert len(templated) == 5 and len(provider.queries) == 6
    assert all(rollout[1].measurement.phase == "Successful" for rollout in taken)


def test_different_prometheus_sources_do_not_share(runner: GateRunner) -> None:
    gate = analysis("30s", "15s")
    provider = GroupedProvider(gate_answer(2))
    measure_all(runner, provider, gate, [T0] * 2, ["errors"], source="a")
    measure_all(runner, provider, gate, [T0] * 2, ["errors"], source="b")
    assert len(provider.queries) == 2


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (Unreachable("Prometheus at http://p unreachable: refused"), "unreachable: refused"),
        (BadResponse("Prometheus answered HTTP 503: overloaded"), "HTTP 503: overloaded"),
        (RuntimeError("provider bug"), "RuntimeError: provider bug"),
    ],
)
def test_a_failed_grouped_query_is_an_error_for_each_rollout(
    runner: GateRunner, error: Exception, message: str
) -> None:
    gate = analysis("30s", "15s")
    provider = GroupedProvider(error)
    taken = measure_all(runner, provider, gate, [T0 + timedelta(seconds=2)] * 6, ["errors"])
    assert 1 <= len(provider.queries) <= 6  # a failure is not kept: later callers ask again
    for (errors,) in taken:
        assert errors.measurement.phase == "Error"
        assert message in (errors.measurement.message or "")


def test_one_rollouts_broken_numbers_do_not_poison_another(runner: GateRunner) -> None:
    gate = analysis("30s", "15s")
    answer = gate_answer(3)
    broken = [
        s
        for s in answer
        if not (
            s.labels["destination_canonical_service"] == "svc-1" and s.labels["part"] == "requests"
        )
    ]
    broken += [
        series("ns", "svc-1", "c1", "requests", math.nan),
        series("ns", "svc-1", "s1", "requests", 1000),
        series("ns", "svc-0", "c1", "p99", 5),  # twice: svc-0's latency is broken
    ]
    provider = GroupedProvider(broken)
    taken = measure_all(runner, provider, gate, [T0] * 3, ["errors", "latency"])
    phases = [[t.measurement.phase for t in rollout] for rollout in taken]
    assert phases == [["Successful", "Error"], ["Error", "Error"], ["Failed", "Successful"]]
    assert "NaN for canary_requests" in (taken[1][0].measurement.message or "")
    assert "canary_p99 twice" in (taken[0][1].measurement.message or "")


def test_rollouts_share_answers_only_with_the_same_prometheus_and_credentials() -> None:
    """A Secret is per namespace (and a multi-tenant Prometheus may answer each tenant its own
    share): Rollouts reading credentials from Secrets share only within their namespace."""
    measurer = GateMeasurer(cast(ClusterAccess, None), lambda _ns, _name: None, "http://prom:9090")
    plain = PrometheusConfig()
    assert measurer.source(plain, "a") == measurer.source(plain, "b")
    assert measurer.source(PrometheusConfig(address="http://prom:9090"), "a") != measurer.source(
        plain, "a"
    )  # the same server spelled differently: not shared, which is only a missed saving
    tenant = PrometheusConfig.model_validate({"headers": {"X-Scope-OrgID": "t1"}})
    assert measurer.source(tenant, "a") != measurer.source(plain, "a")
    secret = PrometheusConfig.model_validate(
        {"bearerTokenSecret": {"name": "prom", "key": "token"}}
    )
    assert measurer.source(secret, "a") != measurer.source(secret, "b")
    assert measurer.source(secret, "a") == measurer.source(secret, "a")
    measurer.close()


class FailingOnce(GroupedProvider):
    """Prometheus failing its first query (a restart, a blip), then answering."""

    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        first = not self.queries
        answer = super().query(promql, at=at)
        if first:
            raise Unreachable("Prometheus at http://p unreachable: connection refused")
        return answer


def test_a_failed_grouped_query_is_not_handed_to_rollouts_asking_after_it(
    runner: GateRunner,
) -> None:
    """Unbatched, a Rollout measured after Prometheus came back gets its numbers: a blip at the
    start of a slot must not be every later Rollout's Error for the rest of the slot."""
    gate = analysis("30s", "15s")
    provider = FailingOnce(gate_answer(2))
    first, second = contexts(2)
    early = runner.measure(gate, first, provider, ["errors"], T0 + timedelta(seconds=1), source="p")
    later = runner.measure(
        gate, second, provider, ["errors"], T0 + timedelta(seconds=9), source="p"
    )
    assert early[0].measurement.phase == "Error"
    # svc-1's own numbers (1% errors, over maxIncreaseOverStable), not the blip
    assert (later[0].measurement.phase, later[0].measurement.value) == ("Failed", 0.01)
    assert [at for _, at in provider.queries] == [T0, T0]


def test_a_gate_never_uses_the_retry_budget_of_a_gate_with_a_longer_interval() -> None:
    """Retries stop within half the gate's interval: a provider cached for a 60 s gate (30 s of
    retries) must not serve a 4 s gate of the same Prometheus (2 s)."""
    measurer = GateMeasurer(cast(ClusterAccess, None), lambda _ns, _name: None, "http://prom:9090")
    slow, fast = analysis("60s", "15s"), analysis("4s", "1s")
    fast = fast.model_copy(update={"prometheus": slow.prometheus})  # the same configuration
    long = measurer._provider(slow.prometheus, "ns", slow)
    short = measurer._provider(fast.prometheus, "ns", fast)
    assert getattr(long, "budget", None) == 10.0  # the timeout's cap
    assert getattr(short, "budget", None) == 2.0
    measurer.close()
