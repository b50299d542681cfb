"""The sandbox's traffic simulator: Istio's routing decisions, without threads or HTTP."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from rollout.sandbox.admission import SandboxAdmission
from rollout.sandbox.istio_metrics import ErrorShare, IstioMetrics, Workload
from rollout.sandbox.resources import Registry
from rollout.sandbox.store import Store
from rollout.sandbox.traffic import (
    HASH_LABEL,
    TEST_USER,
    Snapshot,
    StoreSource,
    TrafficSimulator,
    destination_weights,
    endpoints,
    mirror_destination,
    pick_destination,
    plan_variant,
    select_route,
    serve,
    serve_planned,
    subset_labels,
    workload_of,
)

Obj = dict[str, Any]
NS = "shop"


def rs(
    name: str,
    revision: str,
    *,
    available: int = 2,
    app: str = "web",
    annotations: dict[str, str] | None = None,
    canonical: bool = True,
) -> Obj:
    labels = {"app": app, HASH_LABEL: revision}
    if canonical:
        labels["service.istio.io/canonical-name"] = app
        labels["service.istio.io/canonical-revision"] = revision
    status = {"replicas": available, "availableReplicas": available} if available else {}
    return {
        "metadata": {"name": name, "namespace": NS, "labels": {HASH_LABEL: revision}},
        "spec": {
            "replicas": available,
            "template": {"metadata": {"labels": labels, "annotations": annotations or {}}},
        },
        "status": status,
    }


def service(name: str, selector: dict[str, str]) -> Obj:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"selector": selector}}


def rule(host: str, subsets: dict[str, str]) -> Obj:
    return {
        "metadata": {"name": host, "namespace": NS},
        "spec": {
            "host": host,
            "subsets": [{"name": n, "labels": {HASH_LABEL: h}} for n, h in subsets.items()],
        },
    }


def vs(*routes: Obj, hosts: tuple[str, ...] = ("web",)) -> Obj:
    return {
        "metadata": {"name": "web", "namespace": NS, "uid": "u1"},
        "spec": {"hosts": list(hosts), "http": list(routes)},
    }


def weighted(stable: int, canary: int, host: str = "web") -> Obj:
    return {
        "name": "primary",
        "route": [
            {"destination": {"host": host, "subset": "stable"}, "weight": stable},
            {"destination": {"host": host, "subset": "canary"}, "weight": canary},
        ],
    }


def subset_world(*replicasets: Obj) -> Snapshot:
    return Snapshot.of(
        [service("web", {"app": "web"})],
        [rule("web", {"stable": "aaa", "canary": "bbb"})],
        list(replicasets) or [rs("web-aaa", "aaa"), rs("web-bbb", "bbb")],
    )


def revisions(
    snapshot: Snapshot, virtual_service: Obj, n: int, user_share: float = 0.0
) -> Counter[str]:
    rng = random.Random(1)
    seen: Counter[str] = Counter()
    for _ in range(n):
        headers = TEST_USER if rng.random() < user_share else {}
        for served in serve(snapshot, virtual_service, headers, rng):
            seen[served.workload.revision] += 1
    return seen


# -- matching ----------------------------------------------------------------------------------


def test_first_matching_route_wins_in_order() -> None:
    header = {"name": "h", "match": [{"headers": {"end-user": {"exact": "jason"}}}]}
    catch_all = {"name": "all"}
    later = {"name": "later", "match": [{"headers": {"end-user": {"exact": "jason"}}}]}
    routes = [header, catch_all, later]
    assert select_route(routes, {"end-user": "jason"}) is header
    assert select_route(routes, {}) is catch_all
    assert select_route([later], {}) is None


@pytest.mark.parametrize(
    ("rule_", "value", "expected"),
    [
        ({"exact": "jason"}, "jason", True),
        ({"exact": "jason"}, "jasonx", False),
        ({"prefix": "ja"}, "jason", True),
        ({"prefix": "jo"}, "jason", False),
        ({"regex": "j.*n"}, "jason", True),
        ({"regex": "j.s"}, "jason", False),  # RE2 matches the whole value
    ],
)
def test_header_string_matches(rule_: Obj, value: str, expected: bool) -> None:
    route = {"match": [{"headers": {"end-user": rule_}}]}
    assert (select_route([route], {"end-user": value}) is route) is expected
    assert select_route([route], {}) is None  # header absent


def test_uri_matches_against_root_path_and_any_of_the_match_list() -> None:
    root = {"match": [{"uri": {"exact": "/"}}]}
    api = {"match": [{"uri": {"prefix": "/api"}}]}
    either = {"match": [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/"}}]}
    assert select_route([root], {}) is root
    assert select_route([api], {}) is None
    assert select_route([api, either], {}) is either


def test_conditions_of_one_match_all_hold() -> None:
    both = {"match": [{"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}}]}
    assert select_route([both], {"end-user": "jason"}) is None


# -- weights and mirror ------------------------------------------------------------------------


def test_lone_destination_without_weight_gets_everything() -> None:
    route = {"route": [{"destination": {"host": "web"}}]}
    assert destination_weights(route) == [({"host": "web"}, 100)]
    assert pick_destination(route, random.Random(0)) == {"host": "web"}


def test_zero_weights_send_nothing() -> None:
    assert pick_destination(weighted(0, 0), random.Random(0)) is None


def test_weights_split_requests_within_tolerance() -> None:
    seen = revisions(subset_world(), vs(weighted(80, 20)), 10_000)
    assert sum(seen.values()) == 10_000
    assert seen["bbb"] / 10_000 == pytest.approx(0.2, abs=0.015)


def test_mirror_share_is_served_by_the_mirror_too() -> None:
    route = weighted(100, 0)
    route["mirror"] = {"host": "web", "subset": "canary"}
    route["mirrorPercentage"] = {"value": 30.0}
    seen = revisions(subset_world(), vs(route), 10_000)
    assert seen["aaa"] == 10_000
    assert seen["bbb"] / 10_000 == pytest.approx(0.3, abs=0.015)


def test_mirror_without_percentage_mirrors_everything() -> None:
    route = {"mirror": {"host": "web"}}
    assert mirror_destination(route, random.Random(0)) == {"host": "web"}
    assert mirror_destination({}, random.Random(0)) is None


def test_header_route_sends_test_users_to_the_canary() -> None:
    header = {
        "name": "canary-users",
        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
        "route": [{"destination": {"host": "web", "subset": "canary"}}],
    }
    seen = revisions(subset_world(), vs(header, weighted(100, 0)), 10_000, user_share=0.1)
    assert seen["bbb"] / 10_000 == pytest.approx(0.1, abs=0.015)


# -- endpoints ---------------------------------------------------------------------------------


def test_subset_resolves_through_destination_rule_and_service_selector() -> None:
    other_app = rs("api-bbb", "bbb", app="api")  # same hash, not selected by the Service
    snapshot = subset_world(rs("web-aaa", "aaa"), rs("web-bbb", "bbb"), other_app)
    assert subset_labels(snapshot, NS, "web.shop.svc.cluster.local", "canary") == {
        HASH_LABEL: "bbb"
    }
    found = endpoints(snapshot, NS, {"host": "web", "subset": "canary"})
    assert [r["metadata"]["name"] for r, _ in found] == ["web-bbb"]
    assert endpoints(snapshot, NS, {"host": "web", "subset": "nope"}) == []
    assert endpoints(snapshot, NS, {"host": "missing", "subset": "canary"}) == []


def test_host_without_subset_picks_by_available_replicas() -> None:
    snapshot = subset_world(rs("web-aaa", "aaa", available=3), rs("web-bbb", "bbb", available=1))
    route = {"route": [{"destination": {"host": "web"}}]}
    seen = revisions(snapshot, vs(route), 8_000)
    assert seen["bbb"] / 8_000 == pytest.approx(0.25, abs=0.015)


def test_host_level_split_through_services() -> None:
    snapshot = Snapshot.of(
        [
            service("web-stable", {"app": "web", HASH_LABEL: "aaa"}),
            service("web-canary", {"app": "web", HASH_LABEL: "bbb"}),
        ],
        [],
        [rs("web-aaa", "aaa"), rs("web-bbb", "bbb")],
    )
    route = {
        "route": [
            {"destination": {"host": "web-stable"}, "weight": 70},
            {"destination": {"host": "web-canary.shop.svc.cluster.local"}, "weight": 30},
        ]
    }
    rng = random.Random(3)
    names: Counter[str] = Counter()
    for _ in range(10_000):
        for served in serve(snapshot, vs(route), {}, rng):
            names[served.workload.destination_service or ""] += 1
            assert served.workload.workload == f"web-{served.workload.revision}"
    assert names["web-canary"] / 10_000 == pytest.approx(0.3, abs=0.015)
    assert set(names) == {"web-stable", "web-canary"}


def test_no_available_replicas_records_nothing() -> None:
    snapshot = subset_world(rs("web-aaa", "aaa", available=0), rs("web-bbb", "bbb"))
    assert revisions(snapshot, vs(weighted(100, 0)), 500) == Counter()
    assert sum(revisions(snapshot, vs(weighted(50, 50)), 1_000).values()) == pytest.approx(
        500, abs=60
    )


# -- behaviour ---------------------------------------------------------------------------------


def test_annotations_set_error_share_and_latency() -> None:
    bad = rs(
        "web-bbb",
        "bbb",
        annotations={
            "sandbox.rollout.dev/error-rate": "0.5",
            "sandbox.rollout.dev/latency-ms": "100",
            "sandbox.rollout.dev/latency-p99-ms": "400",
        },
    )
    snapshot = subset_world(rs("web-aaa", "aaa"), bad)
    rng = random.Random(5)
    codes: dict[str, Counter[int]] = {"aaa": Counter(), "bbb": Counter()}
    millis: dict[str, list[float]] = {"aaa": [], "bbb": []}
    for _ in range(10_000):
        for served in serve(snapshot, vs(weighted(50, 50)), {}, rng):
            codes[served.workload.revision][served.code] += 1
            millis[served.workload.revision].append(served.millis)
    assert codes["aaa"][500] == 0
    assert codes["bbb"][500] / codes["bbb"].total() == pytest.approx(0.5, abs=0.03)
    slow = sorted(millis["bbb"])
    assert slow[len(slow) // 2] == pytest.approx(100, rel=0.1)
    assert slow[int(len(slow) * 0.99)] == pytest.approx(400, rel=0.2)
    fast = sorted(millis["aaa"])
    assert fast[len(fast) // 2] == pytest.approx(20, rel=0.1)


def test_workload_names_fall_back_to_app_label_and_hash() -> None:
    plain = rs("web-ccc", "ccc", canonical=False)
    workload = workload_of(plain, "web")
    assert (workload.service, workload.revision, workload.workload) == ("web", "ccc", "web-ccc")
    bare = {"metadata": {"name": "solo", "namespace": NS}, "spec": {}}
    assert workload_of(bare, "solo").service == "solo"


def test_workload_defaults_keep_the_old_metric_labels() -> None:
    metrics = IstioMetrics()
    metrics.record(Workload(NS, "web", "v1"), 200, 5.0)
    sample = metrics.registry.get_sample_value(
        "istio_requests_total",
        {
            "reporter": "destination",
            "source_workload": "loadgen",
            "source_workload_namespace": NS,
            "destination_workload": "web-v1",
            "destination_workload_namespace": NS,
            "destination_service": "web.shop.svc.cluster.local",
            "destination_service_name": "web",
            "destination_service_namespace": NS,
            "destination_canonical_service": "web",
            "destination_canonical_revision": "v1",
            "destination_version": "v1",
            "response_code": "200",
            "request_protocol": "http",
        },
    )
    assert sample == 1.0


# -- the simulator over a store ----------------------------------------------------------------


def test_simulator_steps_at_rps_per_host_from_the_store() -> None:
    registry = Registry()
    store = Store(SandboxAdmission(registry))
    namespaces = registry.lookup("", "v1", "namespaces")
    store.create(namespaces, None, {"metadata": {"name": NS}})
    store.create(registry.lookup("", "v1", "services"), NS, service("web", {"app": "web"}))
    store.create(
        registry.lookup("networking.istio.io", "v1", "destinationrules"),
        NS,
        rule("web", {"stable": "aaa", "canary": "bbb"}),
    )
    replicasets = registry.lookup("apps", "v1", "replicasets")
    for created in (rs("web-aaa", "aaa"), rs("web-bbb", "bbb")):
        body = {k: v for k, v in created.items() if k != "status"}
        template = body["spec"]["template"]
        labels = template["metadata"]["labels"]
        template = {**template, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        body["spec"] = {
            **body["spec"],
            "selector": {"matchLabels": {HASH_LABEL: labels[HASH_LABEL]}},
            "template": template,
        }
        store.create(replicasets, NS, body)
        status = created["status"]

        def with_status(obj: Obj, status: Obj = status) -> Obj:
            return {**obj, "status": status}

        store.mutate(replicasets, NS, created["metadata"]["name"], with_status, "status")
    store.create(
        registry.lookup("networking.istio.io", "v1", "virtualservices"),
        NS,
        {"metadata": {"name": "web"}, "spec": {"hosts": ["web"], "http": [weighted(80, 20)]}},
    )
    metrics = IstioMetrics()
    simulator = TrafficSimulator(StoreSource(store, registry), metrics, rps=100)
    assert simulator.step(0.05) + simulator.step(0.05) + simulator.step(10.0) == 1010
    total = sum(
        s.value
        for family in metrics.registry.collect()
        if family.name == "istio_requests"
        for s in family.samples
        if s.name == "istio_requests_total"
    )
    assert total == 1010


def test_mirrors_list_entries_each_mirror_their_share() -> None:
    from rollout.sandbox.traffic import mirror_destinations

    route = {
        "mirrors": [
            {"destination": {"host": "recorder"}},
            {"destination": {"host": "web", "subset": "canary"}, "percentage": {"value": 25.0}},
        ]
    }
    rng = random.Random(3)
    hosts = Counter(m["host"] for _ in range(4000) for m in mirror_destinations(route, rng))
    assert hosts["recorder"] == 4000
    assert 800 < hosts["web"] < 1200


def test_a_request_path_picks_the_route_by_uri() -> None:
    routes = [
        {"name": "api", "match": [{"uri": {"prefix": "/api"}, "headers": TEST_HEADERS}]},
        {"name": "rest"},
    ]
    assert select_route(routes, TEST_USER, "/api/reviews") == routes[0]
    assert select_route(routes, TEST_USER, "/admin") == routes[1]
    assert select_route(routes, {}, "/api/reviews") == routes[1]


TEST_HEADERS = {"end-user": {"exact": "jason"}}


# -- the error share is exact in every window (issue 12: "0.3 measured as 0.50") ----------------


@pytest.mark.parametrize("rate", [0.0, 0.001, 0.05, 0.3, 0.5, 0.999, 1.0])
def test_error_share_fails_floor_or_ceil_of_any_run_of_requests(rate: float) -> None:
    errors = ErrorShare()
    workload = Workload(NS, "web", "bbb", error_rate=rate)
    failed = [errors.fails(workload) for _ in range(2_000)]
    for n in (1, 7, 40, 80, 333):
        for start in range(0, len(failed) - n, 13):
            count = sum(failed[start : start + n])
            assert math.floor(n * rate) <= count <= math.ceil(n * rate), (n, start, count)
    assert sum(failed) == round(2_000 * rate)


def test_error_share_is_kept_per_revision() -> None:
    errors = ErrorShare()
    bad, good = Workload(NS, "web", "bbb", error_rate=0.3), Workload(NS, "web", "aaa")
    failed = []
    for _ in range(10):  # interleaved: the healthy revision's requests never use bad's share
        assert not errors.fails(good)
        failed.append(errors.fails(bad))
    assert sum(failed) == 3


def test_the_simulator_serves_an_annotated_share_exactly_in_every_window() -> None:
    bad = rs("web-bbb", "bbb", annotations={"sandbox.rollout.dev/error-rate": "0.3"})
    snapshot = subset_world(rs("web-aaa", "aaa"), bad)
    rng, errors = random.Random(5), ErrorShare()
    canary: list[bool] = []
    for _ in range(5_000):  # 80/20: ~1,000 canary requests
        for served in serve(snapshot, vs(weighted(80, 20)), {}, rng, errors=errors):
            if served.workload.revision == "bbb":
                canary.append(served.code == 500)
            else:
                assert served.code == 200
    # the demo's canary window holds 40-80 requests: a coin flip read 0.5 in 1 of 160-7,000
    for n in (40, 80):
        shares = [sum(canary[i : i + n]) / n for i in range(len(canary) - n)]
        assert 0.3 - 1 / n <= min(shares) and max(shares) <= 0.3 + 1 / n, (n, min(shares))


# -- what the API source brings: Pods, and objects the router cannot read -----------------------


def pod(owner_uid: str, *, ready: bool = True, terminating: bool = False, n: int = 0) -> Obj:
    meta: Obj = {
        "name": f"p-{owner_uid}-{n}-{ready}-{terminating}",
        "namespace": NS,
        "ownerReferences": [
            {"kind": "ReplicaSet", "name": "x", "uid": owner_uid, "controller": True}
        ],
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": meta, "status": {"conditions": [condition]}}


def with_uid(replicaset: Obj, uid: str) -> Obj:
    return {**replicaset, "metadata": {**replicaset["metadata"], "uid": uid}}


def test_ready_pods_weigh_a_replicaset_when_pods_are_seen() -> None:
    """1 Ready pod of "aaa" (one not Ready, one terminating) against 3 of "bbb": 1:3, though
    both ReplicaSets still say availableReplicas 2; a ReplicaSet without pods seen keeps its
    availableReplicas."""
    pods = [
        pod("ua"),
        pod("ua", ready=False),
        pod("ua", terminating=True),
        *(pod("ub", n=i) for i in range(3)),
    ]
    snapshot = Snapshot.of(
        [service("web", {"app": "web"})],
        [],
        [with_uid(rs("web-aaa", "aaa"), "ua"), with_uid(rs("web-bbb", "bbb"), "ub")],
        pods,
    )
    assert snapshot.ready_pods == {"ua": 1, "ub": 3}
    assert {r["metadata"]["name"]: n for r, n in endpoints(snapshot, NS, {"host": "web"})} == {
        "web-aaa": 1,
        "web-bbb": 3,
    }
    only_a = Snapshot.of([service("web", {"app": "web"})], [], [with_uid(rs("a", "a"), "z")], [])
    assert [n for _, n in endpoints(only_a, NS, {"host": "web"})] == [2]
    none_ready = Snapshot.of(
        [service("web", {"app": "web"})],
        [],
        [with_uid(rs("web-aaa", "aaa"), "ua")],
        [pod("ua", ready=False)],
    )
    assert endpoints(none_ready, NS, {"host": "web"}) == []


class Fixed:
    """A ``SnapshotSource`` that always shows the same objects."""

    closed = False

    def __init__(self, snapshot: Snapshot, virtual_services: list[Obj]) -> None:
        self.snapshot = snapshot
        self.virtual_services = virtual_services

    def read(self) -> tuple[Snapshot, list[Obj]]:
        return self.snapshot, self.virtual_services


@pytest.mark.parametrize(
    "bad",
    [
        {"metadata": {"name": "bad", "namespace": NS, "uid": "b"}, "spec": {"hosts": ["web"],
         "http": [{"route": [{"destination": {"host": "web"}, "weight": "many"}]}]}},
        {"metadata": {"name": "bad", "namespace": NS, "uid": "b"}, "spec": {"hosts": ["web"],
         "http": [{"route": [{"destination": "web", "weight": 1}, {"weight": 2}]}]}},
        {"metadata": {"name": "bad", "namespace": NS, "uid": "b"}, "spec": "web"},
        {"metadata": "bad"},
        "not an object",
    ],
)  # fmt: skip
def test_an_unroutable_virtual_service_is_skipped_and_the_others_get_traffic(bad: Any) -> None:
    snapshot = Snapshot.of(
        [service("web", {"app": "web"}), {"spec": {}}, {"metadata": None}],
        [rule("web", {"stable": "aaa", "canary": "bbb"}), {"metadata": {"name": 3}}],
        [rs("web-aaa", "aaa"), rs("web-bbb", "bbb"), {"status": {}}],
    )
    metrics = IstioMetrics()
    simulator = TrafficSimulator(Fixed(snapshot, [bad, vs(weighted(80, 20))]), metrics, rps=100)
    assert simulator.step(1.0) == 100
    assert simulator.step(1.0) == 100


def test_a_routing_plan_serves_exactly_what_serve_serves() -> None:
    # The simulator routes from a plan made once per VirtualService version and snapshot; with
    # the same seed it must draw the same requests as ``serve`` (weights, mirrors with shares,
    # header routes, a subset with no serving pods, a host without a Service).
    snapshot = Snapshot.of(
        [service("web", {"app": "web"}), service("shadow", {"app": "web"})],
        [rule("web", {"stable": "aaa", "canary": "bbb", "gone": "ccc"})],
        [rs("web-aaa", "aaa"), rs("web-bbb", "bbb"), rs("web-aaa2", "aaa")],
    )
    routes: list[Obj] = [
        {
            "match": [{"headers": {"end-user": {"exact": "jason"}}}],
            "route": [{"destination": {"host": "web", "subset": "canary"}}],
        },
        {
            "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 60},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 30},
                {"destination": {"host": "web", "subset": "gone"}, "weight": 10},
                {"destination": {"host": "nowhere"}, "weight": 5},
            ],
            "mirror": {"host": "shadow"},
            "mirrorPercentage": {"value": 25.0},
            "mirrors": [
                {"destination": {"host": "web", "subset": "canary"}, "percentage": {"value": 50}}
            ],
        },
    ]
    service_ = vs(*routes)
    for headers in ({}, TEST_USER):
        variant = plan_variant(snapshot, service_, headers)
        assert variant is not None
        by_serve, by_plan = random.Random(3), random.Random(3)
        errors_a, errors_b = ErrorShare(), ErrorShare()
        for _ in range(2000):
            assert serve(snapshot, service_, headers, by_serve, errors=errors_a) == serve_planned(
                variant, by_plan, errors_b
            )
    assert (
        plan_variant(snapshot, vs({"match": [{"uri": {"exact": "/x"}}], "route": []}), {}) is None
    )
    idle = plan_variant(snapshot, vs(weighted(50, 50, host="nowhere")), {})
    assert idle is not None and idle.idle


def test_snapshot_indexes_answer_what_the_scans_answered() -> None:
    services = [service(f"s{i}", {"app": f"a{i % 3}"}) for i in range(9)]
    services.append(service("s1", {"app": "duplicate"}))  # the first of a name wins, as before
    rules = [rule(f"s{i % 4}", {"stable": f"h{i}", "canary": f"k{i}"}) for i in range(8)]
    sets = [rs(f"r{i}", f"h{i % 5}") for i in range(20)]
    snapshot = Snapshot.of(services, rules, sets)
    for i in range(10):
        name = f"s{i}"
        expected = next((s for s in services if s["metadata"]["name"] == name), None)
        assert snapshot.service(NS, name) is expected
        for subset in ("stable", "canary", "none"):
            scanned = None
            for r in rules:
                if r["spec"]["host"] != name:
                    continue
                hit = [e for e in r["spec"]["subsets"] if e["name"] == subset]
                if hit:
                    scanned = dict(hit[0]["labels"])
                    break
            assert subset_labels(snapshot, NS, name, subset) == scanned
            found = endpoints(snapshot, NS, {"host": name, "subset": subset})
            wanted = {**(expected or {}).get("spec", {}).get("selector", {}), **(scanned or {})}
            assert [r for r, _ in found] == (
                [
                    r
                    for r in sets
                    if all(
                        r["spec"]["template"]["metadata"]["labels"].get(k) == v
                        for k, v in wanted.items()
                    )
                ]
                if expected is not None and scanned is not None
                else []
            )
