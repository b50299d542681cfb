"""The Argo CD health check and actions on the Rollouts a running controller writes.

The inputs are every version of a Rollout that a controller (on the sandbox, or a real
apiserver) writes while a canary goes through each phase: Healthy, Progressing, Paused at a
step, paused by the user, Degraded after an abort. On each version, ``health.lua`` must give
the phase's Argo CD status, and every action must return no longer array than it was given
and come out of Argo CD's result clean-up the same before its fix and after it
(``tests/argocd_lua.py``). The actions are run as Argo CD runs them, their patches sent as
Argo CD sends them (status patch to ``/status``, the rest to the object), and the controller
must honour each one.

The fixtures in ``argocd/.../Rollout/testdata/controller/`` (used by
``tests/unit/test_argocd_lua.py``) are the first version in each state, normalized (no
server-set metadata, timestamps pinned): ``ROLLOUT_WRITE_ARGOCD_FIXTURES=1`` rewrites them;
otherwise this test checks that each is still a state the controller reaches, with the status
fields it writes there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rollout.cli import app
from tests.argocd_lua import (
    ACTION_NAMES,
    CONTROLLER_FIXTURES,
    DISCOVERY,
    HEALTH,
    PINNED_TIME,
    argocd_patches,
    clean_after_fix,
    clean_before_fix,
    expected_health,
    grown_arrays,
    run,
)
from tests.argocd_lua import (
    ACTIONS as ACTION_DIR,
)
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Recorder,
    destination_rule,
    pod_template,
    rollout_manifest,
    virtual_service,
)
from tests.integration.sandbox_helpers import GROUP, VERSION, Obj

pytestmark = pytest.mark.integration

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
    {"setWeight": 80},
]
WRITE_FIXTURES = "ROLLOUT_WRITE_ARGOCD_FIXTURES"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PINNED = "2026-01-01T00:00:00Z"
assert PINNED_TIME == 1767225600  # PINNED


def _status(rollout: Obj) -> Obj:
    status: Obj = rollout.get("status") or {}
    return status


def _observed(rollout: Obj) -> bool:
    return bool(_status(rollout).get("observedGeneration") == rollout["metadata"].get("generation"))


def _in_state(phase: str, *pauses: str, requested: bool = False) -> Callable[[Obj], bool]:
    return lambda r: (
        _observed(r)
        and _status(r).get("phase") == phase
        and reasons(_status(r)) == sorted(pauses)
        and (_status(r).get("pausedByUser") is True) == requested
    )


# The states of the fixtures in CONTROLLER_FIXTURES: the first version of the Rollout in each.
STATES: dict[str, Callable[[Obj], bool]] = {
    "healthy": _in_state("Healthy"),
    "unobserved": lambda r: not _observed(r) and "phase" in _status(r),
    "progressing": lambda r: (
        _in_state("Progressing")(r)
        and _status(r).get("canaryRevision") is not None
        and _status(r).get("canaryRevision") != _status(r).get("stableRevision")
    ),
    "paused-step": _in_state("Paused", "CanaryPauseStep"),
    "paused-step-pause-requested": _in_state("Paused", "CanaryPauseStep", requested=True),
    "paused-step-and-user": _in_state("Paused", "CanaryPauseStep", "PausedByUser"),
    "degraded": lambda r: _observed(r) and _status(r).get("phase") == "Degraded",
}


def normalized(rollout: Obj) -> Obj:
    """A Rollout as a fixture: no server-set metadata or namespace, every timestamp pinned."""

    def pin(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: pin(v) for k, v in value.items()}
        if isinstance(value, list):
            return [pin(v) for v in value]
        if isinstance(value, str) and TIMESTAMP.match(value):
            return PINNED
        return value

    meta = rollout["metadata"]
    kept = {k: meta[k] for k in ("name", "generation", "labels", "annotations") if k in meta}
    out = {k: v for k, v in rollout.items() if k != "metadata"}
    fixture: Obj = pin(
        {"apiVersion": out.pop("apiVersion"), "kind": out.pop("kind"), "metadata": kept, **out}
    )
    return fixture


def check_fixtures(versions: list[Obj]) -> None:
    """Each fixture in CONTROLLER_FIXTURES is a state the controller reached, with the status
    fields it writes in that state; with ROLLOUT_WRITE_ARGOCD_FIXTURES=1, (re)written from the
    first version in each state."""
    for state, holds in STATES.items():
        found = [normalized(v) for v in versions if holds(v)]
        assert found, f"the controller never reached {state}"
        path = CONTROLLER_FIXTURES / f"{state}.yaml"
        if os.environ.get(WRITE_FIXTURES) == "1":
            header = (
                f"# Written by tests/integration/test_argocd_controller.py ({WRITE_FIXTURES}=1)\n"
            )
            path.write_text(header + yaml.safe_dump(found[0], sort_keys=False))
        fixture = yaml.safe_load(path.read_text())
        assert holds(fixture), f"{path.name} is not in state {state}"
        shapes = {tuple(sorted(_status(f))) for f in found}
        assert tuple(sorted(_status(fixture))) in shapes, f"{path.name}: not a status it writes"


def action_result(name: str, live: Obj) -> Obj:
    """What Argo CD patches towards when ``name`` runs on ``live``, checked to be the same
    before and after Argo CD's fix and to grow no array."""
    returned = run(ACTION_DIR / name / "action.lua", live, now=None)
    assert grown_arrays(returned, live) == [], name
    after: Obj = clean_after_fix(returned, live)
    assert clean_before_fix(returned, live) == after, name
    return after


def run_action(cluster: Cluster, name: str) -> None:
    """The action ``name`` as Argo CD runs it on the live Rollout, with Argo CD's patches."""
    live = cluster.rollout()
    enabled = {k for k, v in run(DISCOVERY, live).items() if not v.get("disabled")}
    assert name in enabled, (name, enabled)
    status_patch, object_patch = argocd_patches(live, action_result(name, live))
    assert status_patch is not None or object_patch is not None, name
    if status_patch is not None:
        cluster.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            cluster.namespace,
            "rollouts",
            "reviews",
            status_patch,
            _content_type="application/merge-patch+json",
        )
    if object_patch is not None:
        cluster.patch_rollout(object_patch)


def reasons(status: Obj) -> list[str]:
    return sorted(str(p["reason"]) for p in status.get("pauseConditions") or [])


def paused(index: int, *pauses: str) -> Callable[[Obj], bool]:
    return lambda s: (
        s.get("phase") == "Paused"
        and s.get("currentStepIndex") == index
        and reasons(s) == sorted(pauses)
        and "pausedByUser" not in s
    )


def test_actions_on_a_live_rollout_through_every_phase(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    rec = recorder()
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=STEPS))
    stable = cluster.wait_healthy()["stableRevision"]
    cluster.set_template(pod_template("reviews", "example.com/reviews:2", crash=False))
    cluster.wait_status(paused(1, "CanaryPauseStep"))

    # pause: a flag the controller turns into the PausedByUser condition (no array grows)
    run_action(cluster, "pause")
    cluster.wait_status(paused(1, "CanaryPauseStep", "PausedByUser"))
    # skip-current-step (as `rollout promote`): the step's pause and the user's end
    run_action(cluster, "skip-current-step")
    cluster.wait_status(paused(3, "CanaryPauseStep"))
    assert cluster.status()["weights"]["canary"] == 50
    # resume lifts the user's pause only; promote then moves on
    run_action(cluster, "pause")
    cluster.wait_status(paused(3, "CanaryPauseStep", "PausedByUser"))
    run_action(cluster, "resume")
    cluster.wait_status(paused(3, "CanaryPauseStep"))
    # abort, retry: Degraded, then the update again from its first step
    run_action(cluster, "abort")
    cluster.wait_status(lambda s: s.get("phase") == "Degraded" and s.get("abort") is True)
    run_action(cluster, "retry")
    cluster.wait_status(paused(1, "CanaryPauseStep"))
    run_action(cluster, "promote")
    cluster.wait_status(paused(3, "CanaryPauseStep"))
    run_action(cluster, "promote-full")
    canary = cluster.status()["canaryRevision"]
    cluster.wait_healthy(canary)
    # restart: a new revision (the template annotation), which goes through the steps
    run_action(cluster, "restart")
    restarted = cluster.wait_status(
        lambda s: s.get("canaryRevision") not in (None, canary) and paused(1, "CanaryPauseStep")(s)
    )
    assert restarted["stableRevision"] == canary != stable
    annotations = cluster.rollout()["spec"]["template"]["metadata"]["annotations"]
    assert "rollout.dev/restartedAt" in annotations
    rec.stop()

    # every version the controller and the actions wrote: health, discovery, every action
    versions = [s.obj for s in rec.of("Rollout", "reviews") if s.type != "DELETED"]
    phases = {(v.get("status") or {}).get("phase") for v in versions}
    assert {"Healthy", "Progressing", "Paused", "Degraded"} <= phases
    assert any((v.get("status") or {}).get("pausedByUser") is True for v in versions)
    check_fixtures(versions)
    for version in versions:
        health = run(HEALTH, version)
        assert health["status"] == expected_health(version), version.get("status")
        assert set(run(DISCOVERY, version)) == set(ACTION_NAMES)
        for name in ACTION_NAMES:
            action_result(name, version)


def test_the_cli_sees_a_pause_request_the_controller_has_not_taken(
    cluster: Cluster, sandbox_kubeconfig: Path
) -> None:
    """No controller runs: the Argo CD pause action's request stays a flag. `rollout pause`
    says it is already paused; `rollout resume` withdraws the request."""
    cluster.create_rollout(rollout_manifest(steps=STEPS))
    run_action(cluster, "pause")
    assert cluster.status() == {"pausedByUser": True}

    def cli(*args: str) -> tuple[int, str]:
        kc, ns = str(sandbox_kubeconfig), cluster.namespace
        result = CliRunner().invoke(app, [*args, "reviews", "--kubeconfig", kc, "-n", ns])
        return result.exit_code, result.output

    assert cli("pause") == (0, 'rollout "reviews" is already paused\n')
    assert cli("resume") == (0, 'rollout "reviews" resumed\n')
    assert "pausedByUser" not in cluster.status()
    assert cli("resume")[1].startswith("nothing to resume")
