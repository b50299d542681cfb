"""The gate's measurement state machine: limits, counts, dry-run, missing data."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from analysis import measurement as gate
from rollout.api.gate import Analysis
from rollout.api.status import Measurement, MeasurementPhase
from tests.unit.world import T0


def analysis(**limits: int) -> Analysis:
    return Analysis.model_validate(
        {
            "interval": "30s",
            "prometheus": {"address": "http://prometheus:9090"},
            "checks": [
                {"name": "error-rate", "errorRate": {"max": 0.01}},
                {"name": "shadow", "latencyP99": {"maxMs": 1}, "dryRun": True},
            ],
            **limits,
        }
    )


def feed(spec: Analysis, phases: list[MeasurementPhase], count: int | None = 3) -> str:
    run = gate.new_run(spec, T0, count)
    for i, phase in enumerate(phases, start=1):
        at = T0 + timedelta(seconds=30 * i)
        value = 0.001 if phase in ("Successful", "Failed") else None
        m = Measurement(at=at, phase=phase, value=value)
        run = gate.record(run, spec, [("error-rate", m), ("shadow", m)])
    return run.phase


@pytest.mark.parametrize(
    ("limits", "phases", "expected"),
    [
        ({}, [], "Pending"),
        ({}, ["Successful"], "Running"),
        ({}, ["Successful"] * 3, "Successful"),
        ({}, ["Successful", "Failed"], "Failed"),
        ({"failureLimit": 1}, ["Failed", "Successful", "Successful"], "Successful"),
        ({"failureLimit": 1}, ["Failed", "Failed"], "Failed"),
        ({}, ["Inconclusive"], "Inconclusive"),
        ({"inconclusiveLimit": 1}, ["Inconclusive", "Successful", "Successful"], "Successful"),
        ({"consecutiveErrorLimit": 1}, ["Error", "Error"], "Error"),
        ({"consecutiveErrorLimit": 1}, ["Error", "Successful", "Error"], "Running"),
        # count reached, but the latest measurement is only tolerated: measured again
        ({"failureLimit": 1}, ["Successful", "Successful", "Failed"], "Running"),
        ({"failureLimit": 1}, ["Successful", "Successful", "Failed", "Successful"], "Successful"),
        ({"inconclusiveLimit": 2}, ["Successful", "Inconclusive", "Inconclusive"], "Running"),
        ({"failureLimit": 1}, ["Successful", "Failed", "Failed"], "Failed"),
    ],
)
def test_run_phase_follows_the_limits(
    limits: dict[str, int], phases: list[MeasurementPhase], expected: str
) -> None:
    assert feed(analysis(**limits), phases) == expected


def test_a_dry_run_check_is_reported_but_never_decides() -> None:
    spec = analysis()
    run = gate.new_run(spec, T0, 1)
    ok = Measurement(at=T0 + timedelta(seconds=30), phase="Successful", value=0.0)
    bad = Measurement(at=T0 + timedelta(seconds=30), phase="Failed", value=9.0)
    run = gate.record(run, spec, [("error-rate", ok), ("shadow", bad)])
    assert run.phase == "Successful"
    assert run.checks[1].phase == "Failed" and run.checks[1].dry_run


@pytest.mark.parametrize(
    ("value", "spelled"), [(math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")]
)
def test_a_pass_with_a_broken_number_is_an_error_naming_it(value: float, spelled: str) -> None:
    spec = analysis(consecutiveErrorLimit=1)
    run = gate.new_run(spec, T0, 3)
    for i in (1, 2):
        m = Measurement(at=T0 + timedelta(seconds=30 * i), phase="Successful", value=value)
        run = gate.record(run, spec, [("error-rate", m)])
        (check, _) = run.checks
        recorded = check.measurements[-1]
        assert recorded.phase == "Error" and recorded.value is None  # JSON has no NaN
        assert f"the value is {spelled}" in (recorded.message or "")
    assert check.successful == 0 and check.errors == 2
    assert check.phase == "Error" and run.phase == "Error"  # the limit ends it: rollback


def test_a_pass_without_a_value_is_kept_for_no_data_pass() -> None:
    spec = analysis()
    run = gate.new_run(spec, T0, 1)
    m = Measurement(at=T0 + timedelta(seconds=30), phase="Successful", value=None)
    run = gate.record(run, spec, [("error-rate", m)])
    assert run.checks[0].phase == "Successful"


@pytest.mark.parametrize("phase", ["Failed", "Inconclusive", "Error"])
def test_other_phases_keep_their_phase_but_drop_a_broken_value(phase: MeasurementPhase) -> None:
    spec = analysis()
    run = gate.new_run(spec, T0, 3)
    m = Measurement(at=T0 + timedelta(seconds=30), phase=phase, value=math.nan, message="m")
    run = gate.record(run, spec, [("error-rate", m)])
    recorded = run.checks[0].measurements[0]
    assert (recorded.phase, recorded.value, recorded.message) == (phase, None, "m")


def test_measurements_from_before_the_run_or_unknown_checks_are_ignored() -> None:
    spec = analysis()
    run = gate.new_run(spec, T0, 3)
    old = Measurement(at=T0 - timedelta(seconds=1), phase="Failed", value=1.0)
    run = gate.record(run, spec, [("error-rate", old), ("nope", old)])
    assert run.phase == "Pending" and run.checks[0].failed == 0


def test_due_checks_one_interval_after_the_start_and_after_each_measurement() -> None:
    spec = analysis()
    run = gate.new_run(spec, T0, 3)
    assert gate.due_checks(run, spec, T0 + timedelta(seconds=29)) == []
    assert gate.next_due_at(run, spec) == T0 + timedelta(seconds=30)
    later = T0 + timedelta(seconds=30)
    assert gate.due_checks(run, spec, later) == ["error-rate", "shadow"]
    m = Measurement(at=later, phase="Successful", value=0.0)
    run = gate.record(run, spec, [("error-rate", m)])
    assert gate.due_checks(run, spec, later) == ["shadow"]
    assert gate.next_due_at(run, spec) == later


def test_only_the_last_n_measurements_are_kept() -> None:
    spec = analysis(measurementsKept=2)
    run = gate.new_run(spec, T0, None)
    for i in range(5):
        m = Measurement(at=T0 + timedelta(seconds=i), phase="Successful", value=float(i))
        run = gate.record(run, spec, [("error-rate", m)])
    assert [m.value for m in run.checks[0].measurements] == [3.0, 4.0]
    assert run.checks[0].successful == 5


def test_an_inconclusive_check_is_still_measured_and_stays_inconclusive_until_it_fails() -> None:
    """A paused rollout's gate keeps judging: Inconclusive is not final, Failed and Error are."""
    spec = analysis(inconclusiveLimit=0, failureLimit=0)
    run = gate.new_run(spec, T0, None)

    def at(seconds: int, phase: MeasurementPhase) -> None:
        nonlocal run
        m = Measurement(at=T0 + timedelta(seconds=seconds), phase=phase, value=0.001)
        run = gate.record(run, spec, [("error-rate", m)])

    at(30, "Inconclusive")
    assert run.phase == "Inconclusive"
    assert gate.due_checks(run, spec, T0 + timedelta(seconds=60)) == ["error-rate", "shadow"]
    at(60, "Successful")
    assert run.phase == "Inconclusive"  # sticky: only the operator starts a new run
    at(90, "Failed")
    assert run.phase == "Failed"
    assert gate.due_checks(run, spec, T0 + timedelta(seconds=600)) == []
    assert gate.next_due_at(run, spec) is None


@pytest.mark.parametrize(
    ("phases", "passed"),
    [
        ([], True),
        (["Successful"], True),
        (["Successful", "Error"], False),
        (["Failed", "Successful"], True),
        (["Successful", "Inconclusive"], False),
        (["Successful", "Failed"], False),
    ],
)
def test_latest_passed_looks_at_the_latest_measurement_of_each_deciding_check(
    phases: list[MeasurementPhase], passed: bool
) -> None:
    spec = analysis(failureLimit=5, inconclusiveLimit=5)
    run = gate.new_run(spec, T0, None)
    for i, phase in enumerate(phases, start=1):
        m = Measurement(at=T0 + timedelta(seconds=30 * i), phase=phase, value=0.001)
        failing = Measurement(at=m.at, phase="Failed", value=1.0)
        run = gate.record(run, spec, [("error-rate", m), ("shadow", failing)])
    assert gate.latest_passed(run) is passed  # the dry-run shadow check never decides


def test_why_names_the_blocking_checks_latest_message() -> None:
    from rollout.api.status import AnalysisStatus, CheckStatus

    at = T0
    bad = Measurement(at=at, phase="Error", message="the query returned NaN")
    good = Measurement(at=at, phase="Successful", value=0.0, message="error rate 0")
    run = AnalysisStatus(
        phase="Error",
        message="ratio Error, latency 1",
        checks=[
            CheckStatus(name="ratio", phase="Error", errors=5, measurements=[bad]),
            CheckStatus(name="latency", phase="Running", successful=1, measurements=[good]),
        ],
    )
    assert gate.why(run) == "ratio Error, latency 1 (ratio: the query returned NaN)"


def test_a_first_measurement_falls_due_on_a_slot_boundary_a_full_interval_after_the_start() -> None:
    """The controller evaluates a built-in check at ``now`` floored to the slot (15 s for
    30s/15s): due at the start + interval exactly, its window would miss up to a slot of the
    canary's first traffic. Due at the next slot boundary, the instant is a full interval on."""
    spec = analysis()
    started = T0 + timedelta(seconds=14)  # a second before a slot boundary
    run = gate.new_run(spec, started, None)
    assert gate.next_due_at(run, spec) == T0 + timedelta(seconds=45)
    assert gate.due_checks(run, spec, started + timedelta(seconds=30)) == []
    assert gate.due_checks(run, spec, T0 + timedelta(seconds=45)) == ["error-rate", "shadow"]
    aligned = gate.new_run(spec, T0, None)  # already on a boundary: no later than before
    assert gate.next_due_at(aligned, spec) == T0 + timedelta(seconds=30)


def test_a_rerun_overdue_check_is_evaluated_after_the_rerun_starts_not_dropped() -> None:
    """A re-run keeps each check's latest measurement; when its next one was overdue at the
    operator's promote, the check must not fall due at an instant the controller would floor
    to before the re-run's start (dropped by ``record``, due again at once: a reconcile loop
    until the next slot)."""
    spec = analysis()
    slot = gate.slot_of(spec)
    run = gate.new_run(spec, T0 - timedelta(seconds=30), None)
    held = Measurement(at=T0, phase="Inconclusive", message="0 requests")
    run = gate.record(run, spec, [("error-rate", held), ("shadow", held)])
    assert run.phase == "Inconclusive"
    rerun_at = T0 + timedelta(seconds=40)  # the T0 + 30 s measurement was overdue
    run = gate.rerun(run, spec, rerun_at)
    now = gate.next_due_at(run, spec)
    assert now is not None and now >= rerun_at
    assert gate.due_checks(run, spec, now) == ["error-rate", "shadow"]
    floored = T0 + timedelta(seconds=(now - T0).total_seconds() // slot * slot)
    m = Measurement(at=floored, phase="Successful", value=0.001)
    after = gate.record(run, spec, [("error-rate", m), ("shadow", m)])
    assert gate.due_checks(after, spec, now) == []
    assert [c.measurements[-1].at for c in after.checks] == [floored, floored]
