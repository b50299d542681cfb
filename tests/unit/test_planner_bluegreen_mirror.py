"""Blue-green and mirror strategies, tick by tick."""

from __future__ import annotations

from typing import Any

from rollout.api.status import MeasurementPhase
from rollout.domain.plan import SetRoute
from tests.unit.world import World, example


def blue_green(**strategy: Any) -> World:
    doc = example("blue-green")
    doc["spec"]["strategy"] = {"blueGreen": strategy}
    world = World(doc)
    world.settle()
    return world


def weights(world: World) -> list[int]:
    return [a.route.canary_weight for p in world.plans for a in p.of_type(SetRoute)]


def test_preview_comes_up_at_zero_percent_then_auto_promotes() -> None:
    world = blue_green(previewReplicaCount=2, autoPromotionSeconds=60)
    old = world.revision
    world.set_image("v2")
    new = world.revision
    world.settle()
    assert world.replica_sets[new].replicas == 2
    assert world.route is not None and world.route.canary_weight == 0
    assert world.route.canary_revision == new
    assert world.status.phase == "Paused"
    assert world.status.pause_conditions[0].reason == "BlueGreenPause"
    world.run_for(59)
    assert world.status.stable_revision == old
    world.run_for(2)
    assert world.status.phase == "Healthy" and world.status.stable_revision == new
    assert world.replica_sets[new].replicas == 3  # full size before the switch
    assert weights(world)[-2:] == [100, 0]  # switch, then the new stable takes over
    assert world.replica_sets[old].scale_down_at is not None


def test_without_auto_promotion_the_switch_waits_for_promote() -> None:
    world = blue_green()
    world.set_image("v2")
    world.settle()
    world.run_for(3600)
    assert world.status.phase == "Paused"
    assert world.replica_sets[world.revision].replicas == 3  # preview defaults to replicas
    world.promote()
    world.settle()
    assert world.status.stable_revision == world.revision


def test_promote_full_switches_only_once_the_preview_is_full_size() -> None:
    world = blue_green(previewReplicaCount=1)  # 3 replicas
    world.set_image("v2")
    world.settle()
    new = world.revision
    assert world.replica_sets[new].replicas == 1 and world.status.phase == "Paused"
    before = len(world.plans)
    world.promote_full()
    world.settle()
    for observed, plan in zip(world.observations[before:], world.plans[before:], strict=True):
        for action in plan.of_type(SetRoute):
            if action.route.canary_weight > 0:  # the switch: never to a preview of one pod
                view = observed.replica_set(new)
                assert view is not None and view.available == 3, view
    assert weights(world)[-2:] == [100, 0]
    assert world.status.phase == "Healthy" and world.status.stable_revision == new


def test_pre_promotion_gate_must_pass_before_the_switch() -> None:
    world = blue_green(prePromotionAnalysis={"count": 2}, autoPromotionSeconds=0)
    world.set_image("v2")
    world.settle()
    assert world.status.analysis is not None and world.status.analysis.count == 2
    assert world.status.message.startswith("step 2/4: pre-promotion analysis")
    world.run_for(121)
    assert world.status.stable_revision == world.revision


def test_pre_promotion_failure_never_switches() -> None:
    world = blue_green(prePromotionAnalysis={"count": 2}, autoPromotionSeconds=0)
    world.set_image("v2")
    world.outcome = lambda check, revision: "Failed"
    world.settle()
    world.run_for(61)
    assert world.status.abort_reason == "AnalysisFailed"
    assert max(weights(world)) == 0


def test_post_promotion_failure_switches_back_to_the_old_version() -> None:
    world = blue_green(postPromotionAnalysis={"count": 3}, autoPromotionSeconds=0)
    old = world.revision
    world.set_image("v2")
    world.settle()
    assert world.route is not None and world.route.canary_weight == 100
    assert world.status.stable_revision == old  # not final until the post gate passes
    assert world.replica_sets[old].replicas == 3  # the old version stays up meanwhile
    results: list[MeasurementPhase] = ["Successful", "Failed"]
    world.outcome = lambda check, revision: results[0] if check == "latency" else "Successful"
    world.run_for(61)
    results.pop(0)
    world.run_for(60)
    assert world.status.phase == "Degraded" and world.status.abort_reason == "AnalysisFailed"
    assert world.route.canary_weight == 0 and world.route.stable_revision == old


def test_post_promotion_success_finalizes() -> None:
    world = blue_green(postPromotionAnalysis={"count": 2}, autoPromotionSeconds=0)
    world.set_image("v2")
    world.settle()
    world.run_for(121)
    assert world.status.phase == "Healthy" and world.status.stable_revision == world.revision


def mirror(percent: float = 100, duration: str = "5m") -> World:
    doc = example("mirror")
    doc["spec"]["strategy"] = {"mirror": {"percent": percent, "duration": duration}}
    world = World(doc)
    world.settle()
    return world


def test_mirror_shadows_traffic_for_the_duration_under_the_gate_then_switches() -> None:
    world = mirror(percent=50, duration="2m")
    interval = world.doc["spec"]["analysis"]["interval"]
    assert interval == "30s", "the example's interval sets the measurement count below"
    world.set_image("v2")
    new = world.revision
    world.settle()
    assert world.route is not None and world.route.mirror_percent == 50
    assert world.route.canary_weight == 0
    assert world.replica_sets[new].replicas >= 1
    assert world.status.analysis is not None and world.status.analysis.count == 4
    world.run_for(119)
    assert world.status.stable_revision != new
    world.run_for(2)
    assert world.status.phase == "Healthy" and world.status.stable_revision == new
    assert world.route.mirror_percent == 0


def test_mirror_gate_failure_rolls_back_without_ever_sending_live_traffic() -> None:
    world = mirror()
    world.set_image("v2")
    world.outcome = lambda check, revision: "Failed"
    world.settle()
    world.run_for(31)
    assert world.status.abort_reason == "AnalysisFailed"
    assert world.route is not None and world.route.mirror_percent == 0
    assert max(weights(world)) == 0
