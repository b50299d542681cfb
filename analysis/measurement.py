"""The gate's measurement state machine. Pure: no I/O, ``now`` is always an argument.

A *run* is one pass of the gate: the counted run of an analysis step (``count`` measurements
per check) or the background run of a canary (no count, runs until promotion). Each check is
measured every ``interval``, the first time one interval after the run starts, so the first
rate window already covers the canary's traffic. A check's phase follows its counters:

- more than ``failureLimit`` failed measurements: Failed;
- more than ``consecutiveErrorLimit`` errors in a row: Error;
- more than ``inconclusiveLimit`` inconclusive measurements: Inconclusive;
- ``count`` measurements reached: Successful if at least one passed and the latest passed,
  Inconclusive if none passed; a Failed or Inconclusive latest measurement within its limit
  is measured again (Running) until one passes or a limit is exceeded;
  otherwise Running (Pending before the first).

Successful, Failed and Error are final: the check is no longer measured. Inconclusive is not:
the check goes on being measured every interval (the rollout waits, paused, and a canary that
then fails must still be caught) and stays Inconclusive until a measurement makes it Failed or
Error, or the operator starts a new run.

The run takes its worst non-dry-run check. A measurement's value is finite or None: a NaN or
±Inf value is dropped (the status is JSON), and a Successful measurement carrying one is
recorded as an Error naming the value — broken data is never a pass, and an Error counts toward
``consecutiveErrorLimit``, so broken data that persists ends in rollback. A Successful
measurement without a value is kept: only an AnalysisTemplate's explicit ``noData: pass``
produces one. (``analysis.checks`` already turns non-finite and out-of-domain numbers into
Errors; this is the state machine's own guard against any other source.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from rollout.api.gate import Analysis
from rollout.api.status import AnalysisPhase, AnalysisStatus, CheckStatus, Measurement

# Worst first: the run takes the highest-ranked phase among its checks.
_RANK: dict[AnalysisPhase, int] = {
    "Failed": 6,
    "Error": 5,
    "Inconclusive": 4,
    "Running": 3,
    "Pending": 2,
    "Successful": 1,
}
TERMINAL: frozenset[AnalysisPhase] = frozenset({"Successful", "Failed", "Error", "Inconclusive"})
BLOCKING: frozenset[AnalysisPhase] = frozenset({"Failed", "Error", "Inconclusive"})
# A check (or run) in one of these phases is no longer measured; an Inconclusive one still is.
FINAL: frozenset[AnalysisPhase] = frozenset({"Successful", "Failed", "Error"})


def new_run(analysis: Analysis, now: datetime, count: int | None) -> AnalysisStatus:
    """A fresh run of every check, started ``now``."""
    checks = [CheckStatus(name=c.name, dry_run=c.dry_run) for c in analysis.checks]
    return AnalysisStatus(phase="Pending", started_at=now, count=count, checks=checks)


def rerun(run: AnalysisStatus, analysis: Analysis, now: datetime) -> AnalysisStatus:
    """A fresh run after the operator promoted past an Inconclusive ``run``.

    The counters start afresh, but each check keeps its latest measurement: a re-run gate
    holds the step (``latest_passed``) until a new measurement passes, rather than letting the
    canary move on before it has measured anything.
    """
    fresh = new_run(analysis, now, run.count)
    last = {c.name: c.measurements[-1:] for c in run.checks}
    checks = [c.model_copy(update={"measurements": last.get(c.name, [])}) for c in fresh.checks]
    return fresh.model_copy(update={"checks": checks})


def check_phase(check: CheckStatus, analysis: Analysis, count: int | None) -> AnalysisPhase:
    if check.failed > analysis.failure_limit:
        return "Failed"
    if check.consecutive_errors > analysis.consecutive_error_limit:
        return "Error"
    if check.inconclusive > analysis.inconclusive_limit:
        return "Inconclusive"
    measured = check.successful + check.failed + check.inconclusive
    if count is not None and measured >= count:
        # Tolerated inconclusive results are not a pass on their own: no data, no promotion.
        if not check.successful:
            return "Inconclusive"
        # A run is Successful only on a Successful latest measurement: a Failed or
        # Inconclusive one tolerated by its limit is measured again (the limits bound how
        # often), never the verdict that moves the canary on.
        latest = check.measurements[-1].phase if check.measurements else "Successful"
        return "Successful" if latest == "Successful" else "Running"
    return "Running" if measured or check.errors else "Pending"


def run_phase(checks: Iterable[CheckStatus]) -> AnalysisPhase:
    phases: list[AnalysisPhase] = []
    for check in checks:
        phase = check.phase
        if check.dry_run and phase in TERMINAL:
            phase = "Successful"  # a dry-run check is reported, never decides
        phases.append(phase)
    return max(phases, key=_RANK.__getitem__) if phases else "Successful"


def spell(value: float) -> str:
    """A value as Prometheus spells it: ``NaN``, ``+Inf``, ``-Inf``, else ``%g``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def _sane(measurement: Measurement) -> Measurement:
    """A non-finite value never reaches the status, and never passes."""
    value = measurement.value
    if value is None or math.isfinite(value):
        return measurement
    if measurement.phase == "Successful":
        detail = f" ({measurement.message})" if measurement.message else ""
        return measurement.model_copy(
            update={
                "phase": "Error",
                "value": None,
                "message": f"the value is {spell(value)}: a broken number is never a pass{detail}",
            }
        )
    return measurement.model_copy(update={"value": None})


def _record(check: CheckStatus, measurement: Measurement, keep: int) -> CheckStatus:
    phase = measurement.phase
    return check.model_copy(
        update={
            "successful": check.successful + (phase == "Successful"),
            "failed": check.failed + (phase == "Failed"),
            "inconclusive": check.inconclusive + (phase == "Inconclusive"),
            "errors": check.errors + (phase == "Error"),
            "consecutive_errors": check.consecutive_errors + 1 if phase == "Error" else 0,
            "measurements": [*check.measurements, measurement][-keep:],
        }
    )


def record(
    run: AnalysisStatus, analysis: Analysis, measurements: Iterable[tuple[str, Measurement]]
) -> AnalysisStatus:
    """Fold new ``(check name, measurement)`` pairs into ``run`` and re-derive every phase.

    Measurements older than the run, for unknown checks, or for checks already finished are
    ignored: they belong to another run or arrived late.
    """
    by_name = {c.name: c for c in run.checks}
    for name, measurement in measurements:
        check = by_name.get(name)
        if check is None or check.phase in FINAL:
            continue
        if run.started_at is not None and measurement.at < run.started_at:
            continue
        was = check.phase
        check = _record(check, _sane(measurement), analysis.measurements_kept)
        phase = check_phase(check, analysis, run.count)
        if was == "Inconclusive" and phase not in ("Failed", "Error"):
            phase = "Inconclusive"  # held until the operator starts a new run, or it fails
        by_name[name] = check.model_copy(update={"phase": phase})
    checks = [by_name[c.name] for c in run.checks]
    phase = run_phase(checks)
    return run.model_copy(update={"checks": checks, "phase": phase, "message": summary(checks)})


def summary(checks: Iterable[CheckStatus]) -> str:
    """``error-rate 3/5 passed, latency Failed`` style text for status messages."""
    parts = []
    for c in checks:
        parts.append(f"{c.name} {c.phase}" if c.phase in BLOCKING else f"{c.name} {c.successful}")
    return ", ".join(parts)


def why(run: AnalysisStatus) -> str:
    """The run's summary and, for each check that blocks it (Failed, Error, Inconclusive, not
    dry-run), its latest measurement's message: ``error-rate Error, latency 1 (error-rate: the
    query returned NaN ...)``, so an abort's Event names the bad value, not only the phase."""
    details = [
        f"{c.name}: {c.measurements[-1].message}"
        for c in run.checks
        if c.phase in BLOCKING and not c.dry_run and c.measurements
    ]
    return f"{run.message} ({'; '.join(details)})" if details else run.message


def slot_of(analysis: Analysis) -> int:
    """Seconds between aligned evaluation instants: the largest divisor of the interval that
    is at most the scrape interval (15 for 30s/15s, 10 for 20s/15s, 1 for 5s/1s).

    Prometheus's data changes once per scrape, so an instant aligned to it is at most one
    scrape older than ``now``. Dividing the interval keeps a check's measurements an interval
    apart: its next measurement falls due an interval after an aligned instant, which is
    aligned too, so it is never taken early.
    """
    interval = analysis.interval
    most = max(1, min(interval, analysis.prometheus.scrape_interval))
    return next(d for d in range(most, 0, -1) if interval % d == 0)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def aligned_up(when: datetime, slot: int) -> datetime:
    """The first whole multiple of ``slot`` seconds since the Unix epoch at or after ``when``."""
    elapsed = when - _EPOCH
    seconds = elapsed // _SECOND + (1 if elapsed % _SECOND else 0)
    return _EPOCH + timedelta(seconds=seconds + -seconds % slot)


def due_at(run: AnalysisStatus, check: CheckStatus, analysis: Analysis) -> datetime | None:
    """When ``check``'s next measurement falls due (None: the run has not started).

    An interval after its latest measurement; a run's first one, an interval after the run's
    start rounded up to the slot (``slot_of``). The controller evaluates a built-in check at
    ``now`` floored to the slot: due any earlier, the first measurement's window would end up
    to a slot short of a full interval of the canary's traffic (one scrape of a series that
    appeared at the run's start: no ``increase()``, "0 requests", Inconclusive), and a re-run's
    measurement overdue at its start would be evaluated before the run and dropped by
    ``record`` at every reconcile until the next slot.
    """
    started = run.started_at
    if not check.measurements:
        if started is None:
            return None
        return aligned_up(started + timedelta(seconds=analysis.interval), slot_of(analysis))
    due = check.measurements[-1].at + timedelta(seconds=analysis.interval)
    if started is not None:
        due = max(due, aligned_up(started, slot_of(analysis)))
    return due


def due_checks(run: AnalysisStatus, analysis: Analysis, now: datetime) -> list[str]:
    """Names of the checks whose next measurement is due at ``now`` (``due_at``).

    Inconclusive checks stay due every interval: a paused rollout's gate keeps judging.
    """
    if run.phase in FINAL:
        return []
    due = []
    for check in run.checks:
        when = due_at(run, check, analysis)
        if check.phase not in FINAL and when is not None and now >= when:
            due.append(check.name)
    return due


def next_due_at(run: AnalysisStatus, analysis: Analysis) -> datetime | None:
    """When the next measurement of this run falls due (None when the run is over)."""
    if run.phase in FINAL:
        return None
    times = [
        when
        for check in run.checks
        if check.phase not in FINAL and (when := due_at(run, check, analysis)) is not None
    ]
    return min(times, default=None)


def passed_once(run: AnalysisStatus) -> bool:
    """Every non-dry-run check has at least one successful measurement in this run."""
    return all(c.successful > 0 for c in run.checks if not c.dry_run)


def latest_passed(run: AnalysisStatus) -> bool:
    """Every non-dry-run check's latest measurement in this run is Successful, or it has none yet.

    The planner's rule for moving the canary on: a Failed measurement within ``failureLimit``,
    an Error within ``consecutiveErrorLimit`` or an Inconclusive one within
    ``inconclusiveLimit`` does not end the run, but it never lets a step advance either.
    """
    return all(
        c.measurements[-1].phase == "Successful"
        for c in run.checks
        if not c.dry_run and c.measurements
    )
