"""The controller against the sandbox: operator actions, restarts and out-of-band edits.

Operator actions are what the CLI sends: merge patches of the Rollout's status subresource.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from rollout.domain.revision import HASH_LABEL
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Recorder,
    Steps,
    canary_weight,
    condition,
    consistently,
    destination_rule,
    http_route,
    pod_template,
    rollout_manifest,
    subset_labels,
    virtual_service,
)
from tests.integration.sandbox_helpers import Obj, eventually

pytestmark = pytest.mark.integration


def start_update(cluster: Cluster, steps: Steps, *, crash: bool = False) -> tuple[str, str]:
    """VS, DR, a Healthy first revision, then a second one; (stable, canary) revisions."""
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=steps))
    stable: str = cluster.wait_healthy()["stableRevision"]
    cluster.set_template(pod_template("reviews", "example.com/reviews:2", crash=crash))
    status = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, stable))
    canary: str = status["canaryRevision"]
    return stable, canary


def paused_at(cluster: Cluster, index: int, weight: int) -> Obj:
    return cluster.wait_status(
        lambda s: (
            s.get("phase") == "Paused"
            and s.get("currentStepIndex") == index
            and s["weights"]["canary"] == weight
        )
    )


def test_abort_restores_stable_at_once_and_retry_starts_over(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    stable, canary = start_update(cluster, [{"setWeight": 40}, {"pause": {}}])
    paused_at(cluster, 1, 40)
    rec = recorder()
    assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 2

    aborted = time.monotonic()
    cluster.abort()

    def weight_zero() -> None:
        assert canary_weight(cluster.vs()) == 0

    eventually(weight_zero, timeout=2)  # within one reconcile, not after a delay
    status = cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    progressing = condition(status, "Progressing")
    assert progressing["status"] == "False" and progressing["reason"] == "RolloutAborted"
    assert status["abort"] is True
    assert status["stableRevision"] == stable and status["canaryRevision"] == canary
    assert status["message"] == f"aborted (RolloutAborted): all traffic on stable {stable}"
    assert status["pauseConditions"] == []
    [warning] = cluster.wait_events("RolloutAborted")
    assert warning["type"] == "Warning"
    assert subset_labels(cluster.dr())["stable"] == stable
    assert cluster.replica_set(f"reviews-{stable}")["spec"]["replicas"] == 5

    # The canary scales to 0 after abortScaleDownDelaySeconds (1 s), not before.
    def canary_down() -> None:
        assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 0

    eventually(canary_down, timeout=5)
    rec.catch_up()
    down = next(
        s.at for s in rec.of("ReplicaSet", f"reviews-{canary}") if s.obj["spec"]["replicas"] == 0
    )
    assert down - aborted >= 0.9, down - aborted
    assert cluster.status()["phase"] == "Degraded"  # and it stays aborted

    # Retry: from step 1 again, to the same pause.
    cluster.retry()
    status = paused_at(cluster, 1, 40)
    assert status["abort"] is False and status.get("abortedAt") is None
    assert condition(status, "Progressing")["status"] == "True"
    assert len(cluster.wait_events("RolloutRetried")) == 1
    assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 2
    rec.catch_up()
    assert rec.weights() == [40, 0, 40]
    # The retry walked step 1 again: the canary was brought back up before traffic returned.
    sizes = rec.states("ReplicaSet", f"reviews-{canary}", lambda o: o["spec"]["replicas"])
    assert sizes == [2, 0, 2], sizes


def test_abort_of_a_canary_that_never_becomes_ready(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    rec = recorder()
    stable, canary = start_update(cluster, [{"setWeight": 20}, {"pause": {}}], crash=True)

    def waiting() -> None:
        status = cluster.status()
        assert status["phase"] == "Progressing" and status["currentStepIndex"] == 0
        assert canary_weight(cluster.vs()) == 0  # no traffic to a canary with no ready pod

    consistently(waiting, 0.5)
    cluster.abort()
    cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    eventually(
        lambda: _replicas_are(cluster, f"reviews-{canary}", 0),
        timeout=5,
    )
    rec.catch_up()
    assert rec.weights() == [0]


def _replicas_are(cluster: Cluster, name: str, replicas: int) -> None:
    assert cluster.replica_set(name)["spec"]["replicas"] == replicas


STEPS: Steps = [
    {"setWeight": 20},
    {"pause": {"duration": 1}},
    {"setWeight": 40},
    {"pause": {"duration": 1}},
    {"setWeight": 60},
    {"pause": {}},
]
WEIGHT_AT = [20, 20, 40, 40, 60, 60, 100]  # the most the canary may get at each step index


def test_a_restarted_controller_resumes_at_the_same_step(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    rec = recorder()
    stable, canary = start_update(cluster, STEPS)
    paused_at(cluster, 3, 40)  # the second timed pause
    controller.stop()
    # While no controller runs nothing moves, and the timed pause elapses meanwhile.
    frozen = cluster.vs()["metadata"]["resourceVersion"]
    time.sleep(1.2)
    assert cluster.vs()["metadata"]["resourceVersion"] == frozen
    assert cluster.status()["currentStepIndex"] == 3

    controller.start()
    status = paused_at(cluster, 5, 60)
    assert status["canaryRevision"] == canary and status["stableRevision"] == stable

    def each_step_once() -> None:
        done = [e["message"] for e in cluster.events() if e["reason"] == "StepCompleted"]
        assert [m.split(":")[0] for m in done] == [f"step {i}/6 done" for i in range(1, 6)], done

    eventually(each_step_once, timeout=3)  # events trail the status write they describe
    consistently(each_step_once, 0.3)
    rec.catch_up()
    assert rec.weights() == [0, 20, 40, 60]
    started = [e for e in cluster.events() if e["reason"] == "RolloutStarted"]
    assert len(started) == 1

    # Never more traffic than the step the status had reached allows.
    index = len(STEPS)
    for seen in rec.timeline(["Rollout", "VirtualService"]):
        if seen.kind == "Rollout":
            status = seen.obj.get("status") or {}
            if status.get("canaryRevision") == canary:
                index = int(status.get("currentStepIndex", index))
        else:
            assert canary_weight(seen.obj) <= WEIGHT_AT[index], (seen, index)

    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    rec.catch_up()
    assert rec.weights() == [0, 20, 40, 60, 100, 0]


def test_an_out_of_band_weight_edit_is_corrected(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    stable, canary = start_update(cluster, [{"setWeight": 20}, {"pause": {}}])
    paused_at(cluster, 1, 20)
    rec = recorder()

    def edit(canary_share: int) -> None:
        vs = cluster.vs()
        entries = http_route(vs)["route"]
        for entry in entries:
            is_canary = entry["destination"]["subset"] == "canary"
            entry["weight"] = canary_share if is_canary else 100 - canary_share
        http_route(vs)["timeout"] = "7s"  # not ours: must survive the correction
        cluster.replace_vs(vs)

    edit(50)

    def corrected(weight: int) -> Callable[[], None]:
        def check() -> None:
            vs = cluster.vs()
            assert canary_weight(vs) == weight
            assert http_route(vs)["timeout"] == "7s"

        return check

    eventually(corrected(20), timeout=3)
    rec.catch_up()
    assert rec.weights() == [20, 50, 20]
    assert cluster.status()["phase"] == "Paused"

    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    edit(30)  # on a Healthy rollout too
    eventually(corrected(0), timeout=3)
    assert subset_labels(cluster.dr()) == {"stable": canary, "canary": canary}
    labels = cluster.dr()["spec"]["subsets"][0]["labels"]
    assert labels == {"app": "reviews", HASH_LABEL: canary}


def test_promote_full_skips_the_remaining_steps(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    rec = recorder()
    stable, canary = start_update(cluster, STEPS)
    paused_at(cluster, 1, 20)
    cluster.operator({"promoteFull": True})
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0
    )
    assert status["stableRevision"] == canary and status["promoteFull"] is False
    assert len(cluster.wait_events("PromotedFull")) == 1
    rec.catch_up()
    assert rec.weights() == [0, 20, 100, 0]  # no step 40 or 60 on the way
    # 20% held while the canary scaled from 1 to 5; 100% only with all 5 available.
    available = 0
    for seen in rec.timeline(["ReplicaSet", "VirtualService"]):
        if seen.kind == "ReplicaSet" and seen.name == f"reviews-{canary}":
            available = int((seen.obj.get("status") or {}).get("availableReplicas", 0))
        elif seen.kind == "VirtualService" and canary_weight(seen.obj) == 100:
            assert available == 5, seen
    done = [e for e in cluster.events() if e["reason"] == "StepCompleted"]
    assert len(done) == 1  # only the first step was walked
