"""One step numbering at its edges: a canary without steps (``-``, never ``step -``) and a
status written without ``step`` nor ``stepCount`` for a blue-green or mirror Rollout (the
spec's own steps count, as the controller counts them)."""

from __future__ import annotations

from rollout.ops import cmd_list, cmd_status, step_of
from tests.unit.test_step_numbering import paused_at_second_step, rollout_object, target
from tests.unit.world import example


def test_status_of_a_canary_without_steps_does_not_say_step_dash() -> None:
    obj = rollout_object(paused_at_second_step())
    obj["spec"]["strategy"]["canary"]["steps"] = []
    obj["status"].update(phase="Healthy", step="-", stepCount=0, currentStepIndex=0)
    obj["status"]["weights"]["canary"] = 0
    tgt, out = target(obj)
    cmd_status(tgt, "reviews", timeout=0.01)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("Healthy: canary weight 0%: "), first
    assert "step -" not in out.getvalue()


def test_an_old_blue_green_status_without_step_counts_the_strategy_steps() -> None:
    for kind, count in (("blue-green", 5), ("mirror", 3)):
        doc = example(kind)
        obj = {
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": doc["spec"],
            "status": {"phase": "Healthy", "currentStepIndex": count},
        }
        assert step_of(obj) == f"{count}/{count}", kind
        tgt, out = target(obj)
        assert cmd_list(tgt) == 0
        assert out.getvalue().splitlines()[1].split()[3] == f"{count}/{count}"


def test_a_one_step_canary_starts_with_1_step_not_1_steps() -> None:
    from tests.unit.world import World

    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {"steps": [{"setWeight": 50}]}
    del doc["spec"]["analysis"]
    world = World(doc)
    world.settle()
    world.set_image("v2")
    world.settle()
    started = [e.message for e in world.events if e.reason == "RolloutStarted"]
    assert started and started[0].endswith(": 1 step; now step 1/1: setWeight 50%"), started


def test_blue_green_describes_its_switch_in_its_own_terms() -> None:
    from rollout.api.rollout import RolloutSpec
    from rollout.domain.steps import describe, steps_of, traffic_at

    spec = RolloutSpec.model_validate(example("blue-green")["spec"])
    steps = steps_of(spec)
    described = [describe(step) for step in steps]
    assert described[3] == "switch: the preview becomes active", described
    assert not any(d.startswith("setWeight") for d in described), described
    assert traffic_at(steps, 3).weight == 100 and traffic_at(steps, 2).weight == 0
