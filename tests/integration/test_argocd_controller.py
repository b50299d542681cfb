"""The Argo CD health check and actions on the Rollouts a running controller writes.

The fixtures of ``tests/unit/test_argocd_lua.py`` are written by hand; here the inputs are
every version of a Rollout that a controller (on the sandbox, or a real apiserver) writes while
a canary goes through each phase: Healthy, Progressing, Paused at a step, paused by the user,
Degraded after an abort. On each version, ``health.lua`` must give the phase's Argo CD status,
and every action must return no longer array than it was given and come out of Argo CD's
result clean-up the same before its fix and after it (``tests/argocd_lua.py``). The actions are
run as Argo CD runs them, their patches sent as Argo CD sends them (status patch to
``/status``, the rest to the object), and the controller must honour each one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.argocd_lua import (
    ACTION_NAMES,
    DISCOVERY,
    HEALTH,
    argocd_patches,
    clean_after_fix,
    clean_before_fix,
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
ARGOCD_HEALTH = {
    "Healthy": "Healthy",
    "Progressing": "Progressing",
    "Paused": "Suspended",
    "Degraded": "Degraded",
}


def expected_health(rollout: Obj) -> str:
    """The Argo CD status a Rollout should have: Progressing until the controller has observed
    its generation, then its phase's."""
    status = rollout.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or observed != rollout["metadata"].get("generation"):
        return "Progressing"
    return ARGOCD_HEALTH[status["phase"]]


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
    for version in versions:
        health = run(HEALTH, version)
        assert health["status"] == expected_health(version), version.get("status")
        assert set(run(DISCOVERY, version)) == set(ACTION_NAMES)
        for name in ACTION_NAMES:
            action_result(name, version)
