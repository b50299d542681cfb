"""The gate keeps judging while the rollout waits (issue 12, section 2), tick by tick.

- an Inconclusive run pauses the rollout but goes on being measured: a later Failed
  measurement aborts it;
- an Inconclusive, Error or Failed latest measurement within its limit never pauses, and
  never lets the canary move on (neither a step nor the promotion);
- ``progressDeadlineSeconds`` bounds a step held by the gate or by an unavailable canary,
  never a user's pause or a pause step waiting for ``rollout promote``;
- a first revision that never becomes available is reported Degraded after the deadline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from rollout.api.status import MeasurementPhase
from rollout.domain.plan import SetRoute
from tests.unit.world import World, example

GATE: dict[str, Any] = {
    "interval": "10s",
    "prometheus": {"address": "http://prometheus:9090"},
    "checks": [{"name": "error-rate", "errorRate": {"max": 0.01}}],
}


def canary(steps: list[dict[str, Any]], deadline: int = 600, **gate: Any) -> World:
    """v1 deployed; steps and a background gate (``gate`` overrides its fields)."""
    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {"steps": steps}
    doc["spec"]["analysis"] = {**GATE, **gate}
    doc["spec"]["progressDeadlineSeconds"] = deadline
    world = World(doc)
    world.settle()
    return world


def script(*phases: MeasurementPhase, then: MeasurementPhase = "Successful") -> Any:
    """Outcomes in order, then ``then`` for ever."""
    queue = list(phases)

    def outcome(check: str, revision: str) -> MeasurementPhase:
        return queue.pop(0) if queue else then

    return outcome


def weights(world: World) -> list[int]:
    """Every canary weight the planner asked for, in order."""
    return [a.route.canary_weight for p in world.plans for a in p.of_type(SetRoute)]


def measured(world: World) -> int:
    run = world.status.analysis
    assert run is not None
    return sum(c.successful + c.failed + c.inconclusive + c.errors for c in run.checks)


def pauses(world: World) -> list[str]:
    return [p.reason for p in world.status.pause_conditions]


def start(world: World, outcome: Any) -> None:
    world.set_image("v2")
    world.outcome = outcome
    world.settle()


# -- an Inconclusive run pauses, and is still measured ----------------------------------------


def test_inconclusive_first_then_failing_canary_is_rolled_back() -> None:
    """The issue's example: first window empty, then 30% errors: today Paused at 20% for ever."""
    world = canary([{"setWeight": 20}, {"pause": {}}])
    start(world, script("Inconclusive", then="Failed"))
    assert world.route is not None and world.route.canary_weight == 20
    world.run_for(10)
    assert "InconclusiveAnalysis" in pauses(world)
    assert world.status.phase == "Paused"
    world.run_for(10)  # the next interval: still queried, Failed, rolled back
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.status.phase == "Degraded"
    assert world.route.canary_weight == 0
    assert world.status.analysis is not None
    assert [m.phase for m in world.status.analysis.checks[0].measurements] == [
        "Inconclusive",
        "Failed",
    ]


def test_a_paused_inconclusive_gate_is_measured_every_interval() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}])
    start(world, script(then="Inconclusive"))
    world.run_for(10)
    assert "InconclusiveAnalysis" in pauses(world) and measured(world) == 1
    world.run_for(45)
    assert measured(world) == 5  # one per 10 s interval while paused, not 1 and then silence
    assert world.plans[-1].requeue_after is not None and world.plans[-1].requeue_after <= 10


def test_inconclusive_then_errors_past_the_limit_roll_back_while_paused() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], consecutiveErrorLimit=1)
    start(world, script("Inconclusive", then="Error"))
    world.run_for(10)
    assert "InconclusiveAnalysis" in pauses(world)
    world.run_for(20)  # two Errors in a row: past consecutiveErrorLimit 1
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.route is not None and world.route.canary_weight == 0


def test_inconclusive_analysis_step_then_failing_is_rolled_back() -> None:
    world = canary([{"setWeight": 20}, {"analysis": {"count": 3}}, {"setWeight": 50}])
    start(world, script("Inconclusive", then="Failed"))
    world.run_for(10)
    assert "InconclusiveAnalysis" in pauses(world)
    world.run_for(10)
    assert world.status.abort_reason == "AnalysisFailed"
    assert 50 not in weights(world)


def test_inconclusive_under_a_user_pause_then_failing_is_rolled_back() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}])
    start(world, script("Inconclusive", then="Failed"))
    world.pause()
    world.run_for(10)
    assert {"PausedByUser", "InconclusiveAnalysis"} <= set(pauses(world))
    world.run_for(10)
    assert world.status.abort_reason == "AnalysisFailed"


def test_a_gate_inconclusive_again_after_promote_pauses_again() -> None:
    """`rollout promote` re-runs the gate; it does not skip it."""
    world = canary([{"setWeight": 20}, {"analysis": {"count": 2}}, {"setWeight": 50}])
    start(world, script(then="Inconclusive"))
    world.run_for(10)
    assert "InconclusiveAnalysis" in pauses(world)
    world.promote()
    world.run_for(9)
    assert pauses(world) == [] and world.status.current_step_index == 1
    assert "AnalysisRestarted" in world.reasons()
    world.run_for(2)
    assert "InconclusiveAnalysis" in pauses(world)
    assert 50 not in weights(world)


# -- a latest measurement that is not Successful holds the step -------------------------------


def test_inconclusive_within_the_limit_does_not_pause_and_does_not_advance() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "15s"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, inconclusiveLimit=3)
    start(world, script("Inconclusive", "Inconclusive", "Inconclusive"))
    world.run_for(35)  # the pause ended at 15 s; three Inconclusive measurements so far
    # Within inconclusiveLimit: no InconclusiveAnalysis pause (the ended pause step's
    # condition is dropped only when the step completes).
    assert "InconclusiveAnalysis" not in pauses(world)
    assert world.status.current_step_index == 1
    assert world.route is not None and world.route.canary_weight == 20
    world.run_for(10)  # the fourth is Successful: the step moves on
    assert world.route.canary_weight == 50
    assert world.status.current_step_index == 3


def test_error_measurements_never_let_the_canary_move_from_20_to_50() -> None:
    """A missing AnalysisTemplate: Errors below consecutiveErrorLimit stepped 20 -> 50."""
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "15s"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, deadline=120, consecutiveErrorLimit=100)
    start(world, script(then="Error"))
    world.run_for(129)  # the first Error at 10 s: held from then on
    assert world.status.current_step_index == 1
    assert max(weights(world)) == 20
    assert world.status.abort is False
    world.run_for(2)  # held by the gate past progressDeadlineSeconds
    assert world.status.abort_reason == "ProgressDeadlineExceeded"
    assert world.route is not None and world.route.canary_weight == 0
    assert max(weights(world)) == 20


def test_a_failed_measurement_within_the_failure_limit_holds_until_one_passes() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "15s"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, failureLimit=2)
    start(world, script("Failed", "Failed"))
    world.run_for(25)  # two Failed measurements (10 s, 20 s), within failureLimit
    assert world.status.abort is False
    assert world.route is not None and world.route.canary_weight == 20
    world.run_for(10)  # the third measurement passes
    assert world.route.canary_weight == 50


def test_each_step_with_a_background_run_is_held() -> None:
    """Header route, mirror and setWeight steps: none is applied while the gate holds."""
    match = [{"headers": {"end-user": {"exact": "jason"}}}]
    steps: list[dict[str, Any]] = [
        {"setWeight": 10},
        {"pause": {"duration": "15s"}},
        {"setHeaderRoute": {"name": "testers", "match": match}},
        {"setMirror": {"percent": 30}},
        {"setWeight": 40},
        {"pause": {}},
    ]
    world = canary(steps, consecutiveErrorLimit=100)
    start(world, script(then="Error"))
    world.run_for(300)
    assert world.status.current_step_index == 1
    assert world.route is not None
    assert (world.route.canary_weight, world.route.mirror_percent) == (10, 0)
    assert world.route.header_routes == ()


def test_promotion_waits_for_a_successful_latest_measurement() -> None:
    checks = [
        {"name": "error-rate", "errorRate": {"max": 0.01}},
        {"name": "latency", "latencyP99": {"maxMs": 500}},
    ]
    world = canary([{"setWeight": 20}], consecutiveErrorLimit=100, checks=checks)
    stable = world.status.stable_revision
    outcomes: dict[str, list[MeasurementPhase]] = {
        "error-rate": ["Successful", "Error"],
        "latency": ["Error", "Successful"],
    }

    def outcome(check: str, revision: str) -> MeasurementPhase:
        queue = outcomes[check]
        return queue.pop(0) if queue else "Successful"

    start(world, outcome)
    world.run_for(25)
    # Each check has passed once, but error-rate's latest measurement is an Error.
    assert world.status.stable_revision == stable
    assert 100 not in weights(world)
    world.run_for(10)  # both Successful
    assert world.status.stable_revision == world.revision
    assert world.status.phase == "Healthy"


def test_a_dry_run_check_never_holds() -> None:
    checks = [
        {"name": "error-rate", "errorRate": {"max": 0.01}},
        {"name": "shadow", "latencyP99": {"maxMs": 100}, "dryRun": True},
    ]
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "15s"}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, checks=checks)
    start(world, lambda check, revision: "Failed" if check == "shadow" else "Successful")
    world.run_for(15)
    assert world.route is not None and world.route.canary_weight == 50


# -- progressDeadlineSeconds bounds a held step -----------------------------------------------


def test_an_inconclusive_pause_ends_at_the_progress_deadline() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], deadline=60)
    start(world, script(then="Inconclusive"))
    world.run_for(10)  # the first measurement: paused, held from now
    assert "InconclusiveAnalysis" in pauses(world)
    world.run_for(59)
    assert world.status.abort is False
    world.run_for(2)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"
    assert world.route is not None and world.route.canary_weight == 0


def test_a_canary_that_crash_loops_mid_step_with_an_inconclusive_gate_hits_the_deadline() -> None:
    """The issue's example: the gate sat Paused 57 s past a 25 s deadline."""
    world = canary([{"setWeight": 20}, {"pause": {}}], deadline=25)
    start(world, script(then="Successful"))
    world.run_for(35)
    canary_rev = world.revision
    assert world.route is not None and world.route.canary_weight == 20
    world.broken.add(canary_rev)  # crash-loops: no pod available, no requests to measure
    view = world.replica_sets[canary_rev]
    world.replica_sets[canary_rev] = replace(view, available=0, ready=0)
    world.outcome = script(then="Inconclusive")
    died = world.now
    world.run_for(24)
    assert world.status.abort is False
    assert pauses(world) == ["CanaryPauseStep", "InconclusiveAnalysis"]
    assert world.route.canary_weight == 0
    world.run_for(2)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"
    assert (world.now - died).total_seconds() <= 26


def test_a_user_pause_does_not_time_out_and_the_deadline_restarts_on_resume() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], deadline=60, consecutiveErrorLimit=100)
    start(world, script(then="Error"))
    world.run_for(30)  # held by Errors for 20 s
    world.pause()
    world.run_for(600)
    assert world.status.abort is False and world.status.phase == "Paused"
    world.resume()
    world.run_for(59)
    assert world.status.abort is False
    world.run_for(2)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"


def test_a_pause_step_waiting_for_promote_does_not_time_out() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], deadline=30)
    start(world, script(then="Successful"))
    world.run_for(3600)
    assert world.status.abort is False
    assert pauses(world) == ["CanaryPauseStep"]
    world.promote()
    world.run_for(20)
    assert world.status.phase == "Healthy"


def test_waiting_for_the_next_measurement_does_not_count_against_the_deadline() -> None:
    """A gate that is only not yet due does not hold: a long interval, a short deadline."""
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {"count": 2}}]
    world = canary(steps, deadline=30, interval="60s")
    start(world, script(then="Successful"))
    world.run_for(200)
    assert world.status.phase == "Healthy", world.reasons()


# -- a first revision that never becomes available --------------------------------------------


def first_revision(deadline: int) -> World:
    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {"steps": [{"setWeight": 20}]}
    doc["spec"]["progressDeadlineSeconds"] = deadline
    world = World(doc)
    world.broken.add(world.revision)
    world.settle()
    return world


def progressing(world: World) -> tuple[str, str]:
    cond = world.status.condition("Progressing")
    assert cond is not None
    return cond.status, cond.reason


def deadline_events(world: World) -> Iterable[str]:
    return [e.message for e in world.events if e.reason == "ProgressDeadlineExceeded"]


def test_a_first_revision_never_available_is_degraded_after_the_deadline() -> None:
    world = first_revision(deadline=120)
    assert world.status.phase == "Progressing"
    world.run_for(119)
    assert world.status.phase == "Progressing"
    assert progressing(world) == ("True", "RolloutCompleted")
    world.run_for(2)
    assert world.status.phase == "Degraded"
    assert progressing(world) == ("False", "ProgressDeadlineExceeded")
    assert "not available" in world.status.message
    (message,) = deadline_events(world)
    assert "0/4 replicas available" in message
    assert [e.type for e in world.events if e.reason == "ProgressDeadlineExceeded"] == ["Warning"]
    world.run_for(600)
    assert len(list(deadline_events(world))) == 1  # said once
    assert world.status.abort is False  # nothing to roll back to
    # The pods come up: Healthy.
    world.broken.clear()
    world.replica_sets.pop(world.revision)
    world.settle()
    assert world.status.phase == "Healthy"
    assert progressing(world) == ("True", "RolloutCompleted")


def test_a_first_revision_available_in_time_is_healthy() -> None:
    world = first_revision(deadline=120)
    world.run_for(60)
    world.broken.clear()
    world.replica_sets.pop(world.revision)
    world.run_for(600)
    assert world.status.phase == "Healthy"
    assert list(deadline_events(world)) == []


# -- a counted run whose latest measurement is tolerated but not Successful ------------------


def test_a_counted_run_ending_on_a_tolerated_failure_does_not_advance_the_step() -> None:
    """count 2, failureLimit 1: Successful then Failed (30% errors) used to complete the run
    as Successful and move the failing canary from 20% to 50%."""
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"count": 2}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, failureLimit=1)
    start(world, script("Successful", then="Failed"))
    world.run_for(60)
    assert 50 not in weights(world)
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.route is not None and world.route.canary_weight == 0


def test_a_counted_run_ending_on_a_tolerated_inconclusive_does_not_advance_the_step() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"count": 2}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, inconclusiveLimit=3)
    start(world, script("Successful", then="Inconclusive"))
    world.run_for(60)
    assert 50 not in weights(world)


def test_a_counted_run_moves_on_once_a_later_measurement_passes() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"analysis": {"count": 2}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    world = canary(steps, failureLimit=1)
    start(world, script("Successful", "Failed"))
    world.run_for(60)
    assert 50 in weights(world)
    run = world.status.analysis
    assert run is not None


# -- `rollout promote` on an Inconclusive pause re-runs the gate before the canary moves -------


def test_promote_on_an_inconclusive_pause_holds_the_step_until_the_rerun_measures() -> None:
    """Before: promote cleared both pauses, the gate restarted empty ("not yet due") and the
    failing canary moved 20 -> 50 at once, to be rolled back only a measurement later."""
    world = canary([{"setWeight": 20}, {"pause": {"duration": 30}}, {"setWeight": 50}])
    start(world, script("Inconclusive", then="Failed"))
    world.run_for(12)
    assert "InconclusiveAnalysis" in pauses(world)
    world.promote()
    world.run_for(20)
    assert "AnalysisRestarted" in world.reasons()
    assert 50 not in weights(world)
    assert world.status.abort_reason == "AnalysisFailed"


def test_promote_on_an_inconclusive_pause_moves_on_once_the_rerun_passes() -> None:
    world = canary(
        [{"setWeight": 20}, {"pause": {"duration": 30}}, {"setWeight": 50}, {"pause": {}}]
    )
    start(world, script("Inconclusive"))
    world.run_for(12)
    world.promote()
    world.run_for(20)
    assert 50 in weights(world)
