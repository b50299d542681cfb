"""The built-in checks' PromQL and verdicts, template rendering, and the runner's seam. Pure.

The runner is driven through the MetricProvider seam by ``CannedProvider``, an in-test
implementation of the protocol that answers canned samples: no HTTP, no Prometheus.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import pytest

from analysis.checks import (
    Target,
    error_rate_query,
    judge_error_rate,
    judge_latency,
    judge_template,
    latency_query,
    parts_of,
)
from analysis.provider import BadQuery, BadResponse, Sample
from analysis.query import UnknownVariable
from analysis.runner import GateContext, GateRunner, template_query, window_of
from rollout.api.gate import Analysis, Check, ErrorRateCheck, LatencyP99Check
from rollout.api.template import AnalysisTemplateSpec
from tests.unit.world import T0

# canary 0.8% errors, stable 0.1%
REGRESSION: dict[str, float] = {
    "canary_requests": 1000,
    "canary_errors": 8,
    "stable_requests": 1000,
    "stable_errors": 1,
}
TARGET = Target("shop", "reviews", "c4n4ry", "st4b1e", 30)
CONTEXT = GateContext("reviews", "shop", "reviews", "c4n4ry", "st4b1e")
METRIC_SELECTOR = re.compile(r"(istio_[a-z_]+)\{([^}]*)\}")


def error_check(**fields: Any) -> ErrorRateCheck:
    return ErrorRateCheck.model_validate(fields)


def latency_check(**fields: Any) -> LatencyP99Check:
    return LatencyP99Check.model_validate(fields)


def selectors(query: str) -> list[tuple[str, dict[str, str]]]:
    """Every metric selector in ``query``: (metric, {label: value-as-written})."""
    found = []
    for metric, body in METRIC_SELECTOR.findall(query):
        labels = dict(re.findall(r'(\w+)=~?"([^"]*)"', body))
        found.append((metric, labels))
    return found


def parts_named(query: str) -> list[str]:
    return re.findall(r'label_replace\(.*?, "part", "(\w+)", "", ""\)', query, re.S)


# --- the PromQL of the built-in checks ---------------------------------------------------------


def test_error_rate_query_selects_the_canary_by_istio_labels_in_one_query() -> None:
    query = error_rate_query(error_check(max=0.01), TARGET)
    assert parts_named(query) == ["canary_errors", "canary_requests"]
    found = selectors(query)
    assert [metric for metric, _ in found] == ["istio_requests_total"] * 2
    for _, labels in found:
        assert labels["reporter"] == "destination"
        assert labels["destination_workload_namespace"] == "shop"
        assert labels["destination_canonical_service"] == "reviews"
        assert labels["destination_canonical_revision"] == "c4n4ry"
    assert found[0][1]["response_code"] == "5.."
    assert "response_code" not in found[1][1]
    assert "st4b1e" not in query  # no stable part without a relative threshold
    assert query.count("[30s]") == 2
    assert query.count("sum(increase(") == 2


def test_error_rate_query_adds_stable_parts_for_a_relative_threshold() -> None:
    query = error_rate_query(error_check(max_increase_over_stable=0.005), TARGET)
    assert parts_named(query) == [
        "canary_errors",
        "canary_requests",
        "stable_errors",
        "stable_requests",
    ]
    revisions = [labels["destination_canonical_revision"] for _, labels in selectors(query)]
    assert revisions == ["c4n4ry", "c4n4ry", "st4b1e", "st4b1e"]
    assert all(labels["reporter"] == "destination" for _, labels in selectors(query))


def test_latency_query_is_the_p99_of_istio_histogram_and_its_request_count() -> None:
    query = latency_query(latency_check(max_ms=300), TARGET)
    assert parts_named(query) == ["canary_p99", "canary_requests"]
    assert [metric for metric, _ in selectors(query)] == [
        "istio_request_duration_milliseconds_bucket",
        "istio_request_duration_milliseconds_count",
    ]
    assert "histogram_quantile(0.99, sum by (le) (rate(" in query
    assert query.count("[30s]") == 2
    assert "st4b1e" not in query
    for _, labels in selectors(query):
        assert labels == {
            "reporter": "destination",
            "destination_workload_namespace": "shop",
            "destination_canonical_service": "reviews",
            "destination_canonical_revision": "c4n4ry",
        }


def test_latency_query_adds_stable_parts_for_a_ratio() -> None:
    query = latency_query(latency_check(max_ratio_to_stable=1.5), TARGET)
    assert parts_named(query) == ["canary_p99", "canary_requests", "stable_p99", "stable_requests"]
    revisions = [labels["destination_canonical_revision"] for _, labels in selectors(query)]
    assert revisions == ["c4n4ry", "c4n4ry", "st4b1e", "st4b1e"]


def test_the_range_is_spelled_as_promql_durations() -> None:
    target = Target("shop", "reviews", "c", "s", 90)
    assert "[1m30s]" in error_rate_query(error_check(max=0.1), target)
    assert "[1m30s]" in latency_query(latency_check(max_ms=1), target)


def gate(interval: str, scrape: str, check: dict[str, Any], *, templates: bool = False) -> Analysis:
    return Analysis.model_validate(
        {
            "interval": interval,
            "prometheus": {"scrapeInterval": scrape},
            "checks": [{"name": "c", **check}],
        }
    )


@pytest.mark.parametrize(
    ("interval", "scrape", "check", "window"),
    [
        ("30s", "15s", {"errorRate": {"max": 0.01}}, 30),
        ("30s", "15s", {"errorRate": {"max": 0.01, "window": "2m"}}, 120),
        ("30s", "15s", {"latencyP99": {"maxMs": 5, "window": "45s"}}, 45),
        ("10s", "15s", {"errorRate": {"max": 0.01}}, 30),  # never under two scrapes
        ("1m", "15s", {"latencyP99": {"maxMs": 5, "window": "10s"}}, 30),
        ("5s", "1s", {"errorRate": {"max": 0.01}}, 5),
        ("5s", "1s", {"templateRef": {"name": "t"}}, 5),
        ("5s", "10s", {"templateRef": {"name": "t"}}, 20),
    ],
)
def test_the_window_is_the_checks_or_the_interval_never_under_two_scrapes(
    interval: str, scrape: str, check: dict[str, Any], window: int
) -> None:
    analysis = gate(interval, scrape, check)
    assert window_of(analysis.checks[0], analysis) == window


def test_parts_of_keys_samples_by_their_part_label() -> None:
    samples = [
        Sample(3.0, {"part": "canary_requests"}),
        Sample(1.0, {}),
        Sample(0.5, {"part": "x"}),
    ]
    assert parts_of(samples) == {"canary_requests": 3.0, "x": 0.5}


# --- verdicts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "parts", "phase", "value"),
    [
        ({"max": 0.01}, {"canary_requests": 100, "canary_errors": 0}, "Successful", 0.0),
        ({"max": 0.01}, {"canary_requests": 100}, "Successful", 0.0),  # no 5xx series at all
        ({"max": 0.01}, {"canary_requests": 100, "canary_errors": 1}, "Successful", 0.01),
        ({"max": 0.01}, {"canary_requests": 100, "canary_errors": 2}, "Failed", 0.02),
        ({"max": 0.0}, {"canary_requests": 100, "canary_errors": 1}, "Failed", 0.01),
        (
            {"maxIncreaseOverStable": 0.005},
            {
                "canary_requests": 1000,
                "canary_errors": 8,
                "stable_requests": 1000,
                "stable_errors": 1,
            },
            "Failed",
            0.008,
        ),
        (
            {"maxIncreaseOverStable": 0.005},
            {
                "canary_requests": 1000,
                "canary_errors": 4,
                "stable_requests": 1000,
                "stable_errors": 1,
            },
            "Successful",
            0.004,
        ),
        (  # the absolute threshold passes, the relative one catches the regression
            {"max": 0.01, "maxIncreaseOverStable": 0.005},
            {
                "canary_requests": 1000,
                "canary_errors": 8,
                "stable_requests": 1000,
                "stable_errors": 1,
            },
            "Failed",
            0.008,
        ),
        (  # the absolute threshold fails first, whatever stable did
            {"max": 0.01, "maxIncreaseOverStable": 0.5},
            {"canary_requests": 100, "canary_errors": 50},
            "Failed",
            0.5,
        ),
        (  # no stable traffic to compare with
            {"maxIncreaseOverStable": 0.005},
            {"canary_requests": 1000, "canary_errors": 8},
            "Inconclusive",
            None,
        ),
        (
            {"maxIncreaseOverStable": 0.005, "minRequests": 50},
            {"canary_requests": 1000, "canary_errors": 8, "stable_requests": 49},
            "Inconclusive",
            None,
        ),
        ({"max": 0.01}, {}, "Inconclusive", None),
        ({"max": 0.01, "minRequests": 0}, {}, "Inconclusive", None),  # 0 requests: no rate
        ({"max": 0.01, "minRequests": 0}, {"canary_requests": 1}, "Successful", 0.0),
    ],
)
def test_error_rate_verdicts(
    check: dict[str, Any], parts: dict[str, float], phase: str, value: float | None
) -> None:
    verdict = judge_error_rate(error_check(**check), parts, TARGET)
    assert verdict.phase == phase, verdict.message
    assert verdict.value == pytest.approx(value)


def test_too_few_requests_is_inconclusive_and_names_the_count() -> None:
    verdict = judge_error_rate(
        error_check(max=0.01), {"canary_requests": 12, "canary_errors": 12}, TARGET
    )
    assert verdict.phase == "Inconclusive"
    assert verdict.value is None
    assert "12 requests" in verdict.message
    assert "minRequests 20" in verdict.message
    assert "30s" in verdict.message
    stable = judge_error_rate(
        error_check(max_increase_over_stable=0.01),
        {"canary_requests": 100, "stable_requests": 7},
        TARGET,
    )
    assert stable.phase == "Inconclusive"
    assert stable.message.startswith("stable served 7 requests")


def test_failure_messages_name_value_and_threshold() -> None:
    absolute = judge_error_rate(
        error_check(max=0.01), {"canary_requests": 100, "canary_errors": 5}, TARGET
    )
    assert absolute.message == "error rate 0.0500 above max 0.01"
    relative = judge_error_rate(
        error_check(max_increase_over_stable=0.005),
        REGRESSION,
        TARGET,
    )
    assert "stable's 0.0010" in relative.message
    assert "maxIncreaseOverStable 0.005" in relative.message


@pytest.mark.parametrize(
    ("check", "parts", "phase", "value"),
    [
        ({"maxMs": 300}, {"canary_requests": 100, "canary_p99": 250}, "Successful", 250),
        ({"maxMs": 300}, {"canary_requests": 100, "canary_p99": 300}, "Successful", 300),
        ({"maxMs": 300}, {"canary_requests": 100, "canary_p99": 350}, "Failed", 350),
        ({"maxMs": 300}, {"canary_requests": 10, "canary_p99": 9999}, "Inconclusive", None),
        ({"maxMs": 300}, {"canary_requests": 100}, "Inconclusive", None),  # no histogram
        ({"maxMs": 300}, {}, "Inconclusive", None),
        (
            {"maxRatioToStable": 1.5},
            {"canary_requests": 100, "canary_p99": 150, "stable_requests": 100, "stable_p99": 100},
            "Successful",
            150,
        ),
        (
            {"maxRatioToStable": 1.5},
            {"canary_requests": 100, "canary_p99": 160, "stable_requests": 100, "stable_p99": 100},
            "Failed",
            160,
        ),
        (  # the absolute threshold passes, the ratio catches the regression
            {"maxMs": 500, "maxRatioToStable": 2},
            {"canary_requests": 100, "canary_p99": 240, "stable_requests": 100, "stable_p99": 80},
            "Failed",
            240,
        ),
        (
            {"maxRatioToStable": 1.5},
            {"canary_requests": 100, "canary_p99": 150},
            "Inconclusive",
            None,
        ),
        (
            {"maxRatioToStable": 1.5},
            {"canary_requests": 100, "canary_p99": 150, "stable_requests": 100},
            "Inconclusive",
            150,
        ),
        (
            {"maxRatioToStable": 1.5},
            {"canary_requests": 100, "canary_p99": 150, "stable_requests": 100, "stable_p99": 0},
            "Inconclusive",
            150,
        ),
    ],
)
def test_latency_verdicts(
    check: dict[str, Any], parts: dict[str, float], phase: str, value: float | None
) -> None:
    verdict = judge_latency(latency_check(**check), parts, TARGET)
    assert verdict.phase == phase, verdict.message
    assert verdict.value == value


@pytest.mark.parametrize(
    ("minimum", "maximum", "no_data", "values", "phase", "value"),
    [
        (None, 0.5, "inconclusive", [], "Inconclusive", None),
        (None, 0.5, "fail", [], "Failed", None),
        (None, 0.5, "pass", [], "Successful", None),
        (None, 0.5, "fail", [0.2, 0.3], "Error", None),  # more than one series
        (None, 0.5, "inconclusive", [0.2], "Successful", 0.2),
        (None, 0.5, "inconclusive", [0.5], "Successful", 0.5),
        (None, 0.5, "inconclusive", [0.6], "Failed", 0.6),
        (10.0, None, "inconclusive", [9.9], "Failed", 9.9),
        (10.0, None, "inconclusive", [10.0], "Successful", 10.0),
        (10.0, 20.0, "inconclusive", [15.0], "Successful", 15.0),
        (10.0, 20.0, "inconclusive", [25.0], "Failed", 25.0),
        (10.0, 20.0, "inconclusive", [5.0], "Failed", 5.0),
        (-1.0, 1.0, "fail", [0.0], "Successful", 0.0),
    ],
)
def test_template_verdicts(
    minimum: float | None,
    maximum: float | None,
    no_data: str,
    values: list[float],
    phase: str,
    value: float | None,
) -> None:
    samples = [Sample(v, {"pod": f"p{i}"}) for i, v in enumerate(values)]
    verdict = judge_template(minimum, maximum, no_data, samples)
    assert verdict.phase == phase, verdict.message
    assert verdict.value == value


def test_template_verdict_messages() -> None:
    assert judge_template(None, 0.5, "fail", []).message.endswith("(noData: fail)")
    many = judge_template(None, 0.5, "fail", [Sample(1), Sample(2), Sample(3)])
    assert "3 series" in many.message and "sum(" in many.message
    assert judge_template(1, 2, "pass", [Sample(1.5)]).message == "1.5 within min 1 and max 2"
    assert judge_template(1, 2, "pass", [Sample(3)]).message == "3 above max 2"
    assert judge_template(1, 2, "pass", [Sample(0)]).message == "0 below min 1"


# --- template rendering -------------------------------------------------------------------------

TEMPLATE_QUERY = (
    'sum(rate(istio_requests_total{destination_service_name="{{args.service}}",'
    'destination_workload_namespace="{{namespace}}",'
    'destination_canonical_revision="{{canary.revision}}",response_code=~"{{ args.code }}"}'
    "[{{interval}}])) / on() group_left() "
    'sum(rate(istio_requests_total{destination_canonical_revision="{{stable.revision}}"}'
    "[{{interval}}])) # {{rollout}}"
)


def template(query: str = TEMPLATE_QUERY, **fields: Any) -> AnalysisTemplateSpec:
    return AnalysisTemplateSpec.model_validate(
        {
            "args": [{"name": "service"}, {"name": "code", "value": "5.."}],
            "query": query,
            "max": 0.5,
            **fields,
        }
    )


def ref(args: dict[str, str]) -> Check:
    return Check.model_validate({"name": "t", "templateRef": {"name": "tmpl", "args": args}})


def test_template_query_substitutes_args_defaults_and_builtins() -> None:
    query = template_query(template(), ref({"service": "reviews-v2"}), CONTEXT, 90)
    assert query == (
        'sum(rate(istio_requests_total{destination_service_name="reviews-v2",'
        'destination_workload_namespace="shop",'
        'destination_canonical_revision="c4n4ry",response_code=~"5.."}'
        "[1m30s])) / on() group_left() "
        'sum(rate(istio_requests_total{destination_canonical_revision="st4b1e"}'
        "[1m30s])) # reviews"
    )


def test_template_ref_args_override_defaults() -> None:
    query = template_query(template(), ref({"service": "s", "code": "50[34]"}), CONTEXT, 30)
    assert 'response_code=~"50[34]"' in query


def test_template_values_are_substituted_never_evaluated() -> None:
    query = template_query(template(), ref({"service": "{{namespace}}"}), CONTEXT, 30)
    assert 'destination_service_name="{{namespace}}"' in query


@pytest.mark.parametrize(
    ("args", "query", "message"),
    [
        ({}, TEMPLATE_QUERY, "gives no value for arg(s) service"),
        ({"service": "s", "colour": "red"}, TEMPLATE_QUERY, "passes arg 'colour'"),
        ({"service": "s"}, 'sum(x{a="{{args.nope}}"})', "{{args.nope}}"),
        ({"service": "s"}, 'sum(x{a="{{canary.hash}}"})', "{{canary.hash}}"),
    ],
)
def test_template_mistakes_are_unknown_variables(
    args: dict[str, str], query: str, message: str
) -> None:
    with pytest.raises(UnknownVariable, match=re.escape(message)):
        template_query(template(query), ref(args), CONTEXT, 30)


# --- the runner, through the seam ---------------------------------------------------------------


class CannedProvider:
    """A MetricProvider answering canned samples (or raising), recording each query."""

    def __init__(self, answer: list[Sample] | Exception) -> None:
        self.answer = answer
        self.queries: list[tuple[str, datetime | None]] = []

    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        self.queries.append((promql, at))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def healthy(self) -> bool:
        return True


ANALYSIS = Analysis.model_validate(
    {
        "interval": "30s",
        "prometheus": {"scrapeInterval": "15s"},
        "checks": [
            {"name": "errors", "errorRate": {"max": 0.01}},
            {"name": "latency", "latencyP99": {"maxMs": 300, "window": "1m"}},
            {"name": "custom", "templateRef": {"name": "tmpl", "args": {"service": "reviews"}}},
            {"name": "missing", "templateRef": {"name": "nowhere"}},
        ],
    }
)


def lookup(namespace: str, name: str) -> AnalysisTemplateSpec | None:
    return template() if (namespace, name) == ("shop", "tmpl") else None


@pytest.fixture
def runner() -> Any:
    gate_runner = GateRunner(lookup, workers=2)
    yield gate_runner
    gate_runner.close()


def test_each_check_is_one_query_at_now(runner: GateRunner) -> None:
    provider = CannedProvider(
        [Sample(100, {"part": "canary_requests"}), Sample(80, {"part": "canary_p99"})]
    )
    taken = runner.measure(ANALYSIS, CONTEXT, provider, ["errors", "latency", "gone"], T0)
    assert [t.check for t in taken] == ["errors", "latency"]
    assert [q for q, _ in provider.queries] == [t.query for t in taken]
    assert all(at == T0 for _, at in provider.queries)
    assert "[30s]" in taken[0].query and "[1m]" in taken[1].query
    assert [t.measurement.phase for t in taken] == ["Successful", "Successful"]
    assert taken[1].measurement.value == 80
    assert all(t.measurement.at == T0 for t in taken)


def test_template_checks_render_and_judge(runner: GateRunner) -> None:
    provider = CannedProvider([Sample(0.7)])
    (taken,) = runner.measure(ANALYSIS, CONTEXT, provider, ["custom"], T0)
    assert taken.measurement.phase == "Failed"
    assert taken.measurement.value == 0.7
    assert 'destination_service_name="reviews"' in taken.query


def test_a_missing_template_is_an_error_without_a_query(runner: GateRunner) -> None:
    provider = CannedProvider([Sample(0.1)])
    (taken,) = runner.measure(ANALYSIS, CONTEXT, provider, ["missing"], T0)
    assert taken.measurement.phase == "Error"
    assert taken.measurement.message == "AnalysisTemplate shop/nowhere not found"
    assert provider.queries == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (BadQuery("Prometheus refused the query: 1:5: parse error"), "1:5: parse error"),
        (RuntimeError("provider bug"), "RuntimeError: provider bug"),
    ],
)
def test_provider_failures_become_error_measurements(
    runner: GateRunner, error: Exception, message: str
) -> None:
    provider = CannedProvider(error)
    taken = runner.measure(ANALYSIS, CONTEXT, provider, ["errors", "latency", "custom"], T0)
    assert [t.measurement.phase for t in taken] == ["Error"] * 3
    assert all(message in (t.measurement.message or "") for t in taken)
    assert all(t.query for t in taken)  # the query that failed is reported


# --- domains: a number outside its domain is an Error naming it, never a pass ----------------

NAN, INF = math.nan, math.inf
SHORT = {
    "cr": "canary_requests",
    "ce": "canary_errors",
    "sr": "stable_requests",
    "se": "stable_errors",
    "cp": "canary_p99",
    "sp": "stable_p99",
}


def P(**short: float) -> dict[str, float]:  # noqa: N802 - a table's shorthand
    """Parts by short names: cr/ce canary requests/errors, sr/se stable's, cp/sp p99s."""
    return {SHORT[k]: v for k, v in short.items()}


C = {"cr": 1000.0, "ce": 1.0}  # a healthy canary, by short names


@pytest.mark.parametrize(
    ("check", "parts", "message"),
    [
        ({"max": 0.01}, P(cr=100, ce=NAN), "returned NaN for canary_errors"),
        ({"max": 0.01}, P(cr=NAN), "returned NaN for canary_requests"),
        ({"max": 0.01}, P(cr=INF, ce=5), "returned +Inf for canary_requests"),
        ({"max": 0.01}, P(cr=100, ce=-INF), "returned -Inf for canary_errors"),
        (
            {"max": 0.01},
            P(cr=300, ce=-5),
            "canary_errors is -5: a request count cannot be negative",
        ),
        ({"max": 0.01}, P(cr=-100), "canary_requests is -100: a request count cannot be negative"),
        ({"max": 0.01}, P(cr=100, ce=170), "error rate 1.7 is outside [0, 1]"),
        ({"max": 0.01}, P(ce=3), "error rate +Inf is outside [0, 1]"),
        ({"max": 0.01, "minRequests": 500}, P(cr=10, ce=-1), "canary_errors is -1"),
        # stable's numbers, whenever the relative threshold uses them
        (
            {"maxIncreaseOverStable": 0.005},
            P(**C, sr=1000, se=NAN),
            "returned NaN for stable_errors",
        ),
        ({"maxIncreaseOverStable": 0.005}, P(**C, sr=1000, se=-50), "stable_errors is -50"),
        ({"maxIncreaseOverStable": 0.005}, P(**C, sr=-1000), "stable_requests is -1000"),
        ({"maxIncreaseOverStable": 0.005}, P(**C, sr=INF), "returned +Inf for stable_requests"),
        ({"maxIncreaseOverStable": 0.005}, P(**C, sr=10, se=20), "error rate 2 is outside [0, 1]"),
        (
            {"max": 0.01, "maxIncreaseOverStable": 0.005},
            P(**C, sr=NAN),
            "returned NaN for stable_requests",
        ),
    ],
)
def test_error_rate_outside_its_domain_is_an_error_naming_the_value(
    check: dict[str, Any], parts: dict[str, float], message: str
) -> None:
    verdict = judge_error_rate(error_check(**check), parts, TARGET)
    assert verdict.phase == "Error", verdict.message
    assert verdict.value is None
    assert message in verdict.message
    assert "served" not in verdict.message  # never "the canary served 0 requests"


def test_a_canary_failing_max_fails_whatever_stable_answered() -> None:
    parts = {"canary_requests": 100.0, "canary_errors": 30.0, "stable_errors": NAN}
    verdict = judge_error_rate(error_check(max=0.01, max_increase_over_stable=0.1), parts, TARGET)
    assert verdict.phase == "Failed" and verdict.value == pytest.approx(0.3)


def test_errors_equal_to_requests_up_to_float_rounding_is_a_rate_of_one() -> None:
    parts = {"canary_requests": 100.0, "canary_errors": 100.0 * (1 + 1e-12)}
    verdict = judge_error_rate(error_check(max=1.0), parts, TARGET)
    assert verdict.phase == "Successful" and verdict.value == 1.0


@pytest.mark.parametrize(
    ("check", "parts", "message"),
    [
        ({"maxMs": 300}, P(cr=100, cp=-1), "canary_p99 is -1 ms: a latency cannot be negative"),
        ({"maxMs": 300}, P(cr=100, cp=NAN), "returned NaN for canary_p99"),
        ({"maxMs": 300}, P(cr=100, cp=INF), "returned +Inf for canary_p99"),
        ({"maxMs": 300}, P(cr=100, cp=-INF), "returned -Inf for canary_p99"),
        ({"maxMs": 300}, P(cr=-100, cp=900), "canary_requests is -100"),
        ({"maxMs": 300}, P(cr=NAN, cp=900), "returned NaN for canary_requests"),
        ({"maxRatioToStable": 1.5}, P(cr=100, cp=150, sr=100, sp=-100), "stable_p99 is -100 ms"),
        (
            {"maxRatioToStable": 1.5},
            P(cr=100, cp=150, sr=100, sp=INF),
            "returned +Inf for stable_p99",
        ),
        (
            {"maxRatioToStable": 1.5},
            P(cr=100, cp=150, sr=100, sp=NAN),
            "returned NaN for stable_p99",
        ),
        ({"maxRatioToStable": 1.5}, P(cr=100, cp=150, sr=-5), "stable_requests is -5"),
        (
            {"maxMs": 500, "maxRatioToStable": 2},
            P(cr=100, cp=150, sr=NAN),
            "returned NaN for stable_requests",
        ),
    ],
)
def test_latency_outside_its_domain_is_an_error_naming_the_value(
    check: dict[str, Any], parts: dict[str, float], message: str
) -> None:
    verdict = judge_latency(latency_check(**check), parts, TARGET)
    assert verdict.phase == "Error", verdict.message
    assert verdict.value is None
    assert message in verdict.message


def test_a_nan_p99_without_traffic_is_too_few_requests_not_an_error() -> None:
    # histogram_quantile over a window without observations is NaN: the count says why
    verdict = judge_latency(
        latency_check(max_ms=300), {"canary_requests": 0, "canary_p99": NAN}, TARGET
    )
    assert verdict.phase == "Inconclusive" and "served 0 requests" in verdict.message
    stable = judge_latency(
        latency_check(max_ratio_to_stable=2),
        {"canary_requests": 100, "canary_p99": 80, "stable_requests": 0, "stable_p99": NAN},
        TARGET,
    )
    assert stable.phase == "Inconclusive" and stable.message.startswith("stable served 0")


@pytest.mark.parametrize(("value", "spelled"), [(NAN, "NaN"), (INF, "+Inf"), (-INF, "-Inf")])
@pytest.mark.parametrize("no_data", ["pass", "fail", "inconclusive"])
@pytest.mark.parametrize(("minimum", "maximum"), [(None, 0.01), (0.0, None), (-1e308, 1e308)])
def test_a_template_value_that_is_not_finite_is_an_error_whatever_no_data_says(
    value: float, spelled: str, no_data: str, minimum: float | None, maximum: float | None
) -> None:
    verdict = judge_template(minimum, maximum, no_data, [Sample(value)])
    assert verdict.phase == "Error"
    assert verdict.value is None
    assert verdict.message.startswith(f"the query returned {spelled}:")
    assert "no data" not in verdict.message.replace("noData", "")


def test_a_template_keeps_negative_finite_values_for_min_and_max() -> None:
    assert judge_template(-5.0, 0.0, "pass", [Sample(-1.0)]).phase == "Successful"
    assert judge_template(0.0, None, "pass", [Sample(-1.0)]).phase == "Failed"


def test_a_part_answered_twice_is_a_bad_response() -> None:
    samples = [Sample(1.0, {"part": "canary_errors"}), Sample(0.0, {"part": "canary_errors"})]
    with pytest.raises(BadResponse, match="canary_errors twice"):
        parts_of(samples)


def samples(**short: float) -> list[Sample]:
    return [Sample(v, {"part": k}) for k, v in P(**short).items()]


@pytest.mark.parametrize(
    ("answer", "check", "message"),
    [
        (samples(cr=100, ce=-5), "errors", "canary_errors is -5"),
        (samples(cr=100, cp=-1), "latency", "canary_p99 is -1 ms"),
        ([Sample(NAN)], "custom", "the query returned NaN"),
        ([Sample(INF)], "custom", "the query returned +Inf"),
    ],
)
def test_the_runner_records_broken_numbers_as_errors(
    runner: GateRunner, answer: list[Sample], check: str, message: str
) -> None:
    (taken,) = runner.measure(ANALYSIS, CONTEXT, CannedProvider(answer), [check], T0)
    assert taken.measurement.phase == "Error"
    assert taken.measurement.value is None
    assert message in (taken.measurement.message or "")


# --- what a value is judged against: unit and threshold, recorded with each measurement ------


def test_measurements_carry_their_unit_and_threshold(runner: GateRunner) -> None:
    provider = CannedProvider(
        [
            Sample(100, {"part": "canary_requests"}),
            Sample(84, {"part": "canary_p99"}),
            Sample(1, {"part": "canary_errors"}),
        ]
    )
    errors, latency = runner.measure(ANALYSIS, CONTEXT, provider, ["errors", "latency"], T0)
    assert (errors.measurement.value, errors.measurement.unit) == (0.01, None)
    assert errors.measurement.threshold == "max 0.01"
    assert (latency.measurement.value, latency.measurement.unit) == (84, "ms")
    assert latency.measurement.threshold == "max 300"
    (custom,) = runner.measure(ANALYSIS, CONTEXT, CannedProvider([Sample(0.2)]), ["custom"], T0)
    assert (custom.measurement.unit, custom.measurement.threshold) == (None, "max 0.5")


def test_a_check_that_could_not_be_measured_still_states_its_threshold(
    runner: GateRunner,
) -> None:
    provider = CannedProvider(BadResponse("garbage"))
    errors, latency = runner.measure(ANALYSIS, CONTEXT, provider, ["errors", "latency"], T0)
    assert errors.measurement.phase == latency.measurement.phase == "Error"
    assert errors.measurement.threshold == "max 0.01"
    assert (latency.measurement.unit, latency.measurement.threshold) == ("ms", "max 300")
    (missing,) = runner.measure(ANALYSIS, CONTEXT, provider, ["missing"], T0)
    assert (missing.measurement.unit, missing.measurement.threshold) == (None, None)


def test_relative_thresholds_state_the_bound_stable_gave() -> None:
    check = error_check(max=0.05, maxIncreaseOverStable=0.005)
    verdict = judge_error_rate(check, REGRESSION, TARGET)
    assert verdict.phase == "Failed"
    assert verdict.threshold == "max 0.05, max 0.006 (stable 0.001 + 0.005)"
    too_few = judge_error_rate(check, {"canary_requests": 16}, TARGET)
    assert too_few.phase == "Inconclusive" and too_few.value is None
    assert too_few.threshold == "max 0.05, max stable + 0.005"
    parts = {"canary_requests": 100.0, "canary_p99": 180.0}
    parts |= {"stable_requests": 100.0, "stable_p99": 120.0}
    latency = judge_latency(latency_check(maxRatioToStable=1.5), parts, TARGET)
    assert (latency.phase, latency.unit) == ("Successful", "ms")
    assert latency.threshold == "max 180 (1.5x stable 120)"
    assert judge_template(0.9, 1, "inconclusive", [Sample(0.95)]).threshold == "min 0.9, max 1"
