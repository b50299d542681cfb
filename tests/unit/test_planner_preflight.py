"""Preflight: no canary gets its first traffic until every check of its gate resolves and its
query is accepted (issue 12, section 3). Invalid input holds it with InvalidSpec; an
unreachable Prometheus holds it until the progress deadline."""

from __future__ import annotations

from typing import Any

from rollout.domain.observed import PREFLIGHT_OK, Preflight
from rollout.domain.plan import EmitEvent, SetRoute
from tests.unit.world import World, example

GATE = {
    "interval": "30s",
    "prometheus": {"address": "http://prometheus:9090"},
    "checks": [{"name": "error-rate", "errorRate": {"max": 0.01}}],
}
MISSING = Preflight(
    "invalid",
    "spec.analysis.checks[0].templateRef: check 'success': "
    "AnalysisTemplate shop/success-rate not found",
)
UNREACHABLE = Preflight(
    "unreachable", "waiting for Prometheus at http://prometheus:9090: refused", 5.0
)


def started(doc: dict[str, Any], preflight: Preflight) -> World:
    """v1 deployed, then v2 with the gate's preflight reporting ``preflight``."""
    doc["spec"]["analysis"] = dict(GATE)
    world = World(doc)
    world.settle()
    world.preflight = preflight
    world.set_image("v2")
    world.settle()
    return world


def canary(preflight: Preflight, steps: list[dict[str, Any]] | None = None, **spec: Any) -> World:
    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {"steps": steps or [{"setWeight": 20}, {"pause": {}}]}
    doc["spec"].update(spec)
    return started(doc, preflight)


def canary_traffic(world: World) -> list[tuple[int, float, int]]:
    """Every route asked for: (weight, mirror, header routes) to the canary."""
    return [
        (a.route.canary_weight, a.route.mirror_percent, len(a.route.header_routes))
        for p in world.plans
        for a in p.of_type(SetRoute)
        if a.route.canary_revision != a.route.stable_revision
    ]


def no_canary_traffic(world: World) -> None:
    assert all(t == (0, 0, 0) for t in canary_traffic(world)), canary_traffic(world)
    assert world.route is not None and not world.route.sends_canary_traffic


def invalid_spec(world: World) -> tuple[str, str]:
    cond = world.status.condition("InvalidSpec")
    assert cond is not None
    return cond.status, cond.message


def test_invalid_gate_holds_the_canary_at_no_traffic_with_invalid_spec_and_one_event() -> None:
    world = canary(MISSING)
    old, new = world.status.stable_revision, world.revision
    assert old is not None
    world.run_for(600)
    no_canary_traffic(world)
    assert world.status.phase == "Degraded"
    assert invalid_spec(world) == ("True", MISSING.message)
    assert world.status.message == f"InvalidSpec: {MISSING.message}"
    progressing = world.status.condition("Progressing")
    assert progressing is not None and progressing.status == "False"
    warnings = [e for e in world.events if e.type == "Warning"]
    assert [(e.reason, e.message) for e in warnings] == [("InvalidSpec", MISSING.message)]
    # Replicas are not traffic: the canary is scaled for its step meanwhile.
    assert world.replica_sets[new].replicas == 1 and world.replica_sets[old].replicas == 4
    assert world.status.stable_revision == old and world.status.current_step_index == 0
    # No retry loop: nothing to do until something changes (a watch event).
    assert world.settle().requeue_after is None
    assert world.status.abort is False


def test_once_fixed_the_canary_proceeds() -> None:
    world = canary(MISSING)
    world.run_for(60)
    world.preflight = PREFLIGHT_OK
    world.settle()
    assert world.route is not None and world.route.canary_weight == 20
    assert world.status.phase == "Paused"
    assert invalid_spec(world)[0] == "False"


def test_unreachable_prometheus_holds_with_a_progressing_message_then_the_deadline_aborts() -> None:
    world = canary(UNREACHABLE, progressDeadlineSeconds=60)
    plan = world.settle()
    assert plan.requeue_after == 5.0
    assert world.status.phase == "Progressing"
    assert UNREACHABLE.message in world.status.message
    progressing = world.status.condition("Progressing")
    assert progressing is not None and progressing.status == "True"
    assert UNREACHABLE.message in progressing.message
    assert invalid_spec(world)[0] == "False"
    world.run_for(55)
    assert world.status.abort is False
    world.run_for(10)
    no_canary_traffic(world)
    assert world.status.abort and world.status.abort_reason == "ProgressDeadlineExceeded"
    assert world.status.phase == "Degraded"
    aborts = [e for e in world.events if e.reason == "ProgressDeadlineExceeded"]
    assert len(aborts) == 1 and "waiting for Prometheus" in aborts[0].message


def test_prometheus_back_before_the_deadline_lets_the_canary_go_on() -> None:
    world = canary(UNREACHABLE, progressDeadlineSeconds=60)
    world.run_for(30)
    world.preflight = PREFLIGHT_OK
    world.run_for(60)
    assert world.status.abort is False
    assert world.route is not None and world.route.canary_weight == 20


def test_every_kind_of_first_traffic_waits_header_route_mirror_promote_full() -> None:
    header: dict[str, Any] = {
        "setHeaderRoute": {"name": "testers", "match": [{"headers": {"x": {"exact": "1"}}}]}
    }
    mirror: dict[str, Any] = {"setMirror": {"percent": 10}}
    for steps in ([header, {"pause": {}}], [mirror, {"pause": {}}]):
        world = canary(MISSING, steps)
        world.run_for(60)
        no_canary_traffic(world)
        assert world.status.phase == "Degraded"
    world = canary(MISSING)
    world.promote_full()
    world.run_for(60)
    no_canary_traffic(world)
    assert world.status.stable_revision != world.revision


def test_a_canary_with_no_steps_is_not_promoted_before_preflight() -> None:
    world = canary(UNREACHABLE, [{"pause": {"duration": "1s"}}], progressDeadlineSeconds=30)
    world.run_for(60)
    no_canary_traffic(world)
    assert world.status.abort_reason == "ProgressDeadlineExceeded"


def test_blue_green_switch_and_mirror_strategy_wait_for_preflight() -> None:
    doc = example("blue-green")
    doc["spec"]["strategy"] = {"blueGreen": {"autoPromotionSeconds": 1}}
    world = started(doc, MISSING)
    world.run_for(120)
    no_canary_traffic(world)
    assert world.status.phase == "Degraded" and world.status.stable_revision != world.revision
    world.preflight = PREFLIGHT_OK
    world.run_for(120)
    assert world.status.stable_revision == world.revision

    world = started(example("mirror"), MISSING)
    world.run_for(120)
    no_canary_traffic(world)
    assert world.status.phase == "Degraded"


def test_preflight_is_not_consulted_once_the_canary_has_traffic() -> None:
    world = canary(PREFLIGHT_OK)
    assert world.route is not None and world.route.canary_weight == 20
    world.preflight = MISSING  # observe does not run it for a canary with traffic
    world.run_for(60)
    assert world.route.canary_weight == 20
    assert invalid_spec(world)[0] == "False"


def test_a_change_of_invalid_reason_is_reported_again() -> None:
    world = canary(MISSING)
    world.preflight = Preflight("invalid", "spec.analysis.prometheus.address: no address")
    world.settle()
    reasons = [e.message for e in world.events if isinstance(e, EmitEvent)]
    assert MISSING.message in reasons and "spec.analysis.prometheus.address: no address" in reasons
