"""Canary behaviour of the planner, tick by tick, asserting routes, replicas and status."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from rollout.api.status import MeasurementPhase, RolloutStatus
from rollout.domain.observed import RouteState
from rollout.domain.plan import EmitEvent, MarkScaleDown, ScaleReplicaSet, SetRoute
from tests.unit.world import World, example

SIMPLE_GATE = {
    "interval": "30s",
    "prometheus": {"address": "http://prometheus:9090"},
    "checks": [{"name": "error-rate", "errorRate": {"max": 0.01}}],
}


def canary(steps: list[dict[str, Any]], analysis: bool = True, **extra: Any) -> World:
    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {"steps": steps, **extra}
    if analysis:
        doc["spec"]["analysis"] = dict(SIMPLE_GATE)
    else:
        del doc["spec"]["analysis"]
    world = World(doc)
    world.settle()
    return world


def failing(check: str, revision: str) -> MeasurementPhase:
    return "Failed"


def inconclusive(check: str, revision: str) -> MeasurementPhase:
    return "Inconclusive"


def test_first_revision_is_deployed_as_stable_without_steps() -> None:
    world = canary([{"setWeight": 50}, {"pause": {}}])
    rev = world.revision
    assert world.status.phase == "Healthy"
    assert world.status.stable_revision == rev == world.status.canary_revision
    assert world.replica_sets[rev].replicas == 4
    assert world.route is not None
    assert (world.route.stable_revision, world.route.canary_weight) == (rev, 0)
    assert world.status.weights is not None and world.status.weights.stable == 100
    assert "Deployed" in world.reasons()


def test_set_weight_waits_for_an_available_canary_before_moving_traffic() -> None:
    world = canary([{"setWeight": 25}, {"pause": {}}], analysis=False)
    stable = world.revision
    world.set_image("v2")
    canary_rev = world.revision
    world.broken.add(canary_rev)
    first = world.tick()
    assert ScaleReplicaSet(canary_rev, 1) in first.of_type(ScaleReplicaSet)
    world.settle()
    assert world.route is not None and world.route.canary_weight == 0
    assert world.route.canary_revision == canary_rev and world.route.stable_revision == stable
    assert world.status.phase == "Progressing"
    world.broken.clear()
    world.replica_sets.pop(canary_rev)  # the pods come up: next scale makes them available
    world.settle()
    assert world.route.canary_weight == 25
    assert world.replica_sets[canary_rev].replicas == 1  # ceil(4 x 25%)
    assert world.replica_sets[stable].replicas == 4  # stable keeps its replicas
    assert world.status.phase == "Paused"


def test_full_canary_walk_promotes_and_retires_the_old_stable() -> None:
    world = canary([{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}])
    old = world.revision
    world.set_image("v2")
    new = world.revision
    world.settle()
    assert world.route is not None and world.route.canary_weight == 10
    assert world.status.current_step_index == 1 and world.status.phase == "Paused"
    world.run_for(59)
    assert world.status.current_step_index == 1
    world.run_for(2)
    # The background gate passed during the pause (two measurements): 50%, then promotion.
    weights = [a.route.canary_weight for p in world.plans for a in p.of_type(SetRoute)]
    assert weights[-4:] == [10, 50, 100, 0]
    assert world.status.analysis is not None and world.status.analysis.checks[0].successful >= 1
    assert world.status.phase == "Healthy"
    assert world.status.stable_revision == new
    assert world.route.stable_revision == new and world.route.canary_weight == 0
    assert world.replica_sets[new].replicas == 4
    assert world.replica_sets[old].scale_down_at is not None
    world.run_for(31)
    assert world.replica_sets[old].replicas == 0
    assert world.status.current_step_index == 3
    assert world.reasons()[-1] == "Promoted" or "Promoted" in world.reasons()


def test_promotion_sends_100_percent_to_the_canary_before_it_becomes_stable() -> None:
    world = canary([{"setWeight": 50}], analysis=False)
    stable = world.revision
    world.set_image("v2")
    new = world.revision
    world.settle()
    routes = [a.route for p in world.plans for a in p.of_type(SetRoute)]
    full = [r for r in routes if r.canary_weight == 100]
    assert full and full[0].stable_revision == stable and full[0].canary_revision == new
    assert routes[-1].stable_revision == new and routes[-1].canary_weight == 0


def test_indefinite_pause_waits_for_promote() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}], analysis=False)
    world.set_image("v2")
    world.settle()
    world.run_for(3600)
    assert world.status.phase == "Paused" and world.status.current_step_index == 1
    assert world.status.pause_conditions[0].reason == "CanaryPauseStep"
    world.promote()
    world.settle()
    assert world.status.phase == "Healthy"
    assert world.status.stable_revision == world.revision


def test_analysis_step_runs_count_measurements_then_moves_on() -> None:
    world = canary([{"setWeight": 20}, {"analysis": {"count": 3}}, {"pause": {}}])
    world.set_image("v2")
    world.settle()
    assert world.status.current_step_index == 1
    assert world.status.analysis is not None and world.status.analysis.count == 3
    world.run_for(89)
    assert world.status.current_step_index == 1
    world.run_for(2)
    assert world.status.current_step_index == 2
    check = world.status.analysis.checks[0] if world.status.analysis else None
    assert check is not None


def test_failed_gate_aborts_traffic_back_to_stable_and_scales_canary_down_later() -> None:
    world = canary([{"setWeight": 30}, {"analysis": {"count": 3}}, {"setWeight": 60}])
    stable = world.revision
    world.set_image("v2")
    new = world.revision
    world.settle()
    world.outcome = failing
    world.run_for(31)
    assert world.status.phase == "Degraded"
    assert world.status.abort is True and world.status.abort_reason == "AnalysisFailed"
    assert world.route is not None and world.route.canary_weight == 0
    assert world.status.stable_revision == stable
    assert world.status.analysis is not None and world.status.analysis.phase == "Failed"
    assert world.status.analysis.checks[0].measurements[-1].phase == "Failed"
    assert world.replica_sets[new].replicas == 2  # abortScaleDownDelaySeconds: 30 by default
    world.run_for(31)
    assert world.replica_sets[new].replicas == 0
    assert world.status.phase == "Degraded"


def test_failure_limit_tolerates_failed_measurements() -> None:
    world = canary([{"setWeight": 30}, {"analysis": {"count": 3}}, {"pause": {}}])
    world.doc["spec"]["analysis"]["failureLimit"] = 1
    world.set_image("v2")
    world.settle()
    results: list[MeasurementPhase] = ["Failed", "Successful", "Successful"]

    def one_failure(check: str, revision: str) -> MeasurementPhase:
        return results.pop(0) if results else "Successful"

    world.outcome = one_failure
    world.run_for(95)
    assert world.status.abort is False
    assert world.status.current_step_index == 2


def test_background_gate_failure_aborts_during_a_pause() -> None:
    world = canary([{"setWeight": 10}, {"pause": {"duration": "10m"}}])
    world.set_image("v2")
    world.settle()
    world.run_for(65)
    assert world.status.analysis is not None and world.status.analysis.count is None
    assert world.status.analysis.checks[0].successful == 2
    world.outcome = failing
    world.run_for(30)
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.route is not None and world.route.canary_weight == 0


def test_no_background_gate_when_disabled() -> None:
    world = canary([{"setWeight": 10}, {"pause": {"duration": "1m"}}], backgroundAnalysis=False)
    world.set_image("v2")
    world.settle()
    world.run_for(61)
    assert world.status.analysis is None
    assert world.status.phase == "Healthy"


def test_inconclusive_gate_pauses_and_promote_measures_again() -> None:
    world = canary([{"setWeight": 10}, {"analysis": {"count": 2}}, {"setWeight": 50}])
    world.set_image("v2")
    world.settle()
    world.outcome = inconclusive
    world.run_for(31)
    assert world.status.phase == "Paused"
    assert [p.reason for p in world.status.pause_conditions] == ["InconclusiveAnalysis"]
    world.run_for(300)  # within progressDeadlineSeconds (600 s)
    assert world.status.current_step_index == 1  # held: never promote on missing data
    assert world.route is not None and world.route.canary_weight == 10
    assert world.status.analysis is not None
    assert world.status.analysis.checks[0].inconclusive == 11  # measured all along, paused
    world.outcome = lambda check, revision: "Successful"
    world.promote()
    world.settle()
    assert world.status.analysis is not None and world.status.analysis.phase == "Pending"
    assert world.status.current_step_index == 1
    world.run_for(61)
    assert world.status.current_step_index >= 2


def test_no_traffic_never_promotes_through_the_background_gate() -> None:
    world = canary([{"setWeight": 10}])
    world.set_image("v2")
    world.outcome = inconclusive
    world.settle()
    world.run_for(3600)
    assert {p.status.stable_revision for p in world.plans[1:]} == {world.status.stable_revision}
    assert world.status.stable_revision != world.revision
    # Held by an Inconclusive gate past progressDeadlineSeconds (600 s): rolled back.
    assert world.status.phase == "Degraded"
    assert world.status.abort_reason == "ProgressDeadlineExceeded"


def test_header_route_and_mirror_are_applied_and_removed_on_promotion() -> None:
    steps: list[dict[str, Any]] = [
        {
            "setHeaderRoute": {
                "name": "testers",
                "match": [{"headers": {"end-user": {"exact": "j"}}}],
            }
        },
        {"setMirror": {"percent": 40}},
        {"pause": {}},
    ]
    world = canary(steps, analysis=False)
    world.set_image("v2")
    world.settle()
    assert world.route is not None
    assert [r.name for r in world.route.header_routes] == ["testers"]
    assert world.route.mirror_percent == 40 and world.route.canary_weight == 0
    assert world.replica_sets[world.revision].replicas == 2  # ceil(4 x 40%) for the mirror
    world.promote()
    world.settle()
    assert world.route.header_routes == () and world.route.mirror_percent == 0
    assert world.status.phase == "Healthy"


def test_new_revision_mid_rollout_restarts_from_step_zero_against_stable() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}], analysis=False)
    stable = world.revision
    world.set_image("v2")
    first_canary = world.revision
    world.settle()
    world.promote()
    world.tick()
    world.set_image("v3")
    world.settle()
    assert world.status.canary_revision == world.revision != first_canary
    assert world.status.stable_revision == stable
    assert world.status.current_step_index == 1
    assert world.route is not None and world.route.canary_revision == world.revision
    assert world.route.canary_weight == 20
    assert world.replica_sets[first_canary].scale_down_at is not None
    assert "RolloutRestarted" in world.reasons()


def test_template_reverted_to_stable_is_a_fast_rollback() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}])
    stable = world.revision
    world.set_image("v2")
    bad = world.revision
    world.settle()
    world.set_image("example.com/shop/reviews:2.1.0")  # back to the stable template
    assert world.revision == stable
    plan = world.tick()
    assert world.route is not None and world.route.canary_weight == 0
    assert world.route.canary_revision == stable
    assert world.status.phase == "Healthy" and world.status.canary_revision == stable
    assert "FastRollback" in world.reasons()
    assert MarkScaleDown(bad, world.now + timedelta(seconds=30)) in plan.of_type(MarkScaleDown)
    world.run_for(31)
    assert world.replica_sets[bad].replicas == 0


def test_progress_deadline_aborts_a_canary_that_never_becomes_available() -> None:
    world = canary([{"setWeight": 20}, {"pause": {}}], analysis=False)
    world.doc["spec"]["progressDeadlineSeconds"] = 120
    world.set_image("v2")
    world.broken.add(world.revision)
    world.settle()
    world.run_for(119)
    assert world.status.abort is False
    world.run_for(2)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"
    assert world.status.phase == "Degraded"
    assert all(a.route.canary_weight == 0 for p in world.plans for a in p.of_type(SetRoute)), (
        "the broken canary never received traffic"
    )


def test_old_revisions_are_pruned_to_the_history_limit() -> None:
    world = canary([], analysis=False, scaleDownDelaySeconds=0)
    world.doc["spec"]["revisionHistoryLimit"] = 1
    revisions = [world.revision]
    for tag in ("v2", "v3", "v4"):
        world.set_image(tag)
        world.run_for(5)
        revisions.append(world.revision)
    world.run_for(5)
    assert set(world.replica_sets) == {revisions[-1], revisions[-2]}
    assert world.replica_sets[revisions[-2]].replicas == 0


def test_invalid_spec_changes_nothing_and_says_why() -> None:
    world = canary([{"setWeight": 20}], analysis=False)
    route = world.route
    world.doc["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    world.generation += 1
    plan = world.tick()
    assert [type(a).__name__ for a in plan.actions] == ["EmitEvent"]
    assert world.status.phase == "Degraded"
    invalid = world.status.condition("InvalidSpec")
    assert invalid is not None and invalid.status == "True"
    assert "spec.strategy.canary.steps[0].setWeight" in invalid.message
    assert world.route == route
    assert world.tick().actions == ()  # said once, not on every reconcile


def test_unreadable_traffic_routing_changes_nothing() -> None:
    world = canary([{"setWeight": 20}], analysis=False)
    world.set_image("v2")
    world.route_error = "VirtualService shop/reviews not found"
    plan = world.tick()
    assert all(type(a).__name__ == "EmitEvent" for a in plan.actions)
    assert world.status.phase == "Degraded"
    assert "not found" in world.status.message


def test_routing_that_no_longer_fits_drains_the_canary_once() -> None:
    """Someone else's edit makes the routing refuse the steps mid-rollout (their own mirror on
    the managed route, a conflicting header match): no gate measures the canary and no abort
    could move its traffic any more, so the planner drains it to stable, as an abort does."""
    world = canary([{"setWeight": 20}, {"pause": {}}], analysis=False)
    stable = world.revision
    world.set_image("v2")
    world.settle()
    assert world.route is not None and world.route.canary_weight == 20
    world.route = replace(world.route, problem="route primary has a mirror of its own")
    world.route_error = "route primary has a mirror of its own"
    plan = world.tick()
    assert plan.of_type(SetRoute) == [SetRoute(RouteState(stable, stable))]
    assert world.status.phase == "Degraded"
    assert "mirror of its own" in world.status.message
    assert [e.reason for e in plan.of_type(EmitEvent)] == ["InvalidSpec", "TrafficDrained"]
    again = world.tick()
    assert again.actions == ()
    assert world.status.weights is not None and world.status.weights.canary == 0


def test_plan_is_a_function_of_its_inputs() -> None:
    world = canary([{"setWeight": 20}, {"analysis": {"count": 2}}])
    world.set_image("v2")
    world.settle()
    observed = world.observe()
    from rollout.domain.planner import plan

    assert plan(observed, world.now) == plan(observed, world.now)


def test_a_canary_that_dies_mid_pause_loses_its_traffic_and_gets_a_full_deadline() -> None:
    world = canary([{"setWeight": 50}, {"pause": {"duration": "1h"}}], analysis=False)
    world.doc["spec"]["progressDeadlineSeconds"] = 120
    world.set_image("v2")
    new = world.revision
    world.settle()
    world.run_for(1800)
    assert world.route is not None and world.route.canary_weight == 50
    world.broken.add(new)
    world.replica_sets[new] = replace(world.replica_sets[new], available=0, ready=0)
    world.tick()
    assert world.route.canary_weight == 0
    assert world.status.abort is False  # the deadline runs from now, not from the step start
    world.run_for(119)
    assert world.status.abort is False
    world.run_for(2)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"


def test_a_timed_pause_lasts_its_duration_though_the_status_keeps_whole_seconds() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": 1}},
        {"setWeight": 60},
        {"pause": {}},
    ]
    world = canary(steps, analysis=False)
    world.advance(0.9)  # mid-second, as a real clock is
    world.set_image("v2")
    world.settle()
    assert world.route is not None and world.route.canary_weight == 20

    def stored() -> None:  # the status as the API keeps it: times to the second
        wire = world.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        world.status = RolloutStatus.model_validate(wire)

    stored()
    world.advance(0.99)
    world.settle()
    assert world.route.canary_weight == 20  # 0.99 s into a 1 s pause
    stored()
    world.advance(0.2)
    world.settle()
    assert world.route.canary_weight == 60


def test_gate_errors_past_the_consecutive_limit_roll_back() -> None:
    """Prometheus unreachable: Error measurements are tolerated up to the limit, then abort."""
    world = canary([{"setWeight": 30}, {"pause": {}}])
    world.doc["spec"]["analysis"]["consecutiveErrorLimit"] = 2
    world.set_image("v2")
    world.settle()
    world.outcome = lambda check, revision: "Error"
    world.run_for(61)  # two Error measurements: within the limit
    assert world.status.abort is False
    world.run_for(30)  # the third in a row
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.status.analysis is not None and world.status.analysis.phase == "Error"
    assert world.route is not None and world.route.canary_weight == 0
