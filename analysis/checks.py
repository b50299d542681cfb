"""The built-in checks on Istio's standard metrics: their PromQL, and the verdict. Pure.

Istio's ``istio_requests_total`` and ``istio_request_duration_milliseconds`` (reporter
``destination``, so each request is counted once, by the pod that served it) select a
version by ``destination_canonical_revision`` within ``destination_workload_namespace`` and
``destination_canonical_service`` — the labels Istio derives from the pods'
``service.istio.io/canonical-name`` and ``canonical-revision``, which the controller stamps.

Each check is ONE query: the numbers it needs (canary errors and requests, the p99 and request
count, and the stable revision's when a relative threshold is set) come back as series told
apart by a ``part`` label. A missing part means no series: zero requests, or no data.

Batched (the controller). The same numbers for every Rollout at once: ``grouped_query`` is the
check's PromQL with the per-Rollout selectors dropped (``reporter="destination"`` kept) and each
``sum`` grouped ``by`` the labels that tell Rollouts' revisions apart (``SERIES_LABELS``: the
namespace, the canonical service — two services may have a revision of the same name — and the
canonical revision). It depends only on the check's kind and window (``Shape``), so every
Rollout whose check has that shape reads the one answer: ``split_grouped`` indexes it once per
(namespace, service, revision) and ``parts_for`` picks a Rollout's canary (and stable) parts.
A group's sums are over exactly the series the per-Rollout selector matches, so a Rollout's
parts equal the unbatched query's at the same instant, and a Rollout missing from the answer has
no parts — "no series", as unbatched: never a pass. ``evaluation_instant`` aligns the instant to
the scrape interval so that Rollouts measured within one slot ask for the same answer.

Domains. A number outside its domain is broken data, not a verdict on the canary: the
measurement is an **Error** (it counts toward ``consecutiveErrorLimit``, so a gate that keeps
getting broken numbers ends in rollback), with a message naming the part and the bad value —
never Successful, and never mistaken for "no traffic". Error rather than Failed because the
number proves nothing about the canary (a broken recording rule or proxy gives the same), and
Error is what every other broken answer (garbage, HTTP 5xx) already is.

- request and error counts: finite and >= 0, and errors <= requests. Both come from the same
  series at the same instant over the same window (the 5xx series are a subset of all series,
  each series' ``increase()`` extrapolated alike), so no slack is allowed beyond float rounding
  (``_ROUNDING``): more errors than requests is a broken answer, e.g. a rewritten response;
- an error rate, hence: in [0, 1];
- latencies (p99, ms): finite and >= 0. ``histogram_quantile`` gives NaN for a window without
  observations, so a latency is judged only once the request count says there was traffic;
- stable's numbers too, whenever a relative threshold (``maxIncreaseOverStable``,
  ``maxRatioToStable``) uses them: a comparison with a broken baseline is never a pass;
- an AnalysisTemplate's value: any finite number (its ``min``/``max`` decide the rest). NaN or
  ±Inf is an Error even with ``noData: pass``, which applies only to an empty result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from analysis.measurement import slot_of as slot_of
from analysis.measurement import spell
from analysis.provider import BadResponse, Sample
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
    """A measurement's outcome: ``value`` in ``unit`` (None: a ratio or a plain number), judged
    against ``threshold`` (text for people, e.g. ``max 250``; None when unknown)."""

    phase: MeasurementPhase
    value: float | None
    message: str
    unit: str | None = None
    threshold: str | None = None


def error_rate_threshold(check: ErrorRateCheck, stable: float | None = None) -> str:
    """``check``'s limits as text: ``max 0.05``, and for a relative threshold the bound it
    gives with stable's rate when known (``max 0.006 (stable 0.001 + 0.005)``), else
    ``max stable + 0.005``."""
    parts = [] if check.max is None else [f"max {check.max:g}"]
    increase = check.max_increase_over_stable
    if increase is not None:
        parts.append(
            f"max stable + {increase:g}"
            if stable is None
            else f"max {stable + increase:.4g} (stable {stable:.4g} + {increase:g})"
        )
    return ", ".join(parts)


def latency_threshold(check: LatencyP99Check, stable: float | None = None) -> str:
    """``check``'s limits in ms as text: ``max 250``, and for ``maxRatioToStable`` the bound it
    gives with stable's p99 when known (``max 180 (1.5x stable 120)``), else ``max 1.5x
    stable``."""
    parts = [] if check.max_ms is None else [f"max {check.max_ms:g}"]
    ratio = check.max_ratio_to_stable
    if ratio is not None:
        parts.append(
            f"max {ratio:g}x stable"
            if stable is None
            else f"max {ratio * stable:.4g} ({ratio:g}x stable {stable:.4g})"
        )
    return ", ".join(parts)


def template_threshold(minimum: float | None, maximum: float | None) -> str:
    """An AnalysisTemplate's bounds as text: ``min 0.9``, ``max 1`` or ``min 0.9, max 1``."""
    bounds = (("min", minimum), ("max", maximum))
    return ", ".join(f"{word} {bound:g}" for word, bound in bounds if bound is not None)


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


# The labels that tell one Rollout's revision from every other's: Istio's canonical revision is
# unique only within its canonical service, and a service name only within its namespace.
SERIES_LABELS = (
    "destination_workload_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
)
GroupKey = tuple[str, str, str]  # (namespace, service, revision), in SERIES_LABELS' order


@dataclass(frozen=True)
class Shape:
    """A built-in check's query with the Rollout taken out: its kind and window (seconds).

    Checks of the same shape (any Rollout, any thresholds, with or without stable) read the
    same grouped answer: the thresholds and the stable side only change which parts are judged.
    """

    kind: Literal["errorRate", "latencyP99"]
    window: int

    @property
    def range(self) -> str:
        return format_duration(self.window)


def grouped_query(shape: Shape) -> str:
    """The PromQL answering ``shape`` for every (namespace, service, revision) at once.

    Parts are named without a side (``errors``, ``requests``, ``p99``) and carry
    ``SERIES_LABELS``; ``parts_for`` names them ``canary_*``/``stable_*`` for one Rollout.
    The sums are those of ``error_rate_query``/``latency_query`` with the per-Rollout
    matchers replaced by grouping on the same labels.
    """
    mesh = 'reporter="destination"'
    by = ", ".join(SERIES_LABELS)
    window = shape.range
    if shape.kind == "errorRate":
        errors = f'istio_requests_total{{{mesh},response_code=~"5.."}}'
        total = f"istio_requests_total{{{mesh}}}"
        errors = f"sum by ({by}) (increase({errors}[{window}]))"
        total = f"sum by ({by}) (increase({total}[{window}]))"
        return "\n  or ".join([_part(errors, "errors"), _part(total, "requests")])
    buckets = f"istio_request_duration_milliseconds_bucket{{{mesh}}}"
    p99 = f"histogram_quantile(0.99, sum by (le, {by}) (rate({buckets}[{window}])))"
    count = f"istio_request_duration_milliseconds_count{{{mesh}}}"
    count = f"sum by ({by}) (increase({count}[{window}]))"
    return "\n  or ".join([_part(p99, "p99"), _part(count, "requests")])


@dataclass(frozen=True)
class Grouped:
    """A grouped answer split per (namespace, service, revision): ``{part: value}`` each.

    ``twice`` names, per group, a part Prometheus answered more than once: that group's
    numbers are broken (``parts_for`` raises for it), the other groups' are not.
    """

    parts: dict[GroupKey, dict[str, float]] = field(default_factory=dict)
    twice: dict[GroupKey, str] = field(default_factory=dict)


def split_grouped(samples: list[Sample]) -> Grouped:
    """Index a ``grouped_query`` answer by ``SERIES_LABELS``, once for every Rollout reading it.

    Values are kept as answered, NaN and ±Inf included (judged per Rollout). A sample without a
    ``part`` label is not one of ours and is ignored, as ``parts_of`` does; a missing series
    label groups under "" (no Rollout has an empty namespace or service). O(samples).
    """
    answer = Grouped()
    for sample in samples:
        part = sample.labels.get("part")
        if part is None:
            continue
        labels = sample.labels
        key: GroupKey = (
            labels.get(SERIES_LABELS[0], ""),
            labels.get(SERIES_LABELS[1], ""),
            labels.get(SERIES_LABELS[2], ""),
        )
        group = answer.parts.setdefault(key, {})
        if part in group:
            answer.twice.setdefault(key, part)
            continue
        group[part] = sample.value
    return answer


def parts_for(answer: Grouped, target: Target, *, stable: bool) -> dict[str, float]:
    """``target``'s ``{canary_*: value}`` (and ``stable_*`` when ``stable``) from ``answer``.

    The same dict ``parts_of`` gives for the unbatched query at the same instant: a revision
    absent from the answer contributes no parts (no series). Raises ``BadResponse`` when a part
    of a side this check reads was answered twice (as ``parts_of``).
    """
    sides = [("canary", target.canary_revision)]
    if stable:
        sides.append(("stable", target.stable_revision))
    parts: dict[str, float] = {}
    for side, revision in sides:
        key = (target.namespace, target.service, revision)
        twice = answer.twice.get(key)
        if twice is not None:
            raise BadResponse(f"Prometheus answered {side}_{twice} twice: each part is one series")
        for part, value in answer.parts.get(key, {}).items():
            parts[f"{side}_{part}"] = value
    return parts


def shape_of(check: ErrorRateCheck | LatencyP99Check, target: Target) -> Shape:
    """The ``Shape`` of a built-in check measured over ``target``'s window."""
    kind: Literal["errorRate", "latencyP99"] = (
        "errorRate" if isinstance(check, ErrorRateCheck) else "latencyP99"
    )
    return Shape(kind, target.window)


def reads_stable(check: ErrorRateCheck | LatencyP99Check) -> bool:
    """Whether the check compares with stable (a relative threshold), hence queries it."""
    if isinstance(check, ErrorRateCheck):
        return check.max_increase_over_stable is not None
    return check.max_ratio_to_stable is not None


def evaluation_instant(now: datetime, slot: int) -> datetime:
    """``now`` floored to a whole multiple of ``slot`` seconds since the Unix epoch, in UTC.

    Never after ``now`` (no query asks for the future) and less than ``slot`` before it, so
    measurements taken within one slot by different Rollouts ask for the same instant.
    """
    seconds = math.floor(now.timestamp())
    return datetime.fromtimestamp(seconds - seconds % slot, tz=UTC)


# errors may exceed requests by float rounding of the two sums, never more
_ROUNDING = 1e-9


def parts_of(samples: list[Sample]) -> dict[str, float]:
    """``{part: value}`` of a built-in check's answer; values may be NaN or ±Inf (judged later).

    Raises ``BadResponse`` when a part comes twice: each part is one ``sum``, so one series.
    """
    parts: dict[str, float] = {}
    for sample in samples:
        part = sample.labels.get("part")
        if part is None:
            continue
        if part in parts:
            raise BadResponse(f"Prometheus answered {part} twice: each part is one series")
        parts[part] = sample.value
    return parts


def _broken(message: str) -> Verdict:
    return Verdict("Error", None, message)


def _bad_count(parts: dict[str, float], names: tuple[str, ...]) -> Verdict | None:
    """An Error for the first present count that is not a finite number >= 0."""
    for name in names:
        value = parts.get(name)
        if value is None:
            continue
        if not math.isfinite(value):
            return _broken(
                f"the query returned {spell(value)} for {name}: a request count must be a "
                "finite number"
            )
        if value < 0:
            return _broken(f"{name} is {spell(value)}: a request count cannot be negative")
    return None


def _bad_rate(parts: dict[str, float], side: str) -> Verdict | None:
    """An Error when ``side``'s counts are broken or give an error rate outside [0, 1]."""
    broken = _bad_count(parts, (f"{side}_requests", f"{side}_errors"))
    if broken is not None:
        return broken
    errors = parts.get(f"{side}_errors", 0.0)
    requests = parts.get(f"{side}_requests", 0.0)
    if errors > requests * (1 + _ROUNDING):
        rate = errors / requests if requests > 0 else math.inf
        return _broken(
            f"error rate {spell(rate)} is outside [0, 1]: {side}_errors {spell(errors)} exceed "
            f"{side}_requests {spell(requests)}"
        )
    return None


def _bad_latency(parts: dict[str, float], name: str) -> Verdict | None:
    value = parts.get(name)
    if value is None:
        return None
    if not math.isfinite(value):
        return _broken(
            f"the query returned {spell(value)} for {name}: a latency must be a finite number"
        )
    if value < 0:
        return _broken(f"{name} is {spell(value)} ms: a latency cannot be negative")
    return None


def _rate(parts: dict[str, float], side: str) -> float:
    """errors / requests of a side whose counts passed ``_bad_rate``, within [0, 1]."""
    return min(parts.get(f"{side}_errors", 0.0) / parts[f"{side}_requests"], 1.0)


def _too_few(side: str, requests: float, minimum: int, target: Target) -> Verdict:
    return Verdict(
        "Inconclusive",
        None,
        f"{side} served {requests:.0f} requests in {target.range}, fewer than minRequests "
        f"{minimum}: not enough traffic to judge",
    )


def judge_error_rate(check: ErrorRateCheck, parts: dict[str, float], target: Target) -> Verdict:
    """The canary's share of 5xx against ``max`` and stable's share plus its allowance.

    Broken counts (module docstring: domains) are an Error: the canary's first, then — only
    when the canary has not already Failed ``max`` — stable's, when the relative threshold
    needs them. The verdict carries ``error_rate_threshold`` (with stable's rate once read).
    """
    verdict = _judge_error_rate(check, parts, target)
    if verdict.threshold is None:
        verdict = replace(verdict, threshold=error_rate_threshold(check))
    return verdict


def _judge_error_rate(check: ErrorRateCheck, parts: dict[str, float], target: Target) -> Verdict:
    broken = _bad_rate(parts, "canary")
    if broken is not None:
        return broken
    requests = parts.get("canary_requests", 0.0)
    if requests < max(check.min_requests, 1):
        return _too_few("the canary", requests, check.min_requests, target)
    rate = _rate(parts, "canary")
    if check.max is not None and rate > check.max:
        return Verdict("Failed", rate, f"error rate {rate:.4f} above max {check.max}")
    if check.max_increase_over_stable is not None:
        broken = _bad_rate(parts, "stable")
        if broken is not None:
            return broken
        stable_requests = parts.get("stable_requests", 0.0)
        if stable_requests < max(check.min_requests, 1):
            return _too_few("stable", stable_requests, check.min_requests, target)
        stable = _rate(parts, "stable")
        limit = check.max_increase_over_stable
        threshold = error_rate_threshold(check, stable)
        if rate - stable > limit:
            return Verdict(
                "Failed",
                rate,
                f"error rate {rate:.4f} is {rate - stable:.4f} above stable's {stable:.4f} "
                f"(maxIncreaseOverStable {limit})",
                threshold=threshold,
            )
        return Verdict(
            "Successful",
            rate,
            f"error rate {rate:.4f} (stable {stable:.4f})",
            threshold=threshold,
        )
    return Verdict("Successful", rate, f"error rate {rate:.4f} (max {check.max})")


def judge_latency(check: LatencyP99Check, parts: dict[str, float], target: Target) -> Verdict:
    """The canary's p99 (ms) against ``maxMs`` and stable's p99 times ``maxRatioToStable``.

    Broken numbers (module docstring: domains) are an Error; a p99 is judged only once its
    side's request count shows traffic (without any, ``histogram_quantile`` answers NaN).
    The verdict's unit is ms, its threshold ``latency_threshold`` (with stable's p99 once read).
    """
    verdict = _judge_latency(check, parts, target)
    return replace(verdict, unit="ms", threshold=verdict.threshold or latency_threshold(check))


def _judge_latency(check: LatencyP99Check, parts: dict[str, float], target: Target) -> Verdict:
    broken = _bad_count(parts, ("canary_requests",))
    if broken is not None:
        return broken
    requests = parts.get("canary_requests", 0.0)
    if requests < max(check.min_requests, 1):
        return _too_few("the canary", requests, check.min_requests, target)
    broken = _bad_latency(parts, "canary_p99")
    if broken is not None:
        return broken
    p99 = parts.get("canary_p99")
    if p99 is None:
        return Verdict("Inconclusive", None, "no latency histogram for the canary")
    if check.max_ms is not None and p99 > check.max_ms:
        return Verdict("Failed", p99, f"p99 {p99:.1f} ms above maxMs {check.max_ms}")
    if check.max_ratio_to_stable is not None:
        broken = _bad_count(parts, ("stable_requests",))
        if broken is not None:
            return broken
        stable_requests = parts.get("stable_requests", 0.0)
        if stable_requests < max(check.min_requests, 1):
            return _too_few("stable", stable_requests, check.min_requests, target)
        broken = _bad_latency(parts, "stable_p99")
        if broken is not None:
            return broken
        stable = parts.get("stable_p99")
        if stable is None or stable <= 0:
            return Verdict("Inconclusive", p99, "no latency histogram for stable to compare with")
        ratio = p99 / stable
        threshold = latency_threshold(check, stable)
        if ratio > check.max_ratio_to_stable:
            return Verdict(
                "Failed",
                p99,
                f"p99 {p99:.1f} ms is {ratio:.2f}x stable's {stable:.1f} ms "
                f"(maxRatioToStable {check.max_ratio_to_stable})",
                threshold=threshold,
            )
        return Verdict(
            "Successful", p99, f"p99 {p99:.1f} ms ({ratio:.2f}x stable)", threshold=threshold
        )
    return Verdict("Successful", p99, f"p99 {p99:.1f} ms (maxMs {check.max_ms})")


def judge_template(
    minimum: float | None, maximum: float | None, no_data: str, samples: list[Sample]
) -> Verdict:
    """An AnalysisTemplate's verdict: one finite value within [min, max]; ``noData`` when empty.

    ``noData`` applies only to an empty result. NaN or ±Inf (e.g. ``vector(0) / vector(0)``) is
    an Error naming the value, whatever ``noData`` says; so are several series. The verdict's
    threshold is ``template_threshold``; it has no unit (a template does not declare one).
    """
    verdict = _judge_template(minimum, maximum, no_data, samples)
    return replace(verdict, threshold=template_threshold(minimum, maximum))


def _judge_template(
    minimum: float | None, maximum: float | None, no_data: str, samples: list[Sample]
) -> Verdict:
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
    if not math.isfinite(value):
        return _broken(
            f"the query returned {spell(value)}: only a finite number can be judged "
            "(noData applies to an empty result only)"
        )
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
