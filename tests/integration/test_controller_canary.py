"""The controller against the sandbox: a canary walks its steps, and promotion.

An in-process ``Controller`` on the test's namespace talks HTTP to the ``rollout sandbox up``
process; the tests act and read only through the official client, and a ``Recorder`` watching
the VirtualService, DestinationRule, ReplicaSets and Rollout keeps every state they went
through, so the assertions cover the whole sequence of traffic, not a few polled samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from rollout.domain.revision import HASH_LABEL
from tests.integration.controller_helpers import (
    CANONICAL_NAME,
    CANONICAL_REVISION,
    TRAFFIC_POLICY,
    Cluster,
    ControllerHandle,
    Recorder,
    Steps,
    canary_weight,
    condition,
    consistently,
    destination_rule,
    pod_template,
    rollout_manifest,
    subset_labels,
    virtual_service,
    without_weights,
)
from tests.integration.sandbox_helpers import Obj, eventually

pytestmark = pytest.mark.integration

STEPS: Steps = [
    {"setWeight": 20},
    {"pause": {"duration": 1}},
    {"setWeight": 60},
    {"pause": {}},
]


def stored_traffic_policy(cluster: Cluster) -> Obj:
    """The DestinationRule's trafficPolicy as the API stores it: all of ``TRAFFIC_POLICY``,
    unknown fields included where the CRD keeps them (the sandbox; Istio's schema prunes)."""
    policy: Obj = cluster.as_stored("destinationrules", destination_rule())["spec"]["trafficPolicy"]
    assert {k: v for k, v in TRAFFIC_POLICY.items() if k != "x-custom"}.items() <= policy.items()
    return policy


def deploy_first(cluster: Cluster, steps: Steps = STEPS) -> str:
    """VS, DR and a Rollout at its first revision, Healthy; the stable revision."""
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=steps))
    status = cluster.wait_healthy()
    stable: str = status["stableRevision"]
    return stable


def new_revision(cluster: Cluster, image: str = "example.com/reviews:2") -> None:
    cluster.set_template(pod_template("reviews", image))


def canary_revision(cluster: Cluster, stable: str) -> str:
    status = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, stable))
    revision: str = status["canaryRevision"]
    return revision


def test_canary_walks_timed_and_indefinite_pauses_then_promotes(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    stable = deploy_first(cluster)
    first = cluster.replica_set(f"reviews-{stable}")
    assert first["spec"]["replicas"] == 5
    assert subset_labels(cluster.dr()) == {"stable": stable, "canary": stable}
    rec = recorder()

    new_revision(cluster)
    canary = canary_revision(cluster, stable)
    assert canary != stable

    # Held at the indefinite pause (step 4/4) with 60% on the canary.
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == 3
    )
    assert status["weights"] == {"stable": 40, "canary": 60, "mirror": 0}
    assert status["message"].startswith("paused (CanaryPauseStep) at step 4/4"), status
    assert status["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert condition(status, "Paused")["status"] == "True"
    assert condition(status, "Progressing")["reason"] == "RolloutProgressing"
    assert canary_weight(cluster.vs()) == 60
    # canary replicas = ceil(5 x 60%) = 3; stable keeps its full size.
    rs = cluster.replica_set(f"reviews-{canary}")
    assert rs["spec"]["replicas"] == math.ceil(5 * 60 / 100) == 3
    assert cluster.replica_set(f"reviews-{stable}")["spec"]["replicas"] == 5

    # The ReplicaSet: named <rollout>-<hash>, labelled, owned, pods stamped for Istio.
    meta = rs["metadata"]
    assert meta["labels"][HASH_LABEL] == canary
    owner = meta["ownerReferences"][0]
    rollout = cluster.rollout()
    assert owner["kind"] == "Rollout" and owner["name"] == "reviews"
    assert owner["uid"] == rollout["metadata"]["uid"] and owner["controller"] is True
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "reviews", HASH_LABEL: canary}
    pod_labels = rs["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[CANONICAL_NAME] == "reviews"
    assert pod_labels[CANONICAL_REVISION] == canary
    assert pod_labels[HASH_LABEL] == canary

    # It stays held: nothing advances an indefinite pause but the operator.
    held_rv = cluster.vs()["metadata"]["resourceVersion"]

    def held() -> None:
        assert cluster.vs()["metadata"]["resourceVersion"] == held_rv
        assert cluster.status()["phase"] == "Paused"

    consistently(held, 1.0)

    cluster.promote()
    cluster.wait_healthy(canary)
    # The weights in the status are read back from the VS, so they settle one reconcile later.
    status = cluster.wait_status(lambda s: s["weights"]["canary"] == 0)
    assert status["phase"] == "Healthy" and status["stableRevision"] == canary
    assert status["canaryRevision"] == canary
    assert status["currentStepIndex"] == 4
    assert status["pauseConditions"] == []
    assert status["weights"] == {"stable": 100, "canary": 0, "mirror": 0}
    assert status["message"] == f"revision {canary} is stable and serves 100%"
    assert condition(status, "Progressing")["reason"] == "RolloutCompleted"
    assert condition(status, "Healthy")["status"] == "True"
    assert subset_labels(cluster.dr()) == {"stable": canary, "canary": canary}
    assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 5

    # The whole traffic sequence the VirtualService went through.
    rec.catch_up()
    assert rec.weights() == [0, 20, 60, 100, 0]

    # The timed pause held 20% for at least its second.
    versions = rec.of("VirtualService", "reviews")
    at_20 = next(s.at for s in versions if canary_weight(s.obj) == 20)
    at_60 = next(s.at for s in versions if canary_weight(s.obj) == 60)
    assert at_60 - at_20 >= 0.95, at_60 - at_20

    # Status along the way: (phase, step) as the Rollout went through them.
    phases = rec.states(
        "Rollout",
        "reviews",
        lambda o: (
            (o.get("status") or {}).get("phase"),
            (o.get("status") or {}).get("currentStepIndex"),
        ),
    )
    assert phases[0] == ("Healthy", 4), phases  # the first revision, before the update
    assert phases[1:] == [
        ("Progressing", 0),
        ("Paused", 1),
        ("Progressing", 2),
        ("Paused", 3),
        ("Progressing", 4),
        ("Healthy", 4),
    ], phases
    # Canary replicas went 1 (before traffic) -> ceil(5 x 20%) = 1 -> 3 -> 5, never above.
    sizes = rec.states("ReplicaSet", f"reviews-{canary}", lambda o: o["spec"]["replicas"])
    assert sizes == [1, 3, 5], sizes

    # The old stable scales to 0 once scaleDownDelaySeconds (1 s) has passed.
    def old_scaled_down() -> None:
        assert cluster.replica_set(f"reviews-{stable}")["spec"]["replicas"] == 0

    eventually(old_scaled_down, timeout=5)
    rec.catch_up()
    promoted_at = next(
        s.at
        for s in rec.of("DestinationRule", "reviews")
        if subset_labels(s.obj)["stable"] == canary
    )
    scaled_at = next(
        s.at for s in rec.of("ReplicaSet", f"reviews-{stable}") if s.obj["spec"]["replicas"] == 0
    )
    assert scaled_at - promoted_at >= 0.9, scaled_at - promoted_at
    steps_done = cluster.wait_events("StepCompleted", 4)
    assert [e["message"].split(":")[0] for e in steps_done] == [
        "step 1/4 done",
        "step 2/4 done",
        "step 3/4 done",
        "step 4/4 done",
    ]
    assert len(cluster.wait_events("Promoted")) == 1
    assert cluster.dr()["spec"]["trafficPolicy"] == stored_traffic_policy(cluster)


def test_everything_but_the_weights_is_preserved(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    stable = deploy_first(cluster, steps=[{"setWeight": 50}])
    before_vs = without_weights(cluster.vs())
    before_dr = cluster.dr()["spec"]
    new_revision(cluster)
    canary = canary_revision(cluster, stable)
    cluster.wait_healthy(canary)
    after_vs = cluster.vs()
    assert without_weights(after_vs) == before_vs
    assert canary_weight(after_vs) == 0
    dr = cluster.dr()["spec"]
    assert dr["trafficPolicy"] == before_dr["trafficPolicy"] == stored_traffic_policy(cluster)
    # Only the hash labels of the two subsets changed; the canary's own policy stayed.
    for subset in before_dr["subsets"]:
        subset["labels"][HASH_LABEL] = canary
    assert dr == before_dr


def test_subsets_are_pinned_before_traffic_and_stable_moves_once_the_canary_is_available(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    stable = deploy_first(cluster, steps=[{"setWeight": 40}, {"pause": {}}])
    rec = recorder()
    new_revision(cluster)
    canary = canary_revision(cluster, stable)
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 40)
    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    rec.catch_up()
    assert rec.weights() == [0, 40, 100, 0]

    # Replay every version of the VS, the DR and the canary's ReplicaSet in write order.
    weight, available = 0, 0
    labels: dict[str, str | None] = {"stable": stable, "canary": stable}
    label_changes: list[tuple[dict[str, str | None], int, int]] = []
    for seen in rec.timeline(["VirtualService", "DestinationRule", "ReplicaSet"]):
        if seen.kind == "VirtualService":
            weight = canary_weight(seen.obj)
        elif seen.kind == "DestinationRule":
            if subset_labels(seen.obj) != labels:
                labels = subset_labels(seen.obj)
                label_changes.append((labels, weight, available))
        elif seen.name == f"reviews-{canary}":
            available = int((seen.obj.get("status") or {}).get("availableReplicas", 0))
        # No canary traffic unless the canary subset selects the new pods.
        assert weight == 0 or labels["canary"] == canary, (seen, weight, labels)
        # The stable subset moves to the new revision only with all 5 canary pods available.
        assert labels["stable"] == stable or available == 5, (seen, labels, available)

    assert label_changes == [
        # pinned at 0%, before any weight moves
        ({"stable": stable, "canary": canary}, 0, label_changes[0][2]),
        # promotion: 100% on the fully available canary, then both subsets on it
        ({"stable": canary, "canary": canary}, 100, 5),
    ]
    assert cluster.dr()["spec"]["trafficPolicy"] == stored_traffic_policy(cluster)


def test_a_new_revision_mid_rollout_restarts_from_step_one(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    stable = deploy_first(cluster, steps=[{"setWeight": 20}, {"pause": {}}])
    rec = recorder()
    new_revision(cluster, "example.com/reviews:2")
    second = canary_revision(cluster, stable)
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 20)

    new_revision(cluster, "example.com/reviews:3")
    third = canary_revision(cluster, second)
    assert third not in (stable, second)
    status = cluster.wait_status(
        lambda s: (
            s.get("phase") == "Paused"
            and s["weights"]["canary"] == 20
            and subset_labels(cluster.dr())["canary"] == third
        )
    )
    assert status["stableRevision"] == stable  # against the current stable
    assert status["canaryRevision"] == third
    assert status["currentStepIndex"] == 1
    assert status["message"].startswith("paused (CanaryPauseStep) at step 2/2")
    [restarted] = cluster.wait_events("RolloutRestarted")
    assert f"supersedes canary {second}" in restarted["message"]

    # The superseded canary is scaled down (after scaleDownDelaySeconds); stable keeps 5.
    def superseded_down() -> None:
        assert cluster.replica_set(f"reviews-{second}")["spec"]["replicas"] == 0
        assert cluster.replica_set(f"reviews-{stable}")["spec"]["replicas"] == 5
        assert cluster.replica_set(f"reviews-{third}")["spec"]["replicas"] == 1

    eventually(superseded_down, timeout=5)

    rec.catch_up()
    # The traffic was drained from the second revision before the subset moved to the third.
    weight = 0
    for seen in rec.timeline(["VirtualService", "DestinationRule"]):
        if seen.kind == "VirtualService":
            weight = canary_weight(seen.obj)
            assert weight in (0, 20)
        elif subset_labels(seen.obj)["canary"] == third:
            assert weight == 0, "the canary subset moved while it had traffic"
            break
    assert rec.weights() == [0, 20, 0, 20]

    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    assert cluster.status()["stableRevision"] == third
    assert subset_labels(cluster.dr()) == {"stable": third, "canary": third}


def test_template_reverted_to_stable_is_a_fast_rollback(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    steps: Steps = [{"setWeight": 30}, {"pause": {}}, {"setWeight": 60}]
    stable = deploy_first(cluster, steps=steps)
    original = cluster.rollout()["spec"]["template"]
    rec = recorder()
    new_revision(cluster)
    canary = canary_revision(cluster, stable)
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 30)

    cluster.set_template(original)
    eventually(lambda: _weight_is(cluster, 0), timeout=2)
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0
    )
    assert status["stableRevision"] == status["canaryRevision"] == stable
    assert status["currentStepIndex"] == 3  # no steps
    assert status["pauseConditions"] == []
    assert len(cluster.wait_events("FastRollback")) == 1
    assert subset_labels(cluster.dr())["stable"] == stable

    def canary_down() -> None:
        assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 0

    eventually(canary_down, timeout=5)
    rec.catch_up()
    assert rec.weights() == [0, 30, 0]  # straight back: no step was walked


def _weight_is(cluster: Cluster, weight: int) -> None:
    assert canary_weight(cluster.vs()) == weight
