"""Taking measurements: each due check of a Rollout queried once, the checks concurrently.

A check's measurement is one query through the MetricProvider seam and a pure verdict
(``analysis.checks``). With ``shared`` answers and a ``source`` (the controller), a built-in
check is instead read from the grouped answer for its shape at the aligned evaluation instant
(``analysis.batch``): one query for every Rollout measured in that slot, each Rollout's parts
picked from it and judged alone; the measurement's ``at`` is that instant. AnalysisTemplates
are always queried per Rollout.

Whatever goes wrong — Prometheus unreachable, a refused query (its own message is kept), a
missing AnalysisTemplate or argument — is an ``Error`` measurement with a message, never an
exception, and never a pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from analysis.batch import SharedAnswers
from analysis.checks import (
    Target,
    Verdict,
    error_rate_query,
    error_rate_threshold,
    evaluation_instant,
    grouped_query,
    judge_error_rate,
    judge_latency,
    judge_template,
    latency_query,
    latency_threshold,
    parts_for,
    parts_of,
    reads_stable,
    shape_of,
    slot_of,
    template_threshold,
)
from analysis.provider import MetricError, MetricProvider, Sample
from analysis.query import UnknownVariable, render
from rollout.api.duration import format_duration
from rollout.api.gate import Analysis, Check
from rollout.api.status import Measurement
from rollout.api.template import AnalysisTemplateSpec

TemplateLookup = Callable[[str, str], AnalysisTemplateSpec | None]  # (namespace, name)


@dataclass(frozen=True)
class GateContext:
    """Whose gate: the Rollout, its service as Istio names it, and the two revisions."""

    rollout: str
    namespace: str
    service: str
    canary_revision: str
    stable_revision: str


@dataclass(frozen=True)
class Taken:
    """One measurement, with the query that produced it and how long Prometheus took."""

    check: str
    measurement: Measurement
    query: str
    seconds: float


def window_of(check: Check, analysis: Analysis) -> int:
    """The rate window: the check's own, else the interval; never under two scrapes."""
    own = None
    if check.error_rate is not None:
        own = check.error_rate.window
    elif check.latency_p99 is not None:
        own = check.latency_p99.window
    return max(own or analysis.interval, 2 * analysis.prometheus.scrape_interval)


def template_query(
    spec: AnalysisTemplateSpec, check: Check, context: GateContext, window: int
) -> str:
    assert check.template_ref is not None
    values = {f"args.{a.name}": a.value for a in spec.args if a.value is not None}
    declared = {a.name for a in spec.args}
    for name, value in check.template_ref.args.items():
        if name not in declared:
            raise UnknownVariable(f"templateRef passes arg {name!r}, which the template lacks")
        values[f"args.{name}"] = value
    missing = [a.name for a in spec.args if f"args.{a.name}" not in values]
    if missing:
        raise UnknownVariable(f"templateRef gives no value for arg(s) {', '.join(missing)}")
    values.update(
        {
            "namespace": context.namespace,
            "rollout": context.rollout,
            "canary.revision": context.canary_revision,
            "stable.revision": context.stable_revision,
            "interval": format_duration(window),
        }
    )
    return render(spec.query, values)


class TemplateMissing(ValueError):
    """A check's ``templateRef`` names an AnalysisTemplate that does not exist (or is invalid)."""


def target_of(check: Check, analysis: Analysis, context: GateContext) -> Target:
    """What ``check`` looks at for ``context``: its service's two revisions over its window."""
    return Target(
        context.namespace,
        context.service,
        context.canary_revision,
        context.stable_revision,
        window_of(check, analysis),
    )


def template_of(
    check: Check, context: GateContext, templates: TemplateLookup
) -> AnalysisTemplateSpec | None:
    """The AnalysisTemplate a ``templateRef`` check names (None for a built-in check).

    Raises ``TemplateMissing`` when it is not found."""
    ref = check.template_ref
    if ref is None:
        return None
    spec = templates(context.namespace, ref.name)
    if spec is None:
        raise TemplateMissing(f"AnalysisTemplate {context.namespace}/{ref.name} not found")
    return spec


def _query(
    check: Check, target: Target, spec: AnalysisTemplateSpec | None, context: GateContext
) -> str:
    if check.error_rate is not None:
        return error_rate_query(check.error_rate, target)
    if check.latency_p99 is not None:
        return latency_query(check.latency_p99, target)
    assert spec is not None  # template_of found it
    return template_query(spec, check, context, target.window)


def check_query(
    analysis: Analysis,
    check: Check,
    context: GateContext,
    templates: TemplateLookup,
) -> str:
    """The one PromQL query ``check`` sends for ``context``, as ``measure_one`` builds it.

    Raises ``TemplateMissing`` for a ``templateRef`` whose AnalysisTemplate is not found, and
    ``UnknownVariable`` for an argument the template lacks, a required one not given, or a
    variable the query uses that is neither an argument nor a built-in. Pure but for the
    ``templates`` lookup; used by the controller's preflight (``rollout.controller.gates``).
    """
    target = target_of(check, analysis, context)
    return _query(check, target, template_of(check, context, templates), context)


def limits_of(check: Check, spec: AnalysisTemplateSpec | None) -> tuple[str | None, str | None]:
    """``(unit, threshold)`` of ``check`` as its verdicts state them before any value is read
    (a relative threshold without stable's number): for a measurement that failed to be taken.
    A ``templateRef`` whose template is unknown (``spec`` None) has neither."""
    if check.error_rate is not None:
        return None, error_rate_threshold(check.error_rate)
    if check.latency_p99 is not None:
        return "ms", latency_threshold(check.latency_p99)
    if spec is None:
        return None, None
    return None, template_threshold(spec.min, spec.max)


def _measurement(at: datetime, verdict: Verdict) -> Measurement:
    return Measurement(
        at=at,
        phase=verdict.phase,
        value=verdict.value,
        message=verdict.message,
        unit=verdict.unit,
        threshold=verdict.threshold or None,
    )


def _judge(
    check: Check, spec: AnalysisTemplateSpec | None, samples: list[Sample], target: Target
) -> Verdict:
    if check.error_rate is not None:
        return judge_error_rate(check.error_rate, parts_of(samples), target)
    if check.latency_p99 is not None:
        return judge_latency(check.latency_p99, parts_of(samples), target)
    assert spec is not None
    return judge_template(spec.min, spec.max, spec.no_data, samples)


class GateRunner:
    def __init__(
        self, templates: TemplateLookup, workers: int = 8, shared: SharedAnswers | None = None
    ) -> None:
        self.templates = templates
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gate")
        self.shared = shared

    def measure(
        self,
        analysis: Analysis,
        context: GateContext,
        provider: MetricProvider,
        names: list[str],
        now: datetime,
        *,
        source: str | None = None,
    ) -> list[Taken]:
        """Measure the named checks at ``now``, concurrently; one query each.

        With ``shared`` answers, a ``source`` (a key naming ``provider``'s Prometheus and
        credentials: Rollouts with the same source may read each other's answers) batches the
        built-in checks (module docstring).
        """
        checks: Mapping[str, Check] = {c.name: c for c in analysis.checks}
        due = [checks[n] for n in names if n in checks]
        futures = [
            self.pool.submit(
                self.measure_one, analysis, check, context, provider, now, source=source
            )
            for check in due
        ]
        return [future.result() for future in futures]

    def measure_one(
        self,
        analysis: Analysis,
        check: Check,
        context: GateContext,
        provider: MetricProvider,
        now: datetime,
        *,
        source: str | None = None,
    ) -> Taken:
        """One check's measurement at ``now``; an ``Error`` for whatever went wrong."""
        if self.shared is not None and source is not None and check.template_ref is None:
            return self._measure_shared(analysis, check, context, provider, now, source)
        target = target_of(check, analysis, context)
        query = ""
        spec: AnalysisTemplateSpec | None = None
        started = time.perf_counter()
        try:
            spec = template_of(check, context, self.templates)
            query = _query(check, target, spec, context)
            verdict = _judge(check, spec, provider.query(query, at=now), target)
        except (MetricError, UnknownVariable, TemplateMissing) as error:
            verdict = Verdict("Error", None, str(error), *limits_of(check, spec))
        except Exception as error:  # a provider's bug is still a measurement, never a crash
            message = f"{type(error).__name__}: {error}"
            verdict = Verdict("Error", None, message, *limits_of(check, spec))
        seconds = time.perf_counter() - started
        return Taken(check.name, _measurement(now, verdict), query, seconds)

    def _measure_shared(
        self,
        analysis: Analysis,
        check: Check,
        context: GateContext,
        provider: MetricProvider,
        now: datetime,
        source: str,
    ) -> Taken:
        """A built-in check read from the shared grouped answer at the aligned instant."""
        assert self.shared is not None
        builtin = check.error_rate or check.latency_p99
        assert builtin is not None  # not a templateRef
        target = target_of(check, analysis, context)
        shape = shape_of(builtin, target)
        slot = slot_of(analysis)
        at = evaluation_instant(now, slot)
        started = time.perf_counter()
        try:
            answer = self.shared.answer(source, shape, at, slot, provider)
            parts = parts_for(answer, target, stable=reads_stable(builtin))
            if check.error_rate is not None:
                verdict = judge_error_rate(check.error_rate, parts, target)
            else:
                assert check.latency_p99 is not None
                verdict = judge_latency(check.latency_p99, parts, target)
        except MetricError as error:
            verdict = Verdict("Error", None, str(error), *limits_of(check, None))
        except Exception as error:  # a provider's bug is still a measurement, never a crash
            message = f"{type(error).__name__}: {error}"
            verdict = Verdict("Error", None, message, *limits_of(check, None))
        seconds = time.perf_counter() - started
        return Taken(check.name, _measurement(at, verdict), grouped_query(shape), seconds)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
