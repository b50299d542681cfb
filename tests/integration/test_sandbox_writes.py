"""Sandbox conformance: create, update, patch, status subresource, versions and error bodies.

References (Kubernetes API concepts and conventions):
- https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
- https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply
- https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md
  ("Concurrency Control and Consistency", "Spec and Status", "Response Status Kind")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    apps_v1,
    as_json,
    coordination_v1,
    core_v1,
    custom_objects,
    deployment,
    eventually,
    expect_status,
    on_kube,
    raw_request,
    replicaset,
    rollout,
    rv,
    slow,
)

pytestmark = pytest.mark.integration

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

Obj = dict[str, Any]


class Rollouts:
    """The Rollout custom resource through ``CustomObjectsApi``, in one namespace."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api = custom_objects(api_client)
        self.ns = namespace

    def create(self, body: Obj) -> Obj:
        out: Obj = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, "rollouts", body
        )
        return out

    def get(self, name: str) -> Obj:
        out: Obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.ns, "rollouts", name)
        return out

    def replace(self, name: str, body: Obj) -> Obj:
        out: Obj = self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.ns, "rollouts", name, body
        )
        return out

    def patch(self, name: str, body: Any, content_type: str = MERGE) -> Obj:
        out: Obj = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "rollouts", name, body, _content_type=content_type
        )
        return out

    def replace_status(self, name: str, body: Obj) -> Obj:
        out: Obj = self.api.replace_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, "rollouts", name, body
        )
        return out

    def patch_status(self, name: str, body: Obj) -> Obj:
        out: Obj = self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.ns, "rollouts", name, body, _content_type=MERGE
        )
        return out


@pytest.fixture
def rollouts(api_client: client.ApiClient, namespace: str) -> Rollouts:
    return Rollouts(api_client, namespace)


# -- create ----------------------------------------------------------------------------------


def test_create_returns_201_with_server_fields(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    apps = apps_v1(api_client)
    body = replicaset("web")
    body["metadata"].update(
        uid="client-chosen", generation=7, creationTimestamp="2000-01-01T00:00:00Z"
    )
    rs, code, _ = apps.create_namespaced_replica_set_with_http_info(namespace, body)
    assert code == 201
    assert rs.metadata.uid and rs.metadata.uid != "client-chosen"
    assert rs.metadata.resource_version
    assert rs.metadata.creation_timestamp is not None
    assert rs.metadata.creation_timestamp.year > 2000  # server-set, the client's ignored
    assert rs.metadata.generation == 1
    assert rs.metadata.namespace == namespace

    ro, code, _ = rollouts.api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, namespace, "rollouts", rollout("ro")
    )
    assert code == 201
    assert ro["metadata"]["generation"] == 1
    assert ro["metadata"]["uid"] and ro["metadata"]["creationTimestamp"]
    assert ro["apiVersion"] == f"{GROUP}/{VERSION}" and ro["kind"] == "Rollout"

    cm, code, _ = core_v1(api_client).create_namespaced_config_map_with_http_info(
        namespace, {"metadata": {"name": "cm"}}
    )
    assert code == 201
    assert cm.metadata.uid and cm.metadata.resource_version and cm.metadata.creation_timestamp
    # ConfigMaps (like Secrets, Services, Leases) do not track generation in Kubernetes
    # (kubernetes/kubernetes#113961; #124507, which proposed it, was closed unmerged).
    assert cm.metadata.generation is None


def test_create_refuses_a_resource_version(api_client: client.ApiClient, namespace: str) -> None:
    """The storage layer refuses it: "resourceVersion should not be set on objects to be
    created", a plain 500 without a reason (kubernetes/kubernetes#62836 kept it that way)."""
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "src"}})
    copy = {"metadata": {"name": "copy", "resourceVersion": cm.metadata.resource_version}}
    status, reply = raw_request(
        api_client,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        json.dumps(copy).encode(),
    )
    assert status == 500 and reply["kind"] == "Status" and reply["code"] == 500, reply
    assert "reason" not in reply
    assert "resourceVersion should not be set" in reply["message"]
    expect_status(lambda: core.read_namespaced_config_map("copy", namespace), 404, "NotFound")


def test_body_must_match_the_url(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    """A built-in type's body is decoded by the scheme, then converted to the URL's type: both
    failures are 400s with the decoder's message. A custom resource's apiVersion is checked by
    apiextensions-apiserver (400), its kind is validated as a field (422)."""
    core = core_v1(api_client)
    body = expect_status(
        lambda: core.create_namespaced_config_map(
            namespace, {"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
        ),
        400,
        "BadRequest",
    )
    assert body["message"].startswith(
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: no kind "ConfigMap" is '
        'registered for version "apps/v1"'
    ), body
    body = expect_status(
        lambda: core.create_namespaced_config_map(
            namespace, {"kind": "Secret", "metadata": {"name": "x"}}
        ),
        400,
        "BadRequest",
    )
    assert body["message"].startswith(
        'Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to '
    ), body
    body = expect_status(
        lambda: rollouts.create({**rollout("x"), "apiVersion": f"{GROUP}/v1"}), 400, "BadRequest"
    )
    assert body["message"] == (
        f"the API version in the data ({GROUP}/v1) does not match the expected API version "
        f"({GROUP}/{VERSION})"
    )
    body = expect_status(
        lambda: rollouts.create({**rollout("x"), "kind": "AnalysisTemplate"}), 422, "Invalid"
    )
    assert ("kind", 'Invalid value: "AnalysisTemplate": must be Rollout') in [
        (c["field"], c["message"]) for c in body["details"]["causes"]
    ], body
    expect_status(lambda: rollouts.get("x"), 404, "NotFound")
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})
    expect_status(
        lambda: core.replace_namespaced_config_map(
            "x", namespace, {"metadata": {"name": "x", "namespace": "default"}}
        ),
        400,
        "BadRequest",
    )
    expect_status(
        lambda: core.replace_namespaced_config_map(
            "x", namespace, {"apiVersion": "v2", "metadata": {"name": "x"}}
        ),
        400,
        "BadRequest",
    )


def test_resource_version_is_one_counter_across_kinds(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    core = core_v1(api_client)
    coordination = coordination_v1(api_client)
    apps = apps_v1(api_client)
    versions = [
        int(
            core.create_namespaced_config_map(
                namespace, {"metadata": {"name": "a"}}
            ).metadata.resource_version
        ),
        int(
            core.create_namespaced_secret(
                namespace, {"metadata": {"name": "b"}}
            ).metadata.resource_version
        ),
        int(
            coordination.create_namespaced_lease(
                namespace, {"metadata": {"name": "c"}}
            ).metadata.resource_version
        ),
        rv(rollouts.create(rollout("d"))),
        int(
            apps.create_namespaced_replica_set(namespace, replicaset("e")).metadata.resource_version
        ),
        int(
            core.patch_namespaced_config_map(
                "a", namespace, {"data": {"x": "1"}}
            ).metadata.resource_version
        ),
        rv(rollouts.patch("d", {"spec": {"replicas": 5}})),
    ]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions


def test_generate_name(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-"}})
    second = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-"}})
    assert first.metadata.name.startswith("cfg-") and len(first.metadata.name) > len("cfg-")
    assert first.metadata.name != second.metadata.name
    assert first.metadata.generate_name == "cfg-"
    assert core.read_namespaced_config_map(first.metadata.name, namespace).metadata.uid == (
        first.metadata.uid
    )


def test_create_conflicts_and_missing_namespace(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    body = expect_status(
        lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}}),
        409,
        "AlreadyExists",
    )
    assert body["details"]["name"] == "dup" and body["details"]["kind"] == "configmaps"
    body = expect_status(
        lambda: core.create_namespaced_config_map("no-such-ns", {"metadata": {"name": "x"}}),
        404,
        "NotFound",
    )
    assert body["details"] == {"name": "no-such-ns", "kind": "namespaces"}
    body = expect_status(
        lambda: core.create_namespaced_config_map(namespace, {"metadata": {}}), 422, "Invalid"
    )
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.name"]


# -- resourceVersion and generation --------------------------------------------------------


def test_generation_follows_spec_only(rollouts: Rollouts) -> None:
    created = rollouts.create(rollout("gen"))
    assert created["metadata"]["generation"] == 1

    labelled = rollouts.patch("gen", {"metadata": {"labels": {"team": "a"}}})
    assert rv(labelled) > rv(created)
    assert labelled["metadata"]["generation"] == 1  # metadata: no bump

    status = rollouts.patch_status("gen", {"status": {"phase": "Progressing"}})
    assert rv(status) > rv(labelled)
    assert status["metadata"]["generation"] == 1  # status: no bump

    spec = rollouts.patch("gen", {"spec": {"replicas": 4}})
    assert rv(spec) > rv(status)
    assert spec["metadata"]["generation"] == 2  # spec: bump

    replaced = dict(spec)
    replaced["spec"] = {**spec["spec"], "minReadySeconds": 5}
    after_put = rollouts.replace("gen", replaced)
    assert after_put["metadata"]["generation"] == 3
    assert rollouts.get("gen")["metadata"]["generation"] == 3


def test_replicaset_generation(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    # No replicas: the status written below is one the ReplicaSet controller (the sandbox's
    # simulator, the real controller on a cluster) agrees with, so validation accepts it.
    rs = apps.create_namespaced_replica_set(namespace, replicaset("gen", 0))
    labelled = apps.patch_namespaced_replica_set(
        "gen", namespace, {"metadata": {"labels": {"x": "y"}}}, _content_type=MERGE
    )
    assert labelled.metadata.generation == 1
    assert int(labelled.metadata.resource_version) > int(rs.metadata.resource_version)
    status = apps.patch_namespaced_replica_set_status(
        "gen",
        namespace,
        {"status": {"replicas": 0, "observedGeneration": 1}},
        _content_type=MERGE,
    )
    assert status.metadata.generation == 1
    scaled = apps.patch_namespaced_replica_set(
        "gen", namespace, {"spec": {"replicas": 3}}, _content_type=MERGE
    )
    assert scaled.metadata.generation == 2


def test_noop_update_keeps_the_resource_version(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    """A write that changes nothing is not persisted: same resourceVersion (and no event)."""
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "same", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    again = core.replace_namespaced_config_map("same", namespace, cm)
    assert again.metadata.resource_version == cm.metadata.resource_version
    patched = core.patch_namespaced_config_map(
        "same", namespace, {"metadata": {"labels": {"a": "1"}}}, _content_type=MERGE
    )
    assert patched.metadata.resource_version == cm.metadata.resource_version

    ro = rollouts.create(rollout("same"))
    assert rv(rollouts.replace("same", ro)) == rv(ro)
    assert rv(rollouts.patch("same", {"spec": {"replicas": ro["spec"]["replicas"]}})) == rv(ro)
    assert rollouts.get("same")["metadata"]["generation"] == 1


def test_replace_with_stale_or_missing_resource_version(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {}})
    cm.data = {"v": "1"}
    first = core.replace_namespaced_config_map("c", namespace, cm)
    assert first.data == {"v": "1"}
    cm.data = {"v": "stale"}  # still carries the first resourceVersion
    body = expect_status(
        lambda: core.replace_namespaced_config_map("c", namespace, cm), 409, "Conflict"
    )
    assert body["details"]["name"] == "c"
    assert core.read_namespaced_config_map("c", namespace).data == {"v": "1"}
    # Without a resourceVersion: an unconditional update (allowed for built-in types).
    unconditional = core.replace_namespaced_config_map(
        "c", namespace, {"metadata": {"name": "c"}, "data": {"v": "2"}}
    )
    assert unconditional.data == {"v": "2"}
    assert int(unconditional.metadata.resource_version) > int(first.metadata.resource_version)

    # Custom resources do not allow unconditional update (the apiextensions strategy's
    # AllowUnconditionalUpdate is false): "metadata.resourceVersion: must be specified".
    ro = rollouts.create(rollout("r"))
    stale = dict(ro)
    rollouts.patch("r", {"spec": {"replicas": 7}})
    expect_status(lambda: rollouts.replace("r", stale), 409, "Conflict")
    bare = {k: v for k, v in ro.items() if k != "metadata"}
    bare["metadata"] = {"name": "r"}
    body = expect_status(lambda: rollouts.replace("r", bare), 422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == ["metadata.resourceVersion"]
    assert rollouts.get("r")["spec"]["replicas"] == 7


# -- patch ---------------------------------------------------------------------------------


def test_merge_and_json_patch(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "p"}, "data": {"a": "1", "b": "2"}}
    )
    merged = core.patch_namespaced_config_map(
        "p", namespace, {"data": {"a": None, "c": "3"}}, _content_type=MERGE
    )
    assert merged.data == {"b": "2", "c": "3"}
    patched = core.patch_namespaced_config_map(
        "p",
        namespace,
        [
            {"op": "replace", "path": "/data/b", "value": "20"},
            {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        ],
        _content_type=JSON_PATCH,
    )
    assert patched.data == {"b": "20", "c": "3"}
    assert patched.metadata.labels == {"x": "y"}


def test_failing_json_patch_test_op_changes_nothing(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    cm = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "t"}, "data": {"a": "1"}}
    )
    body = expect_status(
        lambda: core.patch_namespaced_config_map(
            "t",
            namespace,
            [
                {"op": "replace", "path": "/data/a", "value": "2"},
                {"op": "test", "path": "/data/a", "value": "1"},
            ],
            _content_type=JSON_PATCH,
        ),
        422,
        "Invalid",
    )
    # kube-apiserver's generic message, without causes (the JSON patch error is not sent).
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert not body.get("details", {}).get("causes"), body
    after = core.read_namespaced_config_map("t", namespace)
    assert after.data == {"a": "1"}
    assert after.metadata.resource_version == cm.metadata.resource_version


def test_strategic_merge_patch_merges_containers_by_name(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps = apps_v1(api_client)
    containers = [
        {"name": "app", "image": "example.com/app:1"},
        {"name": "sidecar", "image": "example.com/proxy:1"},
    ]
    patch = {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:2"}]}}
        }
    }
    apps.create_namespaced_replica_set(namespace, replicaset("smp", containers=containers))
    rs = apps.patch_namespaced_replica_set("smp", namespace, patch, _content_type=STRATEGIC)
    images = {c.name: c.image for c in rs.spec.template.spec.containers}
    assert images == {"app": "example.com/app:2", "sidecar": "example.com/proxy:1"}
    assert rs.metadata.generation == 2

    apps.create_namespaced_deployment(namespace, deployment("smp", containers))
    dep = apps.patch_namespaced_deployment("smp", namespace, patch, _content_type=STRATEGIC)
    images = {c.name: c.image for c in dep.spec.template.spec.containers}
    assert images == {"app": "example.com/app:2", "sidecar": "example.com/proxy:1"}

    # The same body as a merge patch replaces the list: the content type decides.
    rs = apps.patch_namespaced_replica_set("smp", namespace, patch, _content_type=MERGE)
    assert [c.name for c in rs.spec.template.spec.containers] == ["app"]


def test_patch_types_refused(
    api_client: client.ApiClient, namespace: str, rollouts: Rollouts
) -> None:
    ro = rollouts.create(rollout("p"))
    body = expect_status(
        lambda: rollouts.patch("p", {"spec": {"replicas": 9}}, STRATEGIC),
        415,
        "UnsupportedMediaType",
    )
    assert "application/merge-patch+json" in body["message"]
    core = core_v1(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    if not on_kube():
        # The sandbox does not implement server-side apply (docs/sandbox.md): 415 for it.
        expect_status(
            lambda: rollouts.patch("p", {"spec": {"replicas": 9}}, APPLY),
            415,
            "UnsupportedMediaType",
        )
        expect_status(
            lambda: core.patch_namespaced_config_map(
                "a", namespace, {"data": {"x": "1"}}, _content_type=APPLY
            ),
            415,
            "UnsupportedMediaType",
        )
        assert rv(rollouts.get("p")) == rv(ro)
        return
    # kube-apiserver: an apply patch needs a field manager...
    body = expect_status(
        lambda: rollouts.patch("p", {"spec": {"replicas": 9}}, APPLY), 422, "Invalid"
    )
    assert [c["field"] for c in body["details"]["causes"]] == ["fieldManager"], body
    assert rv(rollouts.get("p")) == rv(ro)
    # ...and with one, it applies.
    applied = core.patch_namespaced_config_map(
        "a",
        namespace,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1"}},
        _content_type=APPLY,
        field_manager="conformance",
    )
    assert applied.data == {"x": "1"}


# -- status subresource --------------------------------------------------------------------


def test_rollout_status_subresource_isolation(rollouts: Rollouts) -> None:
    body = rollout("st")
    body["status"] = {"phase": "Healthy"}
    created = rollouts.create(body)
    assert "status" not in created  # create drops status

    # PUT /status: status changes, the spec change in the same body is ignored.
    current = rollouts.get("st")
    current["spec"]["replicas"] = 9
    current["status"] = {"phase": "Progressing"}
    after = rollouts.replace_status("st", current)
    assert after["status"] == {"phase": "Progressing"}
    assert after["spec"]["replicas"] == 2 and after["metadata"]["generation"] == 1

    # PATCH /status likewise.
    after = rollouts.api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        rollouts.ns,
        "rollouts",
        "st",
        {"spec": {"replicas": 8}, "status": {"phase": "Paused"}},
        _content_type=MERGE,
    )
    assert after["status"] == {"phase": "Paused"} and after["spec"]["replicas"] == 2

    # PUT and PATCH on the object never change status.
    current = rollouts.get("st")
    current["status"] = {"phase": "Degraded"}
    current["spec"]["replicas"] = 3
    after = rollouts.replace("st", current)
    assert after["status"] == {"phase": "Paused"} and after["spec"]["replicas"] == 3
    after = rollouts.patch("st", {"status": {"phase": "Degraded"}})
    assert after["status"] == {"phase": "Paused"}
    assert rollouts.api.get_namespaced_custom_object_status(
        GROUP, VERSION, rollouts.ns, "rollouts", "st"
    )["status"] == {"phase": "Paused"}


def test_replicaset_status_subresource_isolation(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps = apps_v1(api_client)
    body = replicaset("st", 0)
    body["status"] = {"replicas": 5, "readyReplicas": 5}
    created = apps.create_namespaced_replica_set(namespace, body)
    assert created.status.replicas == 0 and created.status.ready_replicas is None

    # The ReplicaSet controller writes this status too (the sandbox's simulator, the real
    # controller on a cluster, which puts back what it computes): each PUT below reads the
    # latest version and retries on a conflict, and each check reads the reply to the write.
    def put(write: Any, change: Callable[[Obj], None]) -> Any:
        def attempt() -> Any:
            current = as_json(api_client, apps.read_namespaced_replica_set("st", namespace))
            before = current.get("status") or {}
            change(current)
            try:
                return before, write("st", namespace, current)
            except ApiException as error:
                assert error.status != 409, "conflict with the controller's write: retried"
                raise

        return eventually(attempt, timeout=slow())

    def on_status(obj: Obj) -> None:
        obj["spec"]["replicas"] = 4
        obj["status"] = {"replicas": 2, "observedGeneration": 1}

    _, after = put(apps.replace_namespaced_replica_set_status, on_status)
    assert after.status.replicas == 2 and after.spec.replicas == 0

    after = apps.patch_namespaced_replica_set_status(
        "st", namespace, {"spec": {"replicas": 6}, "status": {"replicas": 1}}, _content_type=MERGE
    )
    assert after.status.replicas == 1 and after.spec.replicas == 0

    def on_object(obj: Obj) -> None:
        obj["status"] = {"replicas": 7}

    before, after = put(apps.replace_namespaced_replica_set, on_object)
    assert after.status.replicas == before.get("replicas", 0) != 7
    after = apps.patch_namespaced_replica_set(
        "st", namespace, {"status": {"replicas": 7}}, _content_type=MERGE
    )
    assert after.status.replicas != 7


# -- error bodies --------------------------------------------------------------------------


def test_not_found_bodies(api_client: client.ApiClient, namespace: str, rollouts: Rollouts) -> None:
    core = core_v1(api_client)
    body = expect_status(
        lambda: core.read_namespaced_config_map("nope", namespace), 404, "NotFound"
    )
    assert body["details"]["name"] == "nope" and body["details"]["kind"] == "configmaps"
    assert body["message"] == 'configmaps "nope" not found'
    body = expect_status(lambda: rollouts.get("nope"), 404, "NotFound")
    assert body["details"] == {"name": "nope", "group": GROUP, "kind": "rollouts"}
    assert body["message"] == 'rollouts.rollout.dev "nope" not found'
    expect_status(lambda: core.delete_namespaced_config_map("nope", namespace), 404, "NotFound")
    expect_status(
        lambda: core.patch_namespaced_config_map("nope", namespace, {}, _content_type=MERGE),
        404,
        "NotFound",
    )
