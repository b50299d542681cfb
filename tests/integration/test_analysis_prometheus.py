"""The gate against a real Prometheus scraping simulated Istio metrics.

Every test reads its own service from ``world`` (see ``prometheus_fixtures``): a 5 s
window over data Prometheus scraped every second. Measurements go through ``GateRunner`` and
``PrometheusProvider`` exactly as the controller takes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analysis import measurement as gate
from analysis.prometheus import PrometheusProvider
from analysis.runner import GateContext, GateRunner, Taken
from rollout.api.gate import Analysis
from rollout.api.template import AnalysisTemplateSpec
from rollout.sandbox.prometheus import INSTALL_HINT
from tests.integration.prometheus_fixtures import (
    NAMESPACE,
    PrometheusWorld,
    analysis,
    instant,
    start_prometheus,
    start_world,
    wait_for_data,
)
from tests.integration.prometheus_fixtures import WORKLOADS as ALL_WORKLOADS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> Iterator[PrometheusWorld]:
    yield from start_world()


ERROR_RATE = {"name": "error-rate", "errorRate": {"max": 0.01}}
LATENCY = {"name": "latency", "latencyP99": {"maxMs": 300}}

TEMPLATES = {
    "error-share": {
        "args": [{"name": "service"}, {"name": "codes", "value": "5.."}],
        # No matching 5xx series is no errors, not "no data": hence `or vector(0)`.
        "query": (
            '(sum(rate(istio_requests_total{reporter="destination",'
            'destination_workload_namespace="{{namespace}}",'
            'destination_canonical_service="{{args.service}}",'
            'destination_canonical_revision="{{canary.revision}}",'
            'response_code=~"{{args.codes}}"}[{{interval}}])) or vector(0))'
            ' / sum(rate(istio_requests_total{reporter="destination",'
            'destination_workload_namespace="{{namespace}}",'
            'destination_canonical_service="{{args.service}}",'
            'destination_canonical_revision="{{canary.revision}}"}[{{interval}}]))'
        ),
        "max": 0.05,
    },
    "request-rate": {
        "args": [{"name": "service"}],
        "query": (
            'sum(rate(istio_requests_total{destination_canonical_service="{{args.service}}",'
            'destination_canonical_revision="{{canary.revision}}"}[{{interval}}]))'
        ),
        "min": 50,
        "max": 1000,
    },
    "nothing-fail": {
        "query": 'sum(absent_series_metric{x="{{rollout}}"})',
        "max": 1,
        "noData": "fail",
    },
    "nothing-pass": {
        "query": 'sum(absent_series_metric{x="{{rollout}}"})',
        "max": 1,
        "noData": "pass",
    },
    "nothing-inconclusive": {"query": "sum(absent_series_metric)", "max": 1},
    "per-series": {
        "query": (
            "sum by (destination_canonical_revision) (rate(istio_requests_total{"
            'destination_canonical_service="healthy"}[{{interval}}]))'
        ),
        "max": 1000,
    },
    "broken": {"query": "sum(rate(istio_requests_total[{{interval}}])", "max": 1},
    # issue 12: NaN and ±Inf are never "no data", whatever noData says
    "nan": {"query": "vector(0) / vector(0)", "max": 0.01, "noData": "pass"},
    "minus-inf": {"query": "vector(-1) / vector(0)", "max": 0.01, "noData": "pass"},
    # canary 5xx / stable 5xx, where stable has none: +Inf
    "inf-ratio": {
        "args": [{"name": "service"}],
        "query": (
            'sum(increase(istio_requests_total{destination_canonical_service="{{args.service}}",'
            'destination_canonical_revision="{{canary.revision}}",response_code=~"5.."}'
            "[{{interval}}])) / (sum(increase(istio_requests_total{"
            'destination_canonical_service="{{args.service}}",'
            'destination_canonical_revision="{{stable.revision}}",response_code=~"5.."}'
            "[{{interval}}])) or vector(0))"
        ),
        "max": 2,
        "noData": "pass",
    },
}


def lookup(namespace: str, name: str) -> AnalysisTemplateSpec | None:
    spec = TEMPLATES.get(name) if namespace == NAMESPACE else None
    return AnalysisTemplateSpec.model_validate(spec) if spec is not None else None


@pytest.fixture(scope="module")
def runner() -> Iterator[GateRunner]:
    gate_runner = GateRunner(lookup)
    yield gate_runner
    gate_runner.close()


def context(service: str, canary: str = "c1", stable: str = "s1") -> GateContext:
    return GateContext(service, NAMESPACE, service, canary, stable)


def measure(
    world: PrometheusWorld,
    runner: GateRunner,
    spec: Analysis,
    service: str,
    *,
    canary: str = "c1",
    provider_options: dict[str, Any] | None = None,
) -> dict[str, Taken]:
    provider = world.provider(**(provider_options or {"timeout": 5.0}))
    names = [c.name for c in spec.checks]
    taken = runner.measure(spec, context(service, canary), provider, names, datetime.now(UTC))
    return {t.check: t for t in taken}


def phases(taken: dict[str, Taken]) -> dict[str, str]:
    return {name: t.measurement.phase for name, t in taken.items()}


def explain(taken: dict[str, Taken]) -> str:
    return "; ".join(
        f"{n}: {t.measurement.phase} {t.measurement.value} {t.measurement.message}"
        for n, t in taken.items()
    )


# --- built-in checks ---------------------------------------------------------------------------


def test_a_healthy_canary_passes_every_check(world: PrometheusWorld, runner: GateRunner) -> None:
    spec = analysis(
        ERROR_RATE,
        LATENCY,
        {"name": "versus-stable", "errorRate": {"maxIncreaseOverStable": 0.005}},
        {"name": "latency-ratio", "latencyP99": {"maxRatioToStable": 1.5}},
        {"name": "share", "templateRef": {"name": "error-share", "args": {"service": "healthy"}}},
    )
    taken = measure(world, runner, spec, "healthy")
    assert set(phases(taken).values()) == {"Successful"}, explain(taken)
    assert taken["error-rate"].measurement.value == 0.0
    p99 = taken["latency"].measurement.value
    assert p99 is not None and 25 < p99 <= 100  # a ~60 ms p99, as Istio's buckets estimate it
    assert taken["share"].measurement.value == 0.0


def test_five_percent_errors_fail_max_one_percent(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    taken = measure(world, runner, analysis(ERROR_RATE), "errors")
    measured = taken["error-rate"].measurement
    assert measured.phase == "Failed", explain(taken)
    assert measured.value is not None and 0.02 < measured.value < 0.1
    assert "above max 0.01" in (measured.message or "")


def test_a_slow_p99_fails_max_ms(world: PrometheusWorld, runner: GateRunner) -> None:
    taken = measure(world, runner, analysis(ERROR_RATE, LATENCY), "slow")
    assert phases(taken) == {"error-rate": "Successful", "latency": "Failed"}, explain(taken)
    p99 = taken["latency"].measurement.value
    assert p99 is not None and p99 > 500  # a ~900 ms p99, as Istio's buckets estimate it


def test_no_canary_traffic_is_inconclusive_never_a_pass(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    spec = analysis(
        ERROR_RATE,
        LATENCY,
        {"name": "versus-stable", "errorRate": {"maxIncreaseOverStable": 0.005}},
        {"name": "latency-ratio", "latencyP99": {"maxRatioToStable": 1.5, "minRequests": 0}},
    )
    taken = measure(world, runner, spec, "quiet")
    assert set(phases(taken).values()) == {"Inconclusive"}, explain(taken)
    message = taken["error-rate"].measurement.message or ""
    assert "the canary served 0 requests in 5s" in message
    run = gate.record(
        gate.new_run(spec, datetime.now(UTC).replace(year=2000), 1),
        spec,
        [(n, t.measurement) for n, t in taken.items()],
    )
    assert run.phase == "Inconclusive"


def test_relative_error_rate_catches_what_the_absolute_threshold_misses(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    spec = analysis(
        {"name": "absolute", "errorRate": {"max": 0.01}},
        {"name": "relative", "errorRate": {"maxIncreaseOverStable": 0.005}},
    )
    taken = measure(world, runner, spec, "relative-errors")
    assert phases(taken) == {"absolute": "Successful", "relative": "Failed"}, explain(taken)
    assert "above stable's" in (taken["relative"].measurement.message or "")


def test_latency_ratio_catches_what_max_ms_misses(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    spec = analysis(
        {"name": "absolute", "latencyP99": {"maxMs": 500}},
        {"name": "ratio", "latencyP99": {"maxRatioToStable": 2}},
    )
    taken = measure(world, runner, spec, "relative-latency")
    assert phases(taken) == {"absolute": "Successful", "ratio": "Failed"}, explain(taken)
    assert "x stable's" in (taken["ratio"].measurement.message or "")


# --- AnalysisTemplates ---------------------------------------------------------------------------


def template_check(name: str, template: str, **args: str) -> dict[str, Any]:
    return {"name": name, "templateRef": {"name": template, "args": args}}


def test_template_queries_pass_or_fail_by_their_bounds(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    spec = analysis(
        template_check("share-5xx", "error-share", service="templated"),  # 2% <= max 5%
        template_check("share-2xx", "error-share", service="templated", codes="2.."),  # 98%
        template_check("rate", "request-rate", service="templated"),  # ~100/s in [50, 1000]
        template_check("rate-quiet", "request-rate", service="quiet"),  # no canary: no data
    )
    taken = measure(world, runner, spec, "templated")
    assert phases(taken) == {
        "share-5xx": "Successful",
        "share-2xx": "Failed",
        "rate": "Successful",
        "rate-quiet": "Inconclusive",
    }, explain(taken)
    share = taken["share-5xx"].measurement.value
    assert share is not None and 0.01 < share < 0.04
    assert 'response_code=~"2.."' in taken["share-2xx"].query
    assert 'destination_workload_namespace="analysis"' in taken["share-5xx"].query
    assert "[5s]" in taken["rate"].query


def test_template_no_data_policies(world: PrometheusWorld, runner: GateRunner) -> None:
    spec = analysis(
        template_check("fail", "nothing-fail"),
        template_check("pass", "nothing-pass"),
        template_check("inconclusive", "nothing-inconclusive"),
        template_check("many", "per-series"),
        template_check("missing-arg", "request-rate"),
        template_check("missing-template", "no-such-template"),
    )
    taken = measure(world, runner, spec, "templated")
    assert phases(taken) == {
        "fail": "Failed",
        "pass": "Successful",
        "inconclusive": "Inconclusive",
        "many": "Error",
        "missing-arg": "Error",
        "missing-template": "Error",
    }, explain(taken)
    assert 'x="templated"' in taken["fail"].query  # {{rollout}}
    assert "2 series" in (taken["many"].measurement.message or "")
    assert "no value for arg(s) service" in (taken["missing-arg"].measurement.message or "")


def test_nan_and_infinities_are_errors_naming_the_value_never_no_data(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    spec = analysis(
        template_check("nan", "nan"),
        template_check("minus-inf", "minus-inf"),
        template_check("inf-ratio", "inf-ratio", service="errors"),  # stable serves no 5xx
    )
    taken = measure(world, runner, spec, "errors")
    assert phases(taken) == {"nan": "Error", "minus-inf": "Error", "inf-ratio": "Error"}, explain(
        taken
    )
    for name, spelled in (("nan", "NaN"), ("minus-inf", "-Inf"), ("inf-ratio", "+Inf")):
        measured = taken[name].measurement
        assert measured.value is None
        assert (measured.message or "").startswith(f"the query returned {spelled}:"), explain(taken)
    # the same Errors, folded as the controller folds them, end the run as an Error: rollback
    run = gate.new_run(spec, datetime.now(UTC), None)
    for _ in range(spec.consecutive_error_limit + 1):
        later = measure(world, runner, spec, "errors")
        run = gate.record(run, spec, [(t.check, t.measurement) for t in later.values()])
    assert run.phase == "Error", run.message


def test_an_annotated_error_share_is_measured_in_every_window(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    # issue 12: a revision annotated 0.3 was once measured at 0.50. The share is exact per
    # window now (ErrorShare), and the query reads it: every 5 s window over the last 10 s.
    history = 15
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # poll until Prometheus holds `history` seconds of it
        body = instant(
            world.url,
            'sum(increase(istio_requests_total{destination_canonical_service="truth",'
            f'destination_canonical_revision="c1"}}[{history}s]))',
        )
        result = body["data"]["result"]
        if result and float(result[0]["value"][1]) >= 0.8 * 20 * history:
            break
        time.sleep(0.25)
    spec = analysis({"name": "error-rate", "errorRate": {"max": 0.05, "minRequests": 10}})
    provider = world.provider(timeout=5.0)
    now = datetime.now(UTC)
    rates = []
    for tenth in range(0, 100, 5):  # 20 instants, 0.5 s apart: overlapping 5 s windows
        at = now - timedelta(seconds=tenth / 10)
        (taken,) = runner.measure(spec, context("truth"), provider, ["error-rate"], at)
        assert taken.measurement.phase == "Failed", taken.measurement.message
        assert taken.measurement.value is not None
        rates.append(taken.measurement.value)
    # ~80 requests a window: floor or ceil of 0.3 x 80, and a scrape may fall mid-tick
    assert all(0.27 <= rate <= 0.33 for rate in rates), rates


def test_invalid_promql_reports_prometheus_own_parse_error(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    taken = measure(world, runner, analysis(template_check("b", "broken")), "templated")
    measured = taken["b"].measurement
    assert measured.phase == "Error"
    assert taken["b"].query == "sum(rate(istio_requests_total[5s])"
    own = instant(world.url, taken["b"].query)
    assert own["status"] == "error" and "parse error" in own["error"]
    assert measured.message == f"Prometheus refused the query: {own['error']}"


# --- Prometheus going away ----------------------------------------------------------------------


def test_prometheus_stopped_mid_run_gives_errors_and_then_an_error_run(
    world: PrometheusWorld, runner: GateRunner
) -> None:
    second = world.spare  # a separate Prometheus: the shared one keeps running
    (stopped,) = [w for w in ALL_WORKLOADS if w.service == "stopped"]
    wait_for_data(second.url, [stopped])
    spec = analysis(ERROR_RATE, LATENCY, consecutiveErrorLimit=1)
    ctx = context("stopped")
    provider = PrometheusProvider(second.url, timeout=1.0, budget=1.0)
    names = [c.name for c in spec.checks]
    run = gate.new_run(spec, datetime.now(UTC), None)
    live = runner.measure(spec, ctx, provider, names, datetime.now(UTC))
    assert [t.measurement.phase for t in live] == ["Successful", "Successful"], [
        t.measurement for t in live
    ]
    run = gate.record(run, spec, [(t.check, t.measurement) for t in live])
    assert run.phase == "Running"
    url = second.url
    second.stop()
    for round_ in (1, 2):
        began = time.monotonic()
        taken = runner.measure(spec, ctx, provider, names, datetime.now(UTC))
        assert time.monotonic() - began <= 1.0 + 2.0  # the retry budget, and a margin
        for t in taken:
            assert t.measurement.phase == "Error"
            assert f"Prometheus at {url} unreachable" in (t.measurement.message or "")
        run = gate.record(run, spec, [(t.check, t.measurement) for t in taken])
        assert run.phase == ("Running" if round_ == 1 else "Error"), run.message
    assert all(c.consecutive_errors == 2 and c.successful == 1 for c in run.checks)
    assert world.provider().healthy()  # the shared Prometheus is untouched


def test_without_the_binary_the_tests_fail_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="apt-get install") as failed:
        start_prometheus(["127.0.0.1:1"])
    assert INSTALL_HINT in str(failed.value)
