"""The controller against the sandbox: host-level split, several VirtualServices, header routes
and mirroring, and routing objects that do not fit the Rollout."""

from __future__ import annotations

import copy
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
    host_routing,
    http_route,
    mirror_of,
    pod_template,
    rollout_manifest,
    route_names,
    service,
    subset_routing,
    virtual_service,
    without_weights,
)
from tests.integration.sandbox_helpers import core_v1, eventually

pytestmark = pytest.mark.integration


def paused(cluster: Cluster, weight: int) -> dict[str, object]:
    return cluster.wait_status(
        lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == weight
    )


def update(cluster: Cluster, stable: str, image: str = "example.com/reviews:2") -> str:
    cluster.set_template(pod_template("reviews", image))
    status = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, stable))
    canary: str = status["canaryRevision"]
    return canary


def test_host_level_split_pins_service_selectors(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    cluster.create_service(service("reviews-stable"))
    cluster.create_service(service("reviews-canary"))
    fqdn = f"reviews-canary.{cluster.namespace}.svc.cluster.local"
    cluster.create_istio(
        "virtualservices",
        virtual_service(stable={"host": "reviews-stable"}, canary={"host": fqdn}),
    )
    created = cluster.vs()
    cluster.create_rollout(
        rollout_manifest(steps=[{"setWeight": 50}, {"pause": {}}], routing=host_routing())
    )
    stable: str = cluster.wait_healthy()["stableRevision"]
    assert cluster.service_selector("reviews-stable") == {"app": "reviews", HASH_LABEL: stable}
    assert cluster.service_selector("reviews-canary") == {"app": "reviews", HASH_LABEL: stable}
    rec = recorder()

    canary = update(cluster, stable)
    paused(cluster, 50)
    vs = cluster.vs()
    assert {e["destination"]["host"]: e["weight"] for e in http_route(vs)["route"]} == {
        "reviews-stable": 50,
        fqdn: 50,
    }
    assert cluster.service_selector("reviews-stable") == {"app": "reviews", HASH_LABEL: stable}
    assert cluster.service_selector("reviews-canary") == {"app": "reviews", HASH_LABEL: canary}

    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    assert cluster.service_selector("reviews-stable") == {"app": "reviews", HASH_LABEL: canary}
    assert cluster.service_selector("reviews-canary") == {"app": "reviews", HASH_LABEL: canary}
    assert without_weights(cluster.vs()) == without_weights(created)
    ports = core_v1(cluster.api_client).read_namespaced_service("reviews-stable", cluster.namespace)
    assert ports.spec.ports[0].port == 9080  # the rest of the Service is untouched

    rec.catch_up()
    assert rec.weights() == [0, 50, 100, 0]
    # No canary traffic while the canary Service selected anything but the new pods.
    selector: dict[str, str] = {}
    weight = 0
    for seen in rec.timeline(["Service", "VirtualService"]):
        if seen.kind == "Service" and seen.name == "reviews-canary":
            selector = seen.obj["spec"]["selector"]
        elif seen.kind == "VirtualService":
            weight = canary_weight(seen.obj)
        assert weight == 0 or selector.get(HASH_LABEL) == canary, seen


def test_two_virtual_services_move_together(
    cluster: Cluster,
    controller: ControllerHandle,
    recorder: Callable[..., Recorder],
) -> None:
    gateway_ns = f"{cluster.namespace}-gw"
    core_v1(cluster.api_client).create_namespace({"metadata": {"name": gateway_ns}})
    mesh = virtual_service()
    gateway = virtual_service("reviews-gateway", host="reviews.example.com")
    for route in gateway["spec"]["http"]:  # the gateway VS routes to the mesh hosts
        for entry in route["route"]:
            if entry["destination"].get("subset"):
                entry["destination"]["host"] = f"reviews.{cluster.namespace}.svc.cluster.local"
    gateway["spec"]["gateways"] = ["istio-system/public"]
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", mesh)
    created_gateway = cluster.create_istio("virtualservices", gateway, namespace=gateway_ns)
    refs = [
        {"name": "reviews", "routes": ["primary"]},
        {"name": f"reviews-gateway.{gateway_ns}", "routes": ["primary"]},
    ]
    steps: Steps = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}, {"pause": {}}]
    cluster.create_rollout(rollout_manifest(steps=steps, routing=subset_routing(vs=refs)))
    stable: str = cluster.wait_healthy()["stableRevision"]
    rec = recorder(gateway_ns)

    update(cluster, stable)
    paused(cluster, 25)
    assert canary_weight(cluster.vs("reviews-gateway", gateway_ns)) == 25
    cluster.promote()
    paused(cluster, 75)
    assert canary_weight(cluster.vs("reviews-gateway", gateway_ns)) == 75
    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)

    rec.catch_up()
    assert rec.weights() == [0, 25, 75, 100, 0]
    assert rec.weights("reviews-gateway", gateway_ns) == [0, 25, 75, 100, 0]
    # Each VS moved once per step: the two writes of a step are next to each other.
    versions = rec.timeline(["VirtualService"])
    moves = [(s.name, canary_weight(s.obj)) for s in versions]
    assert moves[:2] == [("reviews", 0), ("reviews-gateway", 0)] or moves[:2] == [
        ("reviews-gateway", 0),
        ("reviews", 0),
    ]
    for i in range(2, len(moves), 2):
        assert moves[i][1] == moves[i + 1][1], moves
    assert without_weights(cluster.vs("reviews-gateway", gateway_ns)) == without_weights(
        created_gateway
    )


HEADER_STEP = {
    "setHeaderRoute": {
        "name": "testers",
        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
    }
}
MIRROR_AND_HEADER_STEPS: Steps = [
    HEADER_STEP,
    {"setMirror": {"percent": 50}},
    {"setWeight": 20},
    {"pause": {}},
]


def check_header_and_mirror(cluster: Cluster) -> None:
    vs = cluster.vs()
    assert route_names(vs) == ["admin", "testers", "primary", "fallback"]
    testers = http_route(vs, "testers")
    # The managed route's match (none) and the header match; its other fields, kept.
    primary = {k: v for k, v in http_route(vs).items() if k not in ("mirror", "mirrorPercentage")}
    assert testers == {
        **primary,
        "name": "testers",
        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
        "route": [{"destination": {"host": "reviews", "subset": "canary"}, "weight": 100}],
    }
    assert mirror_of(vs) == 50.0
    assert http_route(vs)["mirror"] == {"host": "reviews", "subset": "canary"}
    assert canary_weight(vs) == 20


def test_header_route_and_mirror_come_and_go(
    cluster: Cluster, controller: ControllerHandle, recorder: Callable[..., Recorder]
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    original = without_weights(cluster.vs())
    cluster.create_rollout(rollout_manifest(steps=MIRROR_AND_HEADER_STEPS))
    stable: str = cluster.wait_healthy()["stableRevision"]
    rec = recorder()

    canary = update(cluster, stable)
    status = paused(cluster, 20)
    assert status["weights"] == {"stable": 80, "canary": 20, "mirror": 50.0}
    check_header_and_mirror(cluster)
    # ceil(5 x max(20%, 50% mirrored)) = 3 canary replicas
    assert cluster.replica_set(f"reviews-{canary}")["spec"]["replicas"] == 3

    # The steps appeared one at a time, in order: header route, mirror, weight.
    def shape(vs: dict[str, object]) -> tuple[bool, float | None, int]:
        return ("testers" in route_names(vs), mirror_of(vs), canary_weight(vs))

    rec.catch_up()
    assert rec.states("VirtualService", "reviews", shape) == [
        (False, None, 0),
        (True, None, 0),
        (True, 50.0, 0),
        (True, 50.0, 20),
    ]

    # Promotion removes them: the VS is back to what it was, but for the weights.
    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Healthy" and s["weights"]["canary"] == 0)
    vs = cluster.vs()
    assert route_names(vs) == ["admin", "primary", "fallback"]
    assert mirror_of(vs) is None
    assert without_weights(vs) == original

    # And so does an abort.
    update(cluster, canary, "example.com/reviews:3")
    paused(cluster, 20)
    check_header_and_mirror(cluster)
    cluster.abort()

    def restored() -> None:
        vs = cluster.vs()
        assert route_names(vs) == ["admin", "primary", "fallback"]
        assert mirror_of(vs) is None
        assert canary_weight(vs) == 0

    eventually(restored, timeout=2)
    cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    assert without_weights(cluster.vs()) == original


def test_a_route_that_does_not_exist_is_invalid_and_changes_nothing(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    vs = cluster.vs()
    cluster.create_rollout(
        rollout_manifest(steps=[{"setWeight": 10}], routing=subset_routing(routes=["nope"]))
    )
    status = cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    where = f"VirtualService {cluster.namespace}/reviews"
    expected = f"{where} has no http route named nope (routes: admin, primary, fallback)"
    invalid = condition(status, "InvalidSpec")
    assert invalid["status"] == "True" and invalid["message"] == expected
    assert condition(status, "Progressing")["status"] == "False"
    assert status["message"] == f"InvalidSpec: {expected}"

    def one_warning() -> None:
        warnings = [e for e in cluster.events() if e["reason"] == "InvalidSpec"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
        assert warnings[0]["message"] == expected

    eventually(one_warning, timeout=2)

    def untouched() -> None:
        assert cluster.vs()["metadata"]["resourceVersion"] == vs["metadata"]["resourceVersion"]
        assert cluster.dr()["metadata"]["generation"] == 1
        assert cluster.replica_sets() == {}  # nothing deployed either

    consistently(untouched, 0.5)
    one_warning()  # still one: the problem is reported when it first appears


def test_a_route_without_the_canary_destination_is_invalid(
    cluster: Cluster, controller: ControllerHandle
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 10}, {"pause": {}}]))
    stable: str = cluster.wait_healthy()["stableRevision"]

    # Someone drops the canary destination from the managed route.
    broken = cluster.vs()
    primary = http_route(broken)
    primary["route"] = [{"destination": {"host": "reviews", "subset": "stable"}, "weight": 100}]
    broken = cluster.replace_vs(broken)
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    status = cluster.wait_status(lambda s: s.get("phase") == "Degraded")
    where = f"VirtualService {cluster.namespace}/reviews"
    expected = f"route primary of {where} has no canary destination (subset canary)"
    invalid = condition(status, "InvalidSpec")
    assert invalid["status"] == "True" and invalid["message"] == expected
    eventually(lambda: _warned(cluster, expected), timeout=2)

    def untouched() -> None:
        assert cluster.vs()["metadata"]["resourceVersion"] == broken["metadata"]["resourceVersion"]
        assert set(cluster.replica_sets()) == {f"reviews-{stable}"}

    consistently(untouched, 0.5)

    # Repaired: the controller carries on from where it was.
    fixed = copy.deepcopy(cluster.vs())
    http_route(fixed)["route"].append(
        {"destination": {"host": "reviews", "subset": "canary"}, "weight": 0}
    )
    cluster.replace_vs(fixed)
    status = paused(cluster, 10)
    assert condition(status, "InvalidSpec")["status"] == "False"


def _warned(cluster: Cluster, message: str) -> None:
    warnings = [e for e in cluster.events() if e["reason"] == "InvalidSpec"]
    assert [w["message"] for w in warnings] == [message]
    assert warnings[0]["type"] == "Warning"
