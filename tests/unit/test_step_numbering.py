"""One step numbering everywhere a person reads it (issue 15 item 2).

A canary of three steps, paused at its second (``currentStepIndex`` 1): every view says
``2/3``: the status message and ``status.step``, the Events, ``rollout list``, ``rollout status``,
``rollout get``, the CRD's Step printer column and the demo's timeline.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rollout.cluster.access import NotFound, Obj, Resource, WatchEvent
from rollout.ops import Target, cmd_list, cmd_status
from rollout.view import Scene, render
from tests.unit.world import World, example

CRD = Path(__file__).resolve().parents[2] / "crds" / "rollout.dev_rollouts.yaml"


def paused_at_second_step() -> World:
    doc = example("canary")
    doc["spec"]["strategy"]["canary"] = {
        "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]
    }
    del doc["spec"]["analysis"]
    world = World(doc)
    world.settle()
    world.set_image("v2")
    world.settle()
    assert world.status.phase == "Paused" and world.status.current_step_index == 1
    return world


def rollout_object(world: World) -> Obj:
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "reviews",
            "namespace": "shop",
            "generation": world.generation,
            "resourceVersion": "7",
            "creationTimestamp": "2026-11-27T10:00:00Z",
        },
        "spec": world.doc["spec"],
        "status": world.status.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


class OneRollout:
    """ClusterAccess (our seam) holding one Rollout: list, get, and a watch that ends."""

    def __init__(self, obj: Obj) -> None:
        self.obj = obj

    def list(self, res: Resource, namespace: str | None = None, **_: Any) -> tuple[list[Obj], str]:
        return ([self.obj] if res.kind == "Rollout" else []), "7"

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        if res.kind != "Rollout":
            raise NotFound(name)
        return self.obj

    def watch(self, *args: Any, **kwargs: Any) -> Iterator[WatchEvent]:
        return iter(())


def target(obj: Obj) -> tuple[Target, io.StringIO]:
    out = io.StringIO()
    return Target(OneRollout(obj), "shop", stdout=out, stderr=io.StringIO()), out  # type: ignore[arg-type]


def test_status_message_and_status_step_say_the_step_being_executed() -> None:
    world = paused_at_second_step()
    assert world.status.step == "2/3"
    assert world.status.message == "paused (CanaryPauseStep) at step 2/3: pause until promoted"


def test_status_after_the_last_step_is_n_of_n() -> None:
    world = paused_at_second_step()
    world.promote()
    world.settle()
    assert world.status.phase == "Healthy"
    assert world.status.step == "3/3"


def test_events_name_the_step_done_and_the_step_now_running() -> None:
    world = paused_at_second_step()
    messages = {e.reason: e.message for e in world.events}
    assert messages["RolloutStarted"].endswith("3 steps; now step 1/3: setWeight 10%")
    assert messages["StepCompleted"] == (
        "step 1/3 done: setWeight 10%; now step 2/3: pause until promoted"
    )


def test_list_step_column() -> None:
    tgt, out = target(rollout_object(paused_at_second_step()))
    assert cmd_list(tgt) == 0
    header, row = out.getvalue().splitlines()
    assert header.split()[3] == "STEP"
    assert row.split()[3] == "2/3"


def test_status_output() -> None:
    tgt, out = target(rollout_object(paused_at_second_step()))
    cmd_status(tgt, "reviews", timeout=0.01)
    first = out.getvalue().splitlines()[0]
    assert first.startswith(
        "Paused: step 2/3, canary weight 10%: paused (CanaryPauseStep) at step 2/3"
    )


def test_get_step_line() -> None:
    text = render(Scene(rollout=rollout_object(paused_at_second_step())))
    assert "Step:          2/3 (pause until promoted)\n" in text


def test_printer_column_reads_status_step() -> None:
    obj = rollout_object(paused_at_second_step())
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    [column] = [c for c in version["additionalPrinterColumns"] if c["name"] == "Step"]
    assert column["type"] == "string"
    value: Any = obj
    for name in column["jsonPath"].strip(".").split("."):
        value = value[name]
    assert value == "2/3"


def sample(status: Obj) -> Any:
    from rollout.demo import Sample, step_label

    return Sample(
        t=1.0,
        phase=status.get("phase"),
        step=status.get("currentStepIndex"),
        canaryWeight=0,
        stableWeight=100,
        mirrorPercent=0,
        canaryErrorRate=None,
        canaryP99Ms=None,
        stableErrorRate=None,
        stableP99Ms=None,
        stepLabel=step_label(status),
    )


def test_demo_timeline_step_label() -> None:
    from rollout.demo import step_change

    status = rollout_object(paused_at_second_step())["status"]
    assert sample(status).stepLabel == "2/3"
    assert step_change(sample(status)) == "Paused step 2/3"


def test_demo_timeline_after_six_steps_says_six_of_six_not_seven() -> None:
    from rollout.demo import step_change, step_label

    status = {"phase": "Healthy", "currentStepIndex": 6, "stepCount": 6}
    assert step_label(status) == "6/6"
    assert step_change(sample(status)) == "Healthy step 6/6"
