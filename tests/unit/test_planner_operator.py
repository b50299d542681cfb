"""Operator actions as the CLI applies them to the status: abort, retry, promote, pause."""

from __future__ import annotations

from typing import Any

from rollout.domain.plan import SetRoute
from tests.unit.test_planner_canary import canary, inconclusive


def test_operator_abort_sends_traffic_back_and_scales_canary_down_after_the_delay() -> None:
    world = canary([{"setWeight": 40}, {"pause": {}}], abortScaleDownDelaySeconds=60)
    stable = world.revision
    world.set_image("v2")
    new = world.revision
    world.settle()
    world.abort()
    world.settle()
    assert world.status.phase == "Degraded"
    assert world.status.abort_reason == "RolloutAborted"
    assert world.status.aborted_at == world.now
    assert world.status.pause_conditions == []
    assert world.route is not None and world.route.canary_weight == 0
    assert world.route.stable_revision == stable
    assert world.replica_sets[new].replicas == 2
    world.run_for(59)
    assert world.replica_sets[new].replicas == 2
    world.run_for(2)
    assert world.replica_sets[new].replicas == 0
    aborted = world.status.condition("Progressing")
    assert aborted is not None and aborted.status == "False" and aborted.reason == "RolloutAborted"


def test_retry_starts_again_from_the_first_step() -> None:
    world = canary([{"setWeight": 40}, {"pause": {}}, {"setWeight": 80}], analysis=False)
    world.set_image("v2")
    world.settle()
    world.promote()
    world.tick()
    world.abort()
    world.run_for(120)
    world.retry()
    world.settle()
    assert world.status.abort is False and world.status.aborted_at is None
    assert world.status.current_step_index == 1
    assert world.route is not None and world.route.canary_weight == 40
    assert world.status.phase == "Paused"
    assert "RolloutRetried" in world.reasons()


def test_promote_full_skips_remaining_steps_and_gates() -> None:
    world = canary([{"setWeight": 10}, {"analysis": {"count": 50}}, {"pause": {}}])
    world.set_image("v2")
    world.settle()
    world.promote_full()
    world.settle()
    assert world.status.phase == "Healthy"
    assert world.status.stable_revision == world.revision
    assert world.status.promote_full is False
    assert "PromotedFull" in world.reasons()


def test_promote_full_holds_the_traffic_until_the_canary_is_full_size() -> None:
    steps: list[dict[str, Any]] = [
        {"setWeight": 10},
        {"pause": {}},
        {"setWeight": 80},
        {"pause": {}},
    ]
    world = canary(steps, analysis=False)  # 4 replicas
    world.set_image("v2")
    world.settle()
    assert world.replica_sets[world.revision].replicas == 1
    before = len(world.plans)
    world.promote_full()
    world.settle()
    sent = [
        (action.route.canary_weight, observed.replica_set(world.revision))
        for observed, plan in zip(world.observations[before:], world.plans[before:], strict=True)
        for action in plan.of_type(SetRoute)
    ]
    # Not the skipped 80% to a canary of one pod: 100% once all 4 are available, then stable.
    assert [weight for weight, _ in sent] == [100, 0]
    assert sent[0][1] is not None and sent[0][1].available == 4
    assert world.status.phase == "Healthy" and world.status.stable_revision == world.revision


def test_promote_full_overrides_an_inconclusive_gate_only_through_a_fresh_state() -> None:
    world = canary([{"setWeight": 10}, {"analysis": {"count": 2}}])
    world.set_image("v2")
    world.outcome = inconclusive
    world.settle()
    world.run_for(31)
    assert world.status.phase == "Paused"
    world.promote_full()
    plan = world.tick()
    # The promotion itself happens on a later tick, never in the one that saw Inconclusive.
    assert plan.status.stable_revision != world.revision
    assert plan.status.analysis is None
    world.settle()
    assert world.status.stable_revision == world.revision


def test_promote_does_not_skip_a_running_analysis_step() -> None:
    world = canary([{"setWeight": 10}, {"analysis": {"count": 3}}, {"pause": {}}])
    world.set_image("v2")
    world.settle()
    world.promote()
    world.settle()
    assert world.status.current_step_index == 1


def test_pause_holds_progress_and_resume_continues() -> None:
    world = canary([{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}])
    world.set_image("v2")
    world.settle()
    world.pause()
    world.run_for(300)
    assert world.status.phase == "Paused"
    assert world.status.current_step_index == 1
    assert world.route is not None and world.route.canary_weight == 10
    world.resume()
    world.run_for(31)
    assert world.status.stable_revision == world.revision


def test_a_pause_request_becomes_the_users_pause_and_the_flag_goes() -> None:
    """status.pausedByUser (the Argo CD pause action, which grows no array) holds the rollout
    as `rollout pause` does: the controller adds the PausedByUser condition and drops the flag;
    resume (the condition removed) lets it continue."""
    world = canary([{"setWeight": 10}, {"pause": {"duration": "1m"}}, {"setWeight": 50}])
    world.set_image("v2")
    world.settle()
    world.status = world.status.model_copy(update={"paused_by_user": True})
    world.tick()
    assert world.status.paused_by_user is None
    [user] = [p for p in world.status.pause_conditions if p.reason == "PausedByUser"]
    assert user.start_time >= world.now
    assert "pausedByUser" not in world.status.wire()
    world.run_for(300)
    assert world.status.phase == "Paused"
    assert world.status.current_step_index == 1
    assert world.route is not None and world.route.canary_weight == 10
    world.resume()
    world.run_for(31)
    assert world.status.stable_revision == world.revision


def test_a_pause_request_on_a_healthy_rollout_pauses_it() -> None:
    world = canary([{"setWeight": 10}], analysis=False)
    world.status = world.status.model_copy(update={"paused_by_user": True})
    world.settle()
    assert world.status.phase == "Paused" and world.status.paused_by_user is None
    assert [p.reason for p in world.status.pause_conditions] == ["PausedByUser"]


def test_a_failing_gate_aborts_even_while_paused_by_the_operator() -> None:
    world = canary([{"setWeight": 10}, {"pause": {}}])
    world.set_image("v2")
    world.settle()
    world.pause()
    world.outcome = lambda check, revision: "Failed"
    world.run_for(31)
    assert world.status.abort_reason == "AnalysisFailed"


def test_abort_on_a_healthy_rollout_is_cleared_and_says_so() -> None:
    world = canary([{"setWeight": 10}], analysis=False)
    world.abort()
    world.settle()
    assert world.status.abort is False and world.status.phase == "Healthy"
    assert "NothingToDo" in world.reasons()


def test_a_new_revision_after_an_abort_starts_a_fresh_rollout() -> None:
    world = canary([{"setWeight": 30}, {"pause": {}}], analysis=False)
    world.set_image("v2")
    world.settle()
    world.abort()
    world.settle()
    world.set_image("v3")
    world.settle()
    assert world.status.abort is False and world.status.phase == "Paused"
    assert world.route is not None and world.route.canary_weight == 30
    assert world.route.canary_revision == world.revision
