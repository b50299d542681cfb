"""The Istio router's pure route building: ownership, mirrors, header routes inside their route."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rollout.api.strategy import SetHeaderRoute
from rollout.api.traffic import IstioTrafficRouting, VirtualServiceRef
from rollout.domain.observed import RouteEdit, RouteState, reverted_message
from rollout.routers.base import RouteConfigError
from rollout.routers.istio import (
    MANAGED_ROUTES,
    combine_matches,
    desired_http,
    header_route,
    read_virtual_service,
)

Obj = dict[str, Any]
KEY = "shop/reviews"
ISTIO = IstioTrafficRouting.model_validate(
    {
        "virtualServices": [{"name": "reviews", "routes": ["primary"]}],
        "destinationRule": {"name": "reviews", "stableSubset": "stable", "canarySubset": "canary"},
    }
)
STABLE = {"host": "reviews", "subset": "stable"}
CANARY = {"host": "reviews", "subset": "canary"}
JASON = SetHeaderRoute.model_validate(
    {"name": "testers", "match": [{"headers": {"end-user": {"exact": "jason"}}}]}
)
TWO = SetHeaderRoute.model_validate(
    {
        "name": "testers",
        "match": [
            {"headers": {"end-user": {"exact": "jason"}}},
            {"headers": {"x-beta": {"exact": "1"}}},
        ],
    }
)


def managed(name: str = "primary", **extra: Any) -> Obj:
    return {
        "name": name,
        **extra,
        "route": [
            {"destination": dict(STABLE), "weight": 100},
            {"destination": dict(CANARY), "weight": 0},
        ],
    }


def vs(*routes: Obj, annotations: Obj | None = None) -> Obj:
    meta: Obj = {"name": "reviews", "namespace": "shop"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"http": list(routes)}}


def ref(*routes: str) -> VirtualServiceRef:
    return VirtualServiceRef(name="reviews", routes=list(routes) or ["primary"])


def applied(v: Obj, state: RouteState, *routes: str) -> Obj:
    """``v`` as the router writes it for ``state``: routes and annotation."""
    http, record = desired_http(v, ref(*routes), ISTIO, state, KEY)
    out = copy.deepcopy(v)
    out["spec"]["http"] = http
    out["metadata"]["annotations"] = {MANAGED_ROUTES: json.dumps({KEY: record})}
    return out


REST = {"name": "rest", "route": [{"destination": dict(STABLE)}]}


# -- combine_matches ----------------------------------------------------------------------------


def test_matches_combine_as_a_cross_product() -> None:
    api = {"uri": {"prefix": "/api"}}
    v2 = {"uri": {"prefix": "/v2"}, "ignoreUriCase": True}
    assert combine_matches([api, v2], TWO, "here") == [
        {"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}},
        {"uri": {"prefix": "/api"}, "headers": {"x-beta": {"exact": "1"}}},
        {
            "uri": {"prefix": "/v2"},
            "ignoreUriCase": True,
            "headers": {"end-user": {"exact": "jason"}},
        },
        {"uri": {"prefix": "/v2"}, "ignoreUriCase": True, "headers": {"x-beta": {"exact": "1"}}},
    ]


def test_without_a_route_match_the_steps_match_is_used() -> None:
    assert combine_matches(None, JASON, "here") == [{"headers": {"end-user": {"exact": "jason"}}}]
    assert combine_matches([], JASON, "here") == [{"headers": {"end-user": {"exact": "jason"}}}]


def test_headers_of_both_sides_are_anded() -> None:
    region = {"headers": {"x-region": {"exact": "eu"}}}
    assert combine_matches([region], JASON, "here") == [
        {"headers": {"x-region": {"exact": "eu"}, "end-user": {"exact": "jason"}}}
    ]
    same = {"headers": {"End-User": {"exact": "jason"}}}
    assert combine_matches([same], JASON, "here") == [same]


def test_a_header_both_sides_match_differently_cannot_be_combined() -> None:
    other = {"headers": {"end-user": {"prefix": "j"}}}
    with pytest.raises(RouteConfigError, match="header end-user is also matched by here"):
        combine_matches([other], JASON, "here")


# -- header_route ---------------------------------------------------------------------------------


def test_a_header_route_keeps_everything_but_name_match_destinations_and_mirrors() -> None:
    route = managed(
        match=[{"uri": {"prefix": "/api/reviews"}}],
        rewrite={"uri": "/"},
        timeout="2s",
        retries={"attempts": 3},
        corsPolicy={"allowOrigins": [{"exact": "https://x"}]},
        headers={"request": {"set": {"x": "1"}}},
        fault={"abort": {"httpStatus": 503}},
        mirror={"host": "recorder"},
        mirrorPercentage={"value": 5},
        mirrors=[{"destination": {"host": "r2"}}],
    )
    route["x-custom"] = {"a": 1}
    built = header_route(route, JASON, "testers", {"destination": CANARY, "weight": 0}, "here")
    assert built == {
        "name": "testers",
        "match": [{"uri": {"prefix": "/api/reviews"}, "headers": {"end-user": {"exact": "jason"}}}],
        "rewrite": {"uri": "/"},
        "timeout": "2s",
        "retries": {"attempts": 3},
        "corsPolicy": {"allowOrigins": [{"exact": "https://x"}]},
        "headers": {"request": {"set": {"x": "1"}}},
        "fault": {"abort": {"httpStatus": 503}},
        "x-custom": {"a": 1},
        "route": [{"destination": CANARY, "weight": 100}],
    }


# -- desired_http: placement, naming, ownership ---------------------------------------------------


def test_header_routes_go_just_before_each_managed_route_named_per_route() -> None:
    admin = {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}], "route": []}
    first = managed("primary", match=[{"uri": {"prefix": "/a"}}])
    second = managed("secondary", match=[{"uri": {"prefix": "/b"}}])
    v = vs(first, admin, second, REST)
    http, record = desired_http(
        v, ref("primary", "secondary"), ISTIO, RouteState("s", "c", 10, 0, (JASON,)), KEY
    )
    assert [r["name"] for r in http] == [
        "testers-primary",
        "primary",
        "admin",
        "testers-secondary",
        "secondary",
        "rest",
    ]
    assert http[3]["match"] == [
        {"uri": {"prefix": "/b"}, "headers": {"end-user": {"exact": "jason"}}}
    ]
    assert record["weights"] == {"primary": 10, "secondary": 10}
    assert [(e["step"], sorted(e["routes"])) for e in record["headerRoutes"]] == [
        ("testers", ["testers-primary", "testers-secondary"])
    ]


def test_only_owned_routes_are_removed() -> None:
    v = applied(
        vs({"name": "qa", "route": []}, managed(), REST), RouteState("s", "c", 20, 0, (JASON,))
    )
    assert [r["name"] for r in v["spec"]["http"]] == ["qa", "testers", "primary", "rest"]
    # A renamed step: the old route goes, the new one comes; the user's stay.
    renamed = JASON.model_copy(update={"name": "testers-2"})
    http, record = desired_http(v, ref(), ISTIO, RouteState("s", "c", 20, 0, (renamed,)), KEY)
    assert [r["name"] for r in http] == ["qa", "testers-2", "primary", "rest"]
    http, record = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert [r["name"] for r in http] == ["qa", "primary", "rest"]
    assert record == {"weights": {"primary": 0}}


def test_another_rollouts_record_does_not_make_a_route_ours() -> None:
    theirs = {
        "other/rollout": {"headerRoutes": [{"step": "qa", "match": [], "routes": {"qa": "x"}}]}
    }
    v = vs({"name": "qa", "route": []}, managed(), annotations={MANAGED_ROUTES: json.dumps(theirs)})
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert [r["name"] for r in http] == ["qa", "primary"]


def test_a_header_step_named_like_a_user_route_is_refused() -> None:
    v = vs({"name": "testers", "route": []}, managed())
    with pytest.raises(RouteConfigError) as error:
        desired_http(v, ref(), ISTIO, RouteState("s", "c", 0, 0, (JASON,)), KEY)
    assert str(error.value) == (
        "route testers already exists in VirtualService shop/reviews and was not created by "
        "this Rollout"
    )


# -- mirrors --------------------------------------------------------------------------------------


def test_a_mirror_on_a_route_without_one_uses_mirror_and_mirror_percentage() -> None:
    v = applied(vs(managed()), RouteState("s", "c", 0, 30.0))
    primary = v["spec"]["http"][0]
    assert primary["mirror"] == CANARY and primary["mirrorPercentage"] == {"value": 30.0}
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert "mirror" not in http[0] and "mirrorPercentage" not in http[0]


def test_a_mirror_is_appended_to_the_users_mirrors_and_only_it_removed() -> None:
    recorder = {"destination": {"host": "recorder"}, "percentage": {"value": 5.0}}
    v = applied(vs(managed(mirrors=[recorder])), RouteState("s", "c", 0, 100.0))
    primary = v["spec"]["http"][0]
    assert primary["mirrors"] == [recorder, {"destination": CANARY, "percentage": {"value": 100.0}}]
    assert "mirror" not in primary
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert http[0]["mirrors"] == [recorder]


def test_a_users_empty_mirrors_list_stays_when_the_canarys_entry_goes() -> None:
    v = applied(vs(managed(mirrors=[])), RouteState("s", "c", 0, 10.0))
    assert v["spec"]["http"][0]["mirrors"] == [
        {"destination": CANARY, "percentage": {"value": 10.0}}
    ]
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert http[0]["mirrors"] == []


def test_a_users_mirror_to_the_canary_destination_is_not_taken_for_the_routers() -> None:
    users = {"destination": dict(CANARY), "percentage": {"value": 5.0}}
    v = applied(vs(managed(mirrors=[users])), RouteState("s", "c", 0, 10.0))
    ours = {"destination": CANARY, "percentage": {"value": 10.0}}
    assert v["spec"]["http"][0]["mirrors"] == [users, ours]
    found = read_virtual_service(v, ref(), ISTIO, KEY)
    assert found.seen == [(0, 10.0, ())] and found.consistent and found.edits == ()
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "s"), KEY)
    assert http[0]["mirrors"] == [users]


def test_a_header_route_keeps_the_canary_destinations_own_headers() -> None:
    route = managed()
    route["route"][1]["headers"] = {"response": {"set": {"x-canary": "1"}}}
    http, _ = desired_http(vs(route), ref(), ISTIO, RouteState("s", "c", 0, 0, (JASON,)), KEY)
    assert http[0]["route"] == [
        {"destination": CANARY, "weight": 100, "headers": {"response": {"set": {"x-canary": "1"}}}}
    ]


def test_a_users_own_mirror_is_never_overwritten() -> None:
    v = vs(managed(mirror={"host": "recorder"}, mirrorPercentage={"value": 5}))
    with pytest.raises(RouteConfigError, match="route primary of VirtualService shop/reviews"):
        desired_http(v, ref(), ISTIO, RouteState("s", "c", 0, 50.0), KEY)
    # Without a mirror step it is left alone.
    http, _ = desired_http(v, ref(), ISTIO, RouteState("s", "c", 20), KEY)
    assert http[0]["mirror"] == {"host": "recorder"}


# -- read-back --------------------------------------------------------------------------------


def test_read_back_reports_what_it_owns_and_what_others_edited() -> None:
    state = RouteState("s", "c", 20, 50.0, (JASON,))
    v = applied(vs(managed(), REST), state)
    found = read_virtual_service(v, ref(), ISTIO, KEY)
    assert found.seen == [(20, 50.0, (JASON,))] and found.consistent and found.edits == ()

    edited = copy.deepcopy(v)
    for entry in edited["spec"]["http"][1]["route"]:
        entry["weight"] = 50
    found = read_virtual_service(edited, ref(), ISTIO, KEY)
    assert found.seen[0][0] == 50
    assert found.edits == (
        RouteEdit("weights", "route primary of VirtualService shop/reviews", "50/50"),
    )

    deleted = copy.deepcopy(v)
    deleted["spec"]["http"] = deleted["spec"]["http"][1:]
    found = read_virtual_service(deleted, ref(), ISTIO, KEY)
    assert not found.consistent and found.seen[0][2] == ()
    assert [e.kind for e in found.edits] == ["header route"]


def test_a_route_named_like_a_step_but_not_recorded_is_not_read_as_ours() -> None:
    user = {"name": "testers", "match": JASON.wire()["match"], "route": [{"destination": CANARY}]}
    found = read_virtual_service(vs(user, managed()), ref(), ISTIO, KEY)
    assert found.seen == [(0, 0.0, ())]


def test_the_revert_message_says_what_was_undone() -> None:
    edits = (RouteEdit("weights", "route primary of VirtualService shop/reviews", "50/50"),)
    assert reverted_message(edits, RouteState("s", "c", 20)) == (
        "reverted route primary of VirtualService shop/reviews: weights stable/canary 50/50 -> "
        "80/20 (edited outside the controller)"
    )


class _Lagging:
    """A watch cache that has not seen anything yet."""

    def get(self, res: Any, namespace: str | None, name: str) -> Obj | None:
        return None


class _Api:
    """The API, which has the objects (only ``get`` is used by a read)."""

    def __init__(self, *objs: Obj) -> None:
        self.objs = {(o["kind"], o["metadata"]["name"]): o for o in objs}

    def get(self, res: Any, namespace: str | None, name: str) -> Obj:
        from rollout.cluster.access import NotFound

        found = self.objs.get((res.kind, name))
        if found is None:
            raise NotFound(f"{res.kind} {name}")
        return copy.deepcopy(found)


def test_an_object_the_cache_has_not_seen_yet_is_read_from_the_api_not_called_missing() -> None:
    """Seen on the real apiserver: the Rollout's watch event came before its DestinationRule's,
    and the router reported "DestinationRule not found" (InvalidSpec, a Warning) for an object
    that existed."""
    from rollout.api.manifest import parse_rollout
    from rollout.routers.istio import IstioRouter

    rollout = parse_rollout(
        {
            "apiVersion": "rollout.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {
                "selector": {"matchLabels": {"app": "reviews"}},
                "template": {
                    "metadata": {"labels": {"app": "reviews"}},
                    "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]},
                },
                "trafficRouting": {"istio": ISTIO.model_dump(by_alias=True, exclude_none=True)},
                "strategy": {"canary": {"steps": [{"setWeight": 20}]}},
            },
        }
    )
    dr = {
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {"host": "reviews", "subsets": [{"name": "stable"}, {"name": "canary"}]},
    }
    api = _Api({**vs(managed()), "kind": "VirtualService"}, dr)
    state = IstioRouter(api, _Lagging()).read(rollout)  # type: ignore[arg-type]
    assert state.canary_weight == 0
