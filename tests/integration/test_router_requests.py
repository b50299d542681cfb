"""The Istio router's round trips per step, and its guard against changes between its read
and its write (every patch tests the resourceVersion it was built from)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from kubernetes import client

from rollout.api.manifest import parse_rollout
from rollout.cluster.access import DESTINATION_RULES, VIRTUAL_SERVICES, Obj, Resource
from rollout.cluster.kube import KubeAccess
from rollout.domain.observed import RouteState
from rollout.routers.istio import IstioRouter
from tests.integration.controller_helpers import (
    Cluster,
    canary_weight,
    destination_rule,
    rollout_manifest,
    subset_labels,
    virtual_service,
)


class Counting:
    """The real ``KubeAccess``, counting its requests; ``before_patch`` runs once, before the
    next patch of a VirtualService (to change it under the router's feet)."""

    def __init__(self, inner: KubeAccess) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()
        self.before_patch: Callable[[Resource, str], None] | None = None

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        self.calls[f"GET {res.plural}"] += 1
        return self.inner.get(res, namespace, name)

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **kw: Any) -> Obj:
        self.calls[f"PATCH {res.plural}"] += 1
        if self.before_patch is not None and res is VIRTUAL_SERVICES:
            hook, self.before_patch = self.before_patch, None
            hook(res, name)
        return self.inner.patch(res, namespace, name, patch, **kw)


def setup(api_client: client.ApiClient, namespace: str) -> tuple[Cluster, Any, Counting]:
    cluster = Cluster(api_client, namespace)
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_istio("destinationrules", destination_rule())
    manifest = rollout_manifest(steps=[{"setWeight": 20}, {"setWeight": 40}])
    manifest["metadata"]["namespace"] = namespace
    access = Counting(KubeAccess(api_client))
    return cluster, parse_rollout(manifest), access


def test_a_weight_step_reads_each_routing_object_once_and_patches_once(
    api_client: client.ApiClient, namespace: str
) -> None:
    cluster, rollout, access = setup(api_client, namespace)
    router = IstioRouter(access)  # type: ignore[arg-type]
    assert router.apply(rollout, RouteState("s1", "c1", 0))  # pins the subsets
    access.calls.clear()
    assert router.apply(rollout, RouteState("s1", "c1", 20))
    # It was 4 GETs (a fresh read, then a fresh read again before each write) and 1 PATCH.
    assert access.calls == {
        "GET virtualservices": 1,
        "GET destinationrules": 1,
        "PATCH virtualservices": 1,
    }
    assert canary_weight(cluster.vs()) == 20
    access.calls.clear()
    assert not router.apply(rollout, RouteState("s1", "c1", 20))  # nothing to do: no write
    assert access.calls == {"GET virtualservices": 1, "GET destinationrules": 1}


def test_a_change_between_the_routers_read_and_its_write_fails_the_write_and_it_reads_again(
    api_client: client.ApiClient, namespace: str
) -> None:
    cluster, rollout, access = setup(api_client, namespace)
    router = IstioRouter(access)  # type: ignore[arg-type]
    assert router.apply(rollout, RouteState("s1", "c1", 20))

    def someone_else(res: Resource, name: str) -> None:
        assert res is VIRTUAL_SERVICES
        vs = cluster.vs()
        # Only a label: not in what the patch replaces, yet the read it was built from is old.
        vs["metadata"].setdefault("labels", {})["team"] = "reviews"
        cluster.replace_vs(vs)

    access.calls.clear()
    access.before_patch = someone_else
    # A new canary revision with traffic: drain, relabel, then route — from one read each.
    assert router.apply(rollout, RouteState("s1", "c2", 40))
    vs, dr = cluster.vs(), cluster.dr()
    assert canary_weight(vs) == 40
    assert vs["metadata"]["labels"]["team"] == "reviews"
    assert subset_labels(dr) == {"stable": "s1", "canary": "c2"}
    # The drain's first patch failed on its test and was rebuilt from a fresh read; the
    # relabel and the weights then started from what the API answered.
    assert access.calls == {
        "GET virtualservices": 2,
        "GET destinationrules": 1,
        "PATCH virtualservices": 3,
        "PATCH " + DESTINATION_RULES.plural: 1,
    }
