"""The built-in checks on Istio's standard metrics: their PromQL, and the verdict. Pure.

Istio's ``istio_requests_total`` and ``istio_request_duration_milliseconds`` (reporter
``destination``, so each request is counted once, by the pod that served it) select a
version by ``destination_canonical_revision`` within ``destination_workload_namespace`` and
``destination_canonical_service`` — the labels Istio derives from the pods'
``service.istio.io/canonical-name`` and ``canonical-revision``, which the controller stamps.

Each check is ONE query: the numbers it needs (canary errors and requests, the p99 and request
count, and the stable revision's when a relative threshold is set) come back as series told
apart by a ``part`` label. A missing part means no series: zero requests, or no data.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.provider import Sample
from rollout.api.duration import format_duration
from rollout.api.gate import ErrorRateCheck, LatencyP99Check
from rollout.api.status import MeasurementPhase


@dataclass(frozen=True)
class Target:
    """What a measurement looks at: one service's two revisions, over one window."""

    namespace: str
    service: str
    canary_revision: str
    stable_revision: str
    window: int  # seconds

    def selector(self, revision: str) -> str:
        return (
            f'reporter="destination",destination_workload_namespace="{self.namespace}",'
            f'destination_canonical_service="{self.service}",'
            f'destination_canonical_revision="{revision}"'
        )

    @property
    def range(self) -> str:
        return format_duration(self.window)


@dataclass(frozen=True)
class Verdict:
    phase: MeasurementPhase
    value: float | None
    message: str


def _part(expression: str, name: str) -> str:
    return f'label_replace({expression}, "part", "{name}", "", "")'


def error_rate_query(check: ErrorRateCheck, target: Target) -> str:
    revisions = [("canary", target.canary_revision)]
    if check.max_increase_over_stable is not None:
        revisions.append(("stable", target.stable_revision))
    parts = []
    for side, revision in revisions:
        selector = target.selector(revision)
        window = target.range
        errors = f'istio_requests_total{{{selector},response_code=~"5.."}}'
        total = f"istio_requests_total{{{selector}}}"
        errors = f"sum(increase({errors}[{window}]))"
        total = f"sum(increase({total}[{window}]))"
        parts += [_part(errors, f"{side}_errors"), _part(total, f"{side}_requests")]
    return "\n  or ".join(parts)


def latency_query(check: LatencyP99Check, target: Target) -> str:
    revisions = [("canary", target.canary_revision)]
    if check.max_ratio_to_stable is not None:
        revisions.append(("stable", target.stable_revision))
    parts = []
    for side, revision in revisions:
        selector = target.selector(revision)
        buckets = f"istio_request_duration_milliseconds_bucket{{{selector}}}"
        p99 = f"histogram_quantile(0.99, sum by (le) (rate({buckets}[{target.range}])))"
        count = f"istio_request_duration_milliseconds_count{{{selector}}}"
        count = f"sum(increase({count}[{target.range}]))"
        parts += [_part(p99, f"{side}_p99"), _part(count, f"{side}_requests")]
    return "\n  or ".join(parts)


def parts_of(samples: list[Sample]) -> dict[str, float]:
    return {s.labels["part"]: s.value for s in samples if "part" in s.labels}


def _too_few(side: str, requests: float, minimum: int, target: Target) -> Verdict:
    return Verdict(
        "Inconclusive",
        None,
        f"{side} served {requests:.0f} requests in {target.range}, fewer than minRequests "
        f"{minimum}: not enough traffic to judge",
    )


def judge_error_rate(check: ErrorRateCheck, parts: dict[str, float], target: Target) -> Verdict:
    requests = parts.get("canary_requests", 0.0)
    if requests < max(check.min_requests, 1):
        return _too_few("the canary", requests, check.min_requests, target)
    rate = parts.get("canary_errors", 0.0) / requests
    if check.max is not None and rate > check.max:
        return Verdict("Failed", rate, f"error rate {rate:.4f} above max {check.max}")
    if check.max_increase_over_stable is not None:
        stable_requests = parts.get("stable_requests", 0.0)
        if stable_requests < max(check.min_requests, 1):
            return _too_few("stable", stable_requests, check.min_requests, target)
        stable = parts.get("stable_errors", 0.0) / stable_requests
        limit = check.max_increase_over_stable
        if rate - stable > limit:
            return Verdict(
                "Failed",
                rate,
                f"error rate {rate:.4f} is {rate - stable:.4f} above stable's {stable:.4f} "
                f"(maxIncreaseOverStable {limit})",
            )
        return Verdict("Successful", rate, f"error rate {rate:.4f} (stable {stable:.4f})")
    return Verdict("Successful", rate, f"error rate {rate:.4f} (max {check.max})")


def judge_latency(check: LatencyP99Check, parts: dict[str, float], target: Target) -> Verdict:
    requests = parts.get("canary_requests", 0.0)
    if requests < max(check.min_requests, 1):
        return _too_few("the canary", requests, check.min_requests, target)
    p99 = parts.get("canary_p99")
    if p99 is None:
        return Verdict("Inconclusive", None, "no latency histogram for the canary")
    if check.max_ms is not None and p99 > check.max_ms:
        return Verdict("Failed", p99, f"p99 {p99:.1f} ms above maxMs {check.max_ms}")
    if check.max_ratio_to_stable is not None:
        stable_requests = parts.get("stable_requests", 0.0)
        stable = parts.get("stable_p99")
        if stable_requests < max(check.min_requests, 1):
            return _too_few("stable", stable_requests, check.min_requests, target)
        if stable is None or stable <= 0:
            return Verdict("Inconclusive", p99, "no latency histogram for stable to compare with")
        ratio = p99 / stable
        if ratio > check.max_ratio_to_stable:
            return Verdict(
                "Failed",
                p99,
                f"p99 {p99:.1f} ms is {ratio:.2f}x stable's {stable:.1f} ms "
                f"(maxRatioToStable {check.max_ratio_to_stable})",
            )
        return Verdict("Successful", p99, f"p99 {p99:.1f} ms ({ratio:.2f}x stable)")
    return Verdict("Successful", p99, f"p99 {p99:.1f} ms (maxMs {check.max_ms})")


def judge_template(
    minimum: float | None, maximum: float | None, no_data: str, samples: list[Sample]
) -> Verdict:
    """An AnalysisTemplate's verdict: one value within [min, max]; ``noData`` when empty."""
    if not samples:
        if no_data == "fail":
            return Verdict("Failed", None, "the query returned no data (noData: fail)")
        if no_data == "pass":
            return Verdict("Successful", None, "the query returned no data (noData: pass)")
        return Verdict("Inconclusive", None, "the query returned no data (noData: inconclusive)")
    if len(samples) > 1:
        return Verdict(
            "Error",
            None,
            f"the query returned {len(samples)} series: aggregate it to one, e.g. sum(...)",
        )
    value = samples[0].value
    if minimum is not None and value < minimum:
        return Verdict("Failed", value, f"{value:g} below min {minimum:g}")
    if maximum is not None and value > maximum:
        return Verdict("Failed", value, f"{value:g} above max {maximum:g}")
    bounds = " and ".join(
        f"{word} {bound:g}"
        for word, bound in (("min", minimum), ("max", maximum))
        if bound is not None
    )
    return Verdict("Successful", value, f"{value:g} within {bounds}")
