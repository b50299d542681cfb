"""Sandbox conformance: deletion (finalizers, garbage collection, namespaces) and workloads.

References:
- https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/
- https://kubernetes.io/docs/concepts/architecture/garbage-collection/ (background and orphan
  propagation; the orphan policy removes the owner reference from dependents)
- https://kubernetes.io/docs/tasks/administer-cluster/namespaces/#deleting-a-namespace
- https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/replica-set-v1/
  (status fields; the scale subresource)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    apps_v1,
    as_json,
    core_v1,
    custom_objects,
    eventually,
    expect_status,
    get_json,
    names,
    on_kube,
    owner_ref,
    replicaset,
    rollout,
    slow,
    stream,
)

pytestmark = pytest.mark.integration

MERGE = "application/merge-patch+json"
READY_AFTER = "sandbox.rollout.dev/ready-after"
CRASH = "sandbox.rollout.dev/crash"


# -- finalizers ----------------------------------------------------------------------------


def test_delete_honours_finalizers(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("held", namespace)
    held = core.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["example.com/hold"]
    # Deleting again changes nothing.
    core.delete_namespaced_config_map("held", namespace)
    again = core.read_namespaced_config_map("held", namespace)
    assert again.metadata.resource_version == held.metadata.resource_version
    # A terminating object accepts no new finalizers (ValidateObjectMetaUpdate: "no new
    # finalizers can be added if the object is being deleted")...
    body = expect_status(
        lambda: core.patch_namespaced_config_map(
            "held",
            namespace,
            {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}},
            _content_type=MERGE,
        ),
        422,
        "Invalid",
    )
    # (kube-apiserver runs this check twice and lists the cause twice; one field either way.)
    assert {c["field"] for c in body["details"]["causes"]} == {"metadata.finalizers"}, body
    assert "no new finalizers can be added if the object is being deleted" in body["message"]
    # ...but other updates go through, and removing the last finalizer deletes it.
    core.patch_namespaced_config_map("held", namespace, {"data": {"note": "going"}})
    core.patch_namespaced_config_map(
        "held", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    expect_status(lambda: core.read_namespaced_config_map("held", namespace), 404, "NotFound")
    events = stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=cm.metadata.resource_version,
        until=lambda evs: evs[-1][0] == "DELETED",
    )
    assert [t for t, _ in events] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert events[0][1]["metadata"]["deletionTimestamp"]


# -- garbage collection --------------------------------------------------------------------


def _gone(read: Any, *args: Any) -> None:
    expect_status(lambda: read(*args), 404, "NotFound")


def test_dependents_are_collected_after_a_configmap_owner(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    apps = apps_v1(api_client)
    owner = as_json(
        api_client, core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    )
    apps.create_namespaced_replica_set(
        namespace, replicaset("child", owner=owner_ref("ConfigMap", "v1", owner))
    )
    apps.create_namespaced_replica_set(namespace, replicaset("bystander"))
    core.delete_namespaced_config_map("owner", namespace)
    eventually(lambda: _gone(apps.read_namespaced_replica_set, "child", namespace), slow())
    assert apps.read_namespaced_replica_set("bystander", namespace).metadata.name == "bystander"


def test_dependents_are_collected_after_a_rollout_owner(
    api_client: client.ApiClient, namespace: str
) -> None:
    custom = custom_objects(api_client)
    apps = apps_v1(api_client)
    owner = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("web")
    )
    other = as_json(
        api_client,
        core_v1(api_client).create_namespaced_config_map(
            namespace, {"metadata": {"name": "other-owner"}}
        ),
    )
    apps.create_namespaced_replica_set(
        namespace, replicaset("web-1", owner=owner_ref("Rollout", f"{GROUP}/{VERSION}", owner))
    )
    shared = replicaset("web-2", owner=owner_ref("Rollout", f"{GROUP}/{VERSION}", owner))
    shared["metadata"]["ownerReferences"].append(owner_ref("ConfigMap", "v1", other))
    apps.create_namespaced_replica_set(namespace, shared)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "web")
    eventually(lambda: _gone(apps.read_namespaced_replica_set, "web-1", namespace), slow())

    # A dependent with another live owner stays, without the deleted owner's reference
    # (as the garbage collector patches it).
    def only_other_owner() -> None:
        rs = apps.read_namespaced_replica_set("web-2", namespace)
        assert [r.name for r in rs.metadata.owner_references] == ["other-owner"]

    eventually(only_other_owner, slow())


def test_orphan_propagation_keeps_dependents(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    apps = apps_v1(api_client)
    owner = as_json(
        api_client, core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    )
    apps.create_namespaced_replica_set(
        namespace, replicaset("kept", owner=owner_ref("ConfigMap", "v1", owner))
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")

    def orphaned() -> None:
        _gone(core.read_namespaced_config_map, "owner", namespace)
        rs = apps.read_namespaced_replica_set("kept", namespace)
        assert rs.metadata.owner_references is None

    eventually(orphaned, slow())
    # And it stays.
    assert apps.read_namespaced_replica_set("kept", namespace).metadata.deletion_timestamp is None


def test_foreground_propagation_waits_for_blocking_dependents(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    apps = apps_v1(api_client)
    owner = as_json(
        api_client, core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    )
    ref = {**owner_ref("ConfigMap", "v1", owner), "blockOwnerDeletion": True}
    child = replicaset("child", owner=ref)
    child["metadata"]["finalizers"] = ["example.com/hold"]
    apps.create_namespaced_replica_set(namespace, child)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    deleting = core.read_namespaced_config_map("owner", namespace)
    assert deleting.metadata.deletion_timestamp is not None
    assert deleting.metadata.finalizers == ["foregroundDeletion"]

    def child_deleting() -> None:
        rs = apps.read_namespaced_replica_set("child", namespace)
        assert rs.metadata.deletion_timestamp is not None

    eventually(child_deleting, slow())
    # The owner waits for its blocking dependent.
    assert core.read_namespaced_config_map("owner", namespace).metadata.finalizers == [
        "foregroundDeletion"
    ]
    apps.patch_namespaced_replica_set(
        "child", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    eventually(lambda: _gone(core.read_namespaced_config_map, "owner", namespace), slow())
    _gone(apps.read_namespaced_replica_set, "child", namespace)
    body = expect_status(
        lambda: core.delete_namespaced_config_map("x", namespace, propagation_policy="Sideways"),
        422,
        "Invalid",
    )
    assert "propagationPolicy" in body["message"]


def test_namespace_deletion(api_client: client.ApiClient) -> None:
    core = core_v1(api_client)
    apps = apps_v1(api_client)
    custom = custom_objects(api_client)
    ns = f"del-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    apps.create_namespaced_replica_set(ns, replicaset("rs"))
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", rollout("ro"))

    core.delete_namespace(ns)
    terminating = core.read_namespace(ns)
    assert terminating.status.phase == "Terminating"
    assert terminating.metadata.deletion_timestamp is not None
    body = expect_status(
        lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "late"}}),
        403,
        "Forbidden",
    )
    assert "being terminated" in body["message"]

    def contents_deleted() -> None:
        assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["held"]
        assert apps.list_namespaced_replica_set(ns).items == []
        assert custom.list_namespaced_custom_object(GROUP, VERSION, ns, "rollouts")["items"] == []
        assert core.read_namespaced_config_map("held", ns).metadata.deletion_timestamp

    eventually(contents_deleted, slow())
    assert core.read_namespace(ns).status.phase == "Terminating"  # held by the finalizer
    core.patch_namespaced_config_map(
        "held", ns, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    eventually(lambda: _gone(core.read_namespace, ns), slow())


# -- workload simulator --------------------------------------------------------------------


def _rs_status(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = get_json(
        api_client, f"/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"
    )["status"]
    return status


def test_replicaset_becomes_ready(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    rs = apps.create_namespaced_replica_set(
        namespace, replicaset("web", 3, annotations={READY_AFTER: "0.1"})
    )

    def ready(replicas: int, generation: int) -> None:
        status = _rs_status(api_client, namespace, "web")
        assert status == {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": generation,
        }, status

    eventually(lambda: ready(3, rs.metadata.generation), slow())
    apps.patch_namespaced_replica_set("web", namespace, {"spec": {"replicas": 5}})
    eventually(lambda: ready(5, 2), slow())

    # Scaled to zero: zero counts are omitted (omitempty), except replicas.
    apps.patch_namespaced_replica_set("web", namespace, {"spec": {"replicas": 0}})
    eventually(
        lambda: _expect(
            _rs_status(api_client, namespace, "web"), {"replicas": 0, "observedGeneration": 3}
        ),
        slow(),
    )


def _expect(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    assert actual == wanted


def test_default_ready_delay(api_client: client.ApiClient, namespace: str) -> None:
    """Without the annotation, pods become ready: on the sandbox 0.5 s after the ReplicaSet is
    written (its simulator's default), on a real cluster as soon as kwok runs them."""
    apps = apps_v1(api_client)
    started = time.monotonic()
    rs = apps.create_namespaced_replica_set(namespace, replicaset("slow", 2))
    events = stream(
        apps.list_namespaced_replica_set,
        namespace,
        resource_version=rs.metadata.resource_version,
        timeout=int(slow()),
        until=lambda evs: (evs[-1][1].get("status") or {}).get("readyReplicas") == 2,
    )
    elapsed = time.monotonic() - started
    assert (events[-1][1].get("status") or {}).get("readyReplicas") == 2, events
    assert (0.0 if on_kube() else 0.5) <= elapsed < slow(), elapsed


def test_crashing_pods_never_become_ready(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    rs = apps.create_namespaced_replica_set(
        namespace, replicaset("bad", 2, annotations={CRASH: "true", READY_AFTER: "0"})
    )

    def counted() -> None:
        status = _rs_status(api_client, namespace, "bad")
        assert status.get("replicas") == 2 and status.get("observedGeneration") == 1, status

    eventually(counted, slow())
    # Watch a while: no status write ever makes it ready.
    events = stream(
        apps.list_namespaced_replica_set,
        namespace,
        resource_version=rs.metadata.resource_version,
        timeout=1,
        until=lambda evs: False,
    )
    assert all(not (o.get("status") or {}).get("readyReplicas") for _, o in events), events
    status = _rs_status(api_client, namespace, "bad")
    assert "readyReplicas" not in status and "availableReplicas" not in status, status


def test_replicaset_scale_subresource(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    apps.create_namespaced_replica_set(
        namespace, replicaset("sc", 2, annotations={READY_AFTER: "0"})
    )
    # Once ready, nothing else writes the ReplicaSet: the Scale read next stays current.
    eventually(lambda: _expect_ready(api_client, namespace, "sc", 2), slow())
    scale = apps.read_namespaced_replica_set_scale("sc", namespace)
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 2 and scale.status.selector == "app=sc"
    scale.spec.replicas = 4
    replaced = apps.replace_namespaced_replica_set_scale("sc", namespace, scale)
    assert replaced.spec.replicas == 4
    assert apps.read_namespaced_replica_set("sc", namespace).spec.replicas == 4
    eventually(lambda: _expect_ready(api_client, namespace, "sc", 4), slow())
    # A stale Scale is a conflict, like any stale write.
    expect_status(
        lambda: apps.replace_namespaced_replica_set_scale("sc", namespace, scale), 409, "Conflict"
    )
    patched = apps.patch_namespaced_replica_set_scale(
        "sc", namespace, {"spec": {"replicas": 1}}, _content_type=MERGE
    )
    assert patched.spec.replicas == 1
    eventually(lambda: _expect_ready(api_client, namespace, "sc", 1), slow())
    assert apps.read_namespaced_replica_set_scale("sc", namespace).status.replicas == 1
    expect_status(
        lambda: apps.patch_namespaced_replica_set_scale(
            "sc", namespace, {"spec": {"replicas": -1}}, _content_type=MERGE
        ),
        422,
        "Invalid",
    )


def _expect_ready(api_client: client.ApiClient, namespace: str, name: str, n: int) -> None:
    status = _rs_status(api_client, namespace, name)
    assert status.get("replicas") == n and status.get("readyReplicas") == n, status


def test_rollout_scale_subresource(api_client: client.ApiClient, namespace: str) -> None:
    custom = custom_objects(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", rollout("ro"))
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        "ro",
        {"status": {"replicas": 2, "selector": "app=ro"}},
        _content_type=MERGE,
    )
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, "rollouts", "ro")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 2, "selector": "app=ro"}
    custom.patch_namespaced_custom_object_scale(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        "ro",
        {"spec": {"replicas": 6}},
        _content_type=MERGE,
    )
    ro = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "ro")
    assert ro["spec"]["replicas"] == 6 and ro["metadata"]["generation"] == 2
    scale = custom.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, "rollouts", "ro")
    scale["spec"]["replicas"] = 3
    custom.replace_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, "rollouts", "ro", scale
    )
    ro = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "ro")
    assert ro["spec"]["replicas"] == 3


def test_watch_sees_the_simulator(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    rs = apps.create_namespaced_replica_set(
        namespace, replicaset("watched", 1, annotations={READY_AFTER: "0"})
    )
    events = stream(
        apps.list_namespaced_replica_set,
        namespace,
        resource_version=rs.metadata.resource_version,
        until=lambda evs: bool((evs[-1][1].get("status") or {}).get("readyReplicas")),
    )
    assert names(events, "MODIFIED")[-1] == "watched"
