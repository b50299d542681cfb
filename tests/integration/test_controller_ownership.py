"""The controller owns only what it created (issue 12, sections 4 and 5), on the sandbox.

Header routes and mirrors the controller adds are recorded on the VirtualService and removed
exactly when no longer wanted; what the user wrote is never changed or deleted; after an abort
the canary subset follows stable; a revert of someone else's edit is reported; a header route
stays inside its managed route's match.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter

import pytest

from rollout.domain.revision import HASH_LABEL
from rollout.sandbox.traffic import TEST_USER, Snapshot, serve
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Steps,
    canary_weight,
    condition,
    consistently,
    destination_rule,
    http_route,
    pod_template,
    rollout_manifest,
    route_names,
    service,
    subset_labels,
    virtual_service,
    without_weights,
)
from tests.integration.sandbox_helpers import Obj, eventually

pytestmark = pytest.mark.integration

JASON = [{"headers": {"end-user": {"exact": "jason"}}}]
RECORDER = {
    "destination": {"host": "recorder", "port": {"number": 80}},
    "percentage": {"value": 5.0},
}


def header_step(name: str) -> Obj:
    return {"setHeaderRoute": {"name": name, "match": JASON}}


def paused(cluster: Cluster, weight: int, revision: str | None = None) -> Obj:
    return cluster.wait_status(
        lambda s: (
            s.get("phase") == "Paused"
            and s["weights"]["canary"] == weight
            and (revision is None or s.get("canaryRevision") == revision)
        )
    )


def new_revision(cluster: Cluster, image: str, steps: Steps | None = None) -> str:
    """Change the template (and the steps, if given); the new canary revision."""
    before = cluster.status().get("canaryRevision")
    spec: Obj = {"template": pod_template("reviews", image)}
    if steps is not None:
        spec["strategy"] = {"canary": {"steps": steps}}
    cluster.patch_rollout({"spec": spec})
    status = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, before))
    revision: str = status["canaryRevision"]
    return revision


def record(vs: Obj, key: str) -> Obj:
    annotations = vs["metadata"].get("annotations") or {}
    found: Obj = json.loads(annotations.get("rollout.dev/managed-routes", "{}")).get(key, {})
    return found


def healthy(cluster: Cluster, revision: str) -> None:
    cluster.wait_status(
        lambda s: (
            s.get("phase") == "Healthy"
            and s.get("stableRevision") == revision
            and s["weights"]["canary"] == 0
        )
    )


def start(cluster: Cluster, steps: Steps, vs: Obj | None = None) -> tuple[Obj, str]:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", vs or virtual_service())
    original = without_weights(cluster.vs())
    cluster.create_rollout(rollout_manifest(steps=steps))
    stable: str = cluster.wait_healthy()["stableRevision"]
    return original, stable


# -- section 4: header routes the controller created, and only those ---------------------------


def test_a_renamed_then_removed_header_step_leaves_no_route_behind(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    """The issue's example: v2 paused with set-header-1; v3 renames the step; v4 has none."""
    steps: Steps = [header_step("set-header-1"), {"setWeight": 20}, {"pause": {}}]
    original, _ = start(cluster, steps)
    v2 = new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 20, v2)
    assert route_names(cluster.vs()) == ["admin", "set-header-1", "primary", "fallback"]

    renamed: Steps = [header_step("set-header-2"), {"setWeight": 20}, {"pause": {}}]
    v3 = new_revision(cluster, "example.com/reviews:3", renamed)
    paused(cluster, 20, v3)
    assert route_names(cluster.vs()) == ["admin", "set-header-2", "primary", "fallback"]

    v4 = new_revision(cluster, "example.com/reviews:4", [{"setWeight": 20}, {"pause": {}}])
    paused(cluster, 20, v4)
    vs = cluster.vs()
    assert route_names(vs) == ["admin", "primary", "fallback"]
    assert "headerRoutes" not in record(vs, f"{cluster.namespace}/reviews")
    # The canary subset now selects v4, and no route sends jason anywhere else.
    assert subset_labels(cluster.dr())["canary"] == v4

    cluster.promote()
    healthy(cluster, v4)
    assert without_weights(cluster.vs()) == original


def test_fast_rollback_and_abort_remove_the_header_routes_of_the_previous_steps(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    original, v1 = start(cluster, [{"setWeight": 20}, {"pause": {}}])
    with_header: Steps = [header_step("testers"), {"setWeight": 20}, {"pause": {}}]
    v2 = new_revision(cluster, "example.com/reviews:2", with_header)
    paused(cluster, 20, v2)
    assert "testers" in route_names(cluster.vs())

    # Fast rollback: the template and the steps back to v1's.
    cluster.patch_rollout(
        {
            "spec": {
                "template": pod_template("reviews", "example.com/reviews:1"),
                "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
            }
        }
    )
    cluster.wait_status(lambda s: s.get("canaryRevision") == v1 and s["weights"]["canary"] == 0)
    eventually(lambda: _same(without_weights(cluster.vs()), original), timeout=3)

    # Abort, after the header step was removed by a new revision mid-rollout.
    v3 = new_revision(cluster, "example.com/reviews:3", with_header)
    paused(cluster, 20, v3)
    assert "testers" in route_names(cluster.vs())
    new_revision(cluster, "example.com/reviews:4", [{"setWeight": 20}, {"pause": {}}])
    cluster.abort()
    cluster.wait_status(lambda s: s.get("phase") == "Degraded" and s["weights"]["canary"] == 0)
    eventually(lambda: _same(without_weights(cluster.vs()), original), timeout=3)


def _same(a: object, b: object) -> None:
    assert a == b


def test_a_user_route_named_like_a_header_step_is_never_touched(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    vs = virtual_service()
    users = {
        "name": "testers",
        "match": [{"headers": {"x-team": {"exact": "qa"}}}],
        "route": [{"destination": {"host": "qa-env"}}],
    }
    vs["spec"]["http"].insert(1, users)
    _, stable = start(cluster, [{"setWeight": 20}, {"pause": {}}], vs)
    before = cluster.vs()

    cluster.patch_rollout(
        {
            "spec": {
                "template": pod_template("reviews", "example.com/reviews:2"),
                "strategy": {"canary": {"steps": [header_step("testers"), {"setWeight": 20}]}},
            }
        }
    )
    status = cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    expected = (
        f"route testers already exists in VirtualService {cluster.namespace}/reviews and was "
        "not created by this Rollout"
    )
    assert condition(status, "InvalidSpec")["message"] == expected
    cluster.wait_events("InvalidSpec")

    def untouched() -> None:
        vs = cluster.vs()
        assert vs["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert http_route(vs, "testers") == users

    consistently(untouched, 0.5)


# -- section 4: mirrors ------------------------------------------------------------------------


def test_a_users_mirrors_entry_survives_a_set_mirror_step_and_promotion(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    vs = virtual_service()
    http_route(vs)["mirrors"] = [copy.deepcopy(RECORDER)]
    steps: Steps = [{"setMirror": {"percent": 50}}, {"setWeight": 20}, {"pause": {}}]
    original, stable = start(cluster, steps, vs)
    new_revision(cluster, "example.com/reviews:2")
    status = paused(cluster, 20)
    assert status["weights"]["mirror"] == 50.0
    primary = http_route(cluster.vs())
    assert "mirror" not in primary and "mirrorPercentage" not in primary
    assert primary["mirrors"] == [
        RECORDER,
        {"destination": {"host": "reviews", "subset": "canary"}, "percentage": {"value": 50.0}},
    ]

    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    assert http_route(cluster.vs())["mirrors"] == [RECORDER]
    assert without_weights(cluster.vs()) == original


@pytest.mark.parametrize("strategy", ["setMirror", "mirror"])
def test_a_users_own_mirror_is_refused_and_nothing_changes(
    cluster: Cluster, controller: ControllerHandle, strategy: str
) -> None:
    vs = virtual_service()
    http_route(vs)["mirror"] = {"host": "recorder"}
    http_route(vs)["mirrorPercentage"] = {"value": 5.0}
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", vs)
    before = cluster.vs()
    manifest = rollout_manifest(steps=[{"setMirror": {"percent": 50}}, {"pause": {}}])
    if strategy == "mirror":
        manifest["spec"]["strategy"] = {"mirror": {"percent": 50, "duration": "1m"}}
        manifest["spec"]["analysis"] = {
            "interval": "10s",
            "prometheus": {"address": "http://127.0.0.1:1"},
            "checks": [{"name": "error-rate", "errorRate": {"max": 0.01}}],
        }
    cluster.create_rollout(manifest)
    status = cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    message = condition(status, "InvalidSpec")["message"]
    assert message.startswith(
        f"route primary of VirtualService {cluster.namespace}/reviews already has a mirror "
        "this Rollout did not create: write it as mirrors: ["
    ), message
    warnings = cluster.wait_events("InvalidSpec")
    assert warnings[0]["type"] == "Warning"

    def untouched() -> None:
        vs = cluster.vs()
        assert vs["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    consistently(untouched, 0.5)


# -- section 4: abort, and reverts ---------------------------------------------------------------


def test_after_abort_the_canary_subset_follows_stable_and_retry_repins_it(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    _, stable = start(cluster, [header_step("testers"), {"setWeight": 20}, {"pause": {}}])
    canary = new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 20)
    assert subset_labels(cluster.dr()) == {"stable": stable, "canary": canary}

    cluster.abort()
    cluster.wait_status(lambda s: s.get("phase") == "Degraded")

    def follows_stable() -> None:
        assert subset_labels(cluster.dr()) == {"stable": stable, "canary": stable}
        assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 0

    eventually(follows_stable, timeout=5)
    assert route_names(cluster.vs()) == ["admin", "primary", "fallback"]

    cluster.retry()
    paused(cluster, 20)
    assert subset_labels(cluster.dr()) == {"stable": stable, "canary": canary}
    assert "testers" in route_names(cluster.vs())


def test_an_edit_of_the_managed_weights_is_reverted_with_one_event(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    start(cluster, [{"setWeight": 20}, {"pause": {}}])
    new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 20)

    edited = cluster.vs()
    for entry in http_route(edited)["route"]:
        entry["weight"] = 50
    cluster.replace_vs(edited)
    eventually(lambda: _weight_is(cluster, 20), timeout=3)
    events = cluster.wait_events("RouteReverted")
    where = f"VirtualService {cluster.namespace}/reviews"
    assert [(e["type"], e["message"]) for e in events] == [
        (
            "Normal",
            f"reverted route primary of {where}: weights stable/canary 50/50 -> 80/20 "
            "(edited outside the controller)",
        )
    ]
    consistently(lambda: _weight_is(cluster, 20), 0.5)
    assert len(cluster.wait_events("RouteReverted")) == 1


def _weight_is(cluster: Cluster, weight: int) -> None:
    assert canary_weight(cluster.vs()) == weight


def test_a_deleted_header_route_and_a_relabelled_subset_are_restored_and_reported(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    start(cluster, [header_step("testers"), {"setWeight": 20}, {"pause": {}}])
    canary = new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 20)
    expected_testers = http_route(cluster.vs(), "testers")

    edited = cluster.vs()
    edited["spec"]["http"] = [r for r in edited["spec"]["http"] if r.get("name") != "testers"]
    cluster.replace_vs(edited)
    eventually(lambda: _same(http_route(cluster.vs(), "testers"), expected_testers), timeout=3)
    events = cluster.wait_events("RouteReverted")
    assert events[0]["message"] == (
        f"reverted header route testers of VirtualService {cluster.namespace}/reviews "
        "(deleted) (edited outside the controller)"
    )

    dr = cluster.dr()
    for subset in dr["spec"]["subsets"]:
        if subset["name"] == "canary":
            subset["labels"][HASH_LABEL] = "someone-else"
    cluster.custom.replace_namespaced_custom_object(
        "networking.istio.io", "v1beta1", cluster.namespace, "destinationrules", "reviews", dr
    )
    eventually(lambda: _same(subset_labels(cluster.dr())["canary"], canary), timeout=3)
    events = cluster.wait_events("RouteReverted", 2)
    assert events[1]["message"] == (
        f"reverted canary subset canary of DestinationRule {cluster.namespace}/reviews: "
        f"revision someone-else -> {canary} (edited outside the controller)"
    )


def _users_mirror(vs: Obj) -> None:
    http_route(vs)["mirror"] = {"host": "recorder"}


def _conflicting_match(vs: Obj) -> None:
    http_route(vs)["match"] = [{"headers": {"end-user": {"exact": "bob"}}}]


def _record_deleted(vs: Obj) -> None:
    del vs["metadata"]["annotations"]["rollout.dev/managed-routes"]


@pytest.mark.parametrize(
    "edit",
    [_users_mirror, _conflicting_match, _record_deleted],
    ids=["users-mirror", "conflicting-match", "record-deleted"],
)
def test_an_edit_that_makes_the_routing_refuse_drains_the_canary(
    cluster: Cluster, controller: ControllerHandle, edit: object
) -> None:
    """Mid-rollout, someone else's edit makes the steps unroutable. Before: InvalidSpec and
    "change nothing": the canary kept 20% and its header route, unmeasured, and an abort
    could not move them (the router refused every read)."""
    cluster.create_service(service("reviews"))
    steps: Steps = [
        header_step("testers"),
        {"setWeight": 20},
        {"pause": {}},
        {"setMirror": {"percent": 10}},
        {"pause": {}},
    ]
    _, stable = start(cluster, steps)
    canary = new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 20, canary)
    vs = cluster.vs()
    assert callable(edit)
    edit(vs)
    cluster.replace_vs(vs)

    status = cluster.wait_status(
        lambda s: s.get("phase") == "Degraded" and s["weights"]["canary"] == 0
    )
    assert condition(status, "InvalidSpec")["status"] == "True"
    drained = cluster.wait_events("TrafficDrained")
    assert drained[0]["type"] == "Warning"
    assert subset_labels(cluster.dr())["canary"] == stable

    def nothing_reaches_the_canary() -> None:
        snapshot = _snapshot(cluster)
        rng = random.Random(1)
        vs = cluster.vs()
        for headers in (TEST_USER, {}):
            for _ in range(200):
                for s in serve(snapshot, vs, headers, rng, "/"):
                    assert s.workload.revision == stable

    eventually(nothing_reaches_the_canary, timeout=3)


# -- section 5: a header route stays inside its managed route ----------------------------------


def scoped_virtual_service(matches: list[Obj]) -> Obj:
    """The issue's example: ``primary`` serves /api/reviews (rewritten to /, 2 s timeout), a
    later route everything else."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": {
            "hosts": ["reviews"],
            "http": [
                {
                    "name": "primary",
                    "match": matches,
                    "rewrite": {"uri": "/"},
                    "timeout": "2s",
                    "route": [
                        {"destination": {"host": "reviews", "subset": "stable"}, "weight": 100},
                        {"destination": {"host": "reviews", "subset": "canary"}, "weight": 0},
                    ],
                },
                {
                    "name": "rest",
                    "route": [{"destination": {"host": "reviews", "subset": "stable"}}],
                },
            ],
        },
    }


API = {"uri": {"prefix": "/api/reviews"}}
V2 = {"uri": {"prefix": "/v2/reviews"}, "headers": {"x-region": {"exact": "eu"}}}


@pytest.mark.parametrize("matches", [[API], [API, V2]], ids=["one-match", "two-matches"])
def test_a_header_route_keeps_the_managed_routes_match_and_settings(
    cluster: Cluster, controller: ControllerHandle, matches: list[Obj]
) -> None:
    cluster.create_service(service("reviews"))
    steps: Steps = [
        {"setHeaderRoute": {"name": "testers", "match": JASON}},
        {"setWeight": 10},
        {"pause": {}},
    ]
    original, stable = start(cluster, steps, scoped_virtual_service(matches))
    canary = new_revision(cluster, "example.com/reviews:2")
    paused(cluster, 10)
    vs = cluster.vs()
    assert route_names(vs) == ["testers", "primary", "rest"]
    assert http_route(vs, "testers") == {
        "name": "testers",
        "match": [
            {**m, "headers": {**m.get("headers", {}), **JASON[0]["headers"]}} for m in matches
        ],
        "rewrite": {"uri": "/"},
        "timeout": "2s",
        "route": [{"destination": {"host": "reviews", "subset": "canary"}, "weight": 100}],
    }

    # Where the simulator sends testers' requests: only those the managed route serves reach
    # the canary.
    def revisions(uri: str, headers: dict[str, str]) -> Counter[str]:
        snapshot = _snapshot(cluster)
        rng = random.Random(1)
        served = Counter[str]()
        for _ in range(200):
            for s in serve(snapshot, cluster.vs(), headers, rng, uri):
                served[s.workload.revision] += 1
        return served

    assert set(revisions("/api/reviews/1", TEST_USER)) == {canary}
    assert set(revisions("/", TEST_USER)) == {stable}
    assert set(revisions("/admin", TEST_USER)) == {stable}
    if len(matches) == 2:
        both = {**TEST_USER, "x-region": "eu"}
        assert set(revisions("/v2/reviews", both)) == {canary}
        assert set(revisions("/v2/reviews", TEST_USER)) == {stable}  # not eu: not primary's
    others = revisions("/api/reviews/1", {})
    assert set(others) <= {stable, canary} and others[stable] > others[canary]

    cluster.promote()
    healthy(cluster, canary)
    assert without_weights(cluster.vs()) == original


def _snapshot(cluster: Cluster) -> Snapshot:
    ns = cluster.namespace
    raw = cluster.core.list_namespaced_service(ns, _preload_content=False)
    services: list[Obj] = json.loads(raw.data)["items"]
    for svc in services:
        svc["metadata"].setdefault("namespace", ns)
    rules = cluster.custom.list_namespaced_custom_object(
        "networking.istio.io", "v1beta1", ns, "destinationrules"
    )["items"]
    return Snapshot.of(services, rules, list(cluster.replica_sets().values()))
