"""Sandbox conformance: bad requests answered with Status bodies, and CRD schema validation.

A bad request is never a crash or a hung connection: after each, a normal GET still works.

References:
- https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#response-status-kind
- the apiserver's request body limit (3 MiB, ``--max-request-body-bytes`` default) answers
  413 RequestEntityTooLarge
- https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
  (structural schemas, pruning, validation rules with ``oldSelf`` as transition rules)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    apps_v1,
    assert_status_body,
    core_v1,
    custom_objects,
    expect_status,
    raw_request,
    replicaset,
    rollout,
)

pytestmark = pytest.mark.integration

MERGE = "application/merge-patch+json"


def _still_serving(api_client: client.ApiClient) -> None:
    names = {n.metadata.name for n in core_v1(api_client).list_namespace().items}
    assert "default" in names


def test_malformed_json_is_400(api_client: client.ApiClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for body in (b"{not json", b'{"metadata": {"name": "x"}', b"\xff\xfe", b"[1, 2]", b"42"):
        status, reply = raw_request(api_client, "POST", path, body)
        assert status == 400, (body, reply)
        assert_status_body(json.dumps(reply), 400, "BadRequest")
        _still_serving(api_client)
    status, reply = raw_request(api_client, "PUT", f"{path}/x", b"{oops")
    assert status == 400 and reply["reason"] == "BadRequest"
    _still_serving(api_client)


def test_unknown_paths_are_404(api_client: client.ApiClient, namespace: str) -> None:
    for path in (
        f"/api/v1/namespaces/{namespace}/widgets",
        "/apis/nosuch.example.com/v1/things",
        "/apis/apps/v9/replicasets",
        "/no/such/thing",
        f"/api/v1/namespaces/{namespace}/configmaps/x/status",  # no status subresource
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/analysistemplates/x/scale",
    ):
        status, reply = raw_request(api_client, "GET", path)
        assert status == 404, (path, reply)
        assert_status_body(json.dumps(reply), 404, "NotFound")
    _still_serving(api_client)


def test_unsupported_patch_type_is_415(api_client: client.ApiClient, namespace: str) -> None:
    core_v1(api_client).create_namespaced_config_map(namespace, {"metadata": {"name": "p"}})
    path = f"/api/v1/namespaces/{namespace}/configmaps/p"
    for content_type in ("text/plain", "application/json", "application/yaml"):
        status, reply = raw_request(
            api_client, "PATCH", path, b'{"data": {"a": "1"}}', content_type
        )
        assert status == 415, (content_type, reply)
        assert_status_body(json.dumps(reply), 415, "UnsupportedMediaType")
    # Parameters after the media type are ignored, as the apiserver ignores them.
    status, reply = raw_request(
        api_client, "PATCH", path, b'{"data": {"a": "1"}}', f"{MERGE}; charset=utf-8"
    )
    assert status == 200 and reply["data"] == {"a": "1"}
    _still_serving(api_client)


def test_body_over_3_mib_is_413(api_client: client.ApiClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    big = json.dumps(
        {"metadata": {"name": "big"}, "data": {"blob": "x" * (3 * 1024 * 1024 + 10)}}
    ).encode()
    status, reply = raw_request(api_client, "POST", path, big)
    assert status == 413, reply
    assert_status_body(json.dumps(reply), 413, "RequestEntityTooLarge")
    # The next request, on a new connection, is served; the object was not created.
    status, reply = raw_request(api_client, "GET", f"{path}/big", new_connection=True)
    assert status == 404 and reply["reason"] == "NotFound"
    _still_serving(api_client)
    # Just under the limit is accepted (at the HTTP layer).
    fits = json.dumps({"metadata": {"name": "fits"}, "data": {"blob": "x" * 1024 * 1024}}).encode()
    status, reply = raw_request(api_client, "POST", path, fits)
    assert status == 201, reply


def test_wrong_shapes_are_status_errors(api_client: client.ApiClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, reply = raw_request(api_client, "POST", path, b'{"metadata": "x"}')
    assert status in (400, 422), reply
    assert reply["kind"] == "Status" and reply["code"] == status
    status, reply = raw_request(
        api_client, "POST", path, b'{"kind": "Secret", "metadata": {"name": "x"}}'
    )
    assert status == 400 and reply["reason"] == "BadRequest", reply
    status, reply = raw_request(api_client, "POST", f"{path}?dryRun=All", b'{"metadata": {}}')
    assert reply["kind"] == "Status" and status >= 400
    _still_serving(api_client)


# -- CRD schema validation -----------------------------------------------------------------


def _create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    return custom_objects(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", body
    )


def _causes(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c.get("field", ""), c.get("message", "")) for c in body["details"]["causes"]]


def test_schema_bounds(api_client: client.ApiClient, namespace: str) -> None:
    body = expect_status(
        lambda: _create(api_client, namespace, rollout("bad", weight=150)), 422, "Invalid"
    )
    assert body["details"]["kind"] == "Rollout" and body["details"]["group"] == GROUP
    fields = [f for f, _ in _causes(body)]
    assert fields == ["spec.strategy.canary.steps[0].setWeight"], body
    assert "100" in _causes(body)[0][1]
    assert body["message"].startswith('Rollout.rollout.dev "bad" is invalid')
    expect_status(
        lambda: custom_objects(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", "bad"
        ),
        404,
        "NotFound",
    )


def test_unknown_fields_are_pruned(api_client: client.ApiClient, namespace: str) -> None:
    body = rollout("pruned")
    body["spec"]["bogus"] = 1
    body["spec"]["strategy"]["canary"]["notAField"] = {"x": 1}
    body["topLevel"] = "dropped"
    body["spec"]["template"]["spec"]["anything"] = {"kept": True}  # preserve-unknown-fields
    created = _create(api_client, namespace, body)
    assert "bogus" not in created["spec"]
    assert "notAField" not in created["spec"]["strategy"]["canary"]
    assert "topLevel" not in created
    assert created["spec"]["template"]["spec"]["anything"] == {"kept": True}
    stored = custom_objects(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", "pruned"
    )
    assert "bogus" not in stored["spec"]


def test_cel_rule_exactly_one_strategy(api_client: client.ApiClient, namespace: str) -> None:
    body = rollout("two")
    body["spec"]["strategy"]["blueGreen"] = {"autoPromotionSeconds": 30}
    reply = expect_status(lambda: _create(api_client, namespace, body), 422, "Invalid")
    causes = _causes(reply)
    assert any(f == "spec.strategy" and "exactly one strategy" in m for f, m in causes), causes
    none = rollout("none")
    none["spec"]["strategy"] = {}
    reply = expect_status(lambda: _create(api_client, namespace, none), 422, "Invalid")
    assert any("exactly one strategy" in m for _, m in _causes(reply)), reply


def test_a_rollout_name_longer_than_a_label_value_is_refused(
    api_client: client.ApiClient, namespace: str
) -> None:
    # The CRD's root CEL rule reads metadata.name (the pods' canonical-name label value).
    long = {**rollout("reviews"), "metadata": {"name": "r" * 64}}
    reply = expect_status(lambda: _create(api_client, namespace, long), 422, "Invalid")
    assert reply["message"].startswith(f'Rollout.rollout.dev "{"r" * 64}" is invalid: ')
    assert "a Rollout name has at most 63 characters" in reply["message"], reply
    assert any("at most 63 characters" in m for _, m in _causes(reply)), reply
    expect_status(
        lambda: custom_objects(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", "r" * 64
        ),
        404,
        "NotFound",
    )
    fits = copy.deepcopy(long)
    fits["metadata"]["name"] = "r" * 63
    assert _create(api_client, namespace, fits)["metadata"]["name"] == "r" * 63


def test_selector_is_immutable(api_client: client.ApiClient, namespace: str) -> None:
    custom = custom_objects(api_client)
    created = _create(api_client, namespace, rollout("sel"))

    def change(patch: Callable[[], Any]) -> None:
        reply = expect_status(patch, 422, "Invalid")
        assert any(
            f == "spec.selector" and "selector is immutable" in m for f, m in _causes(reply)
        ), reply

    change(
        lambda: custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "rollouts",
            "sel",
            {
                "spec": {
                    "selector": {"matchLabels": {"app": "sel", "extra": "x"}},
                    "template": {"metadata": {"labels": {"app": "sel", "extra": "x"}}},
                }
            },
            _content_type=MERGE,
        )
    )
    replaced = json.loads(json.dumps(created))
    replaced["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    replaced["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    change(
        lambda: custom.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, "rollouts", "sel", replaced
        )
    )
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", "sel")
    assert stored["spec"]["selector"] == {"matchLabels": {"app": "sel"}}
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # Other spec changes are still accepted.
    ok = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        "sel",
        {"spec": {"replicas": 5}},
        _content_type=MERGE,
    )
    assert ok["spec"]["replicas"] == 5


def test_builtin_validation(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    core = core_v1(api_client)
    reply = expect_status(
        lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}}),
        422,
        "Invalid",
    )
    assert [c["field"] for c in reply["details"]["causes"]] == ["metadata.name"]
    apps.create_namespaced_replica_set(
        namespace,
        {
            "metadata": {"name": "rs"},
            "spec": {
                "selector": {"matchLabels": {"app": "rs"}},
                "template": {
                    "metadata": {"labels": {"app": "rs"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    reply = expect_status(
        lambda: apps.patch_namespaced_replica_set(
            "rs",
            namespace,
            {
                "spec": {
                    "selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "x"}}},
                }
            },
            _content_type=MERGE,
        ),
        422,
        "Invalid",
    )
    assert "spec.selector" in [c["field"] for c in reply["details"]["causes"]]


@pytest.mark.parametrize(
    ("labels", "field"),
    [
        ({"bad key": "x"}, "metadata.labels"),
        ({"ok": "x" * 64}, "metadata.labels"),
        ({"ok": "-leading-dash"}, "metadata.labels"),
        ({"Not_A.DNS/prefix": "x"}, "metadata.labels"),
    ],
)
def test_label_syntax_is_validated(
    api_client: client.ApiClient, namespace: str, labels: dict[str, str], field: str
) -> None:
    """ObjectMeta validation: label keys are qualified names, values at most 63 characters."""
    core = core_v1(api_client)
    reply = expect_status(
        lambda: core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "l", "labels": labels}}
        ),
        422,
        "Invalid",
    )
    assert [c["field"] for c in reply["details"]["causes"]] == [field]
    # Valid ones, including a prefixed key, an empty value and exactly 63 characters.
    fine = {"rollout.dev/revision": "a" * 63, "empty": "", "x_y.z-1": "A_b.c-9"}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "l", "labels": fine}})
    assert core.read_namespaced_config_map("l", namespace).metadata.labels == fine


def test_owner_references_need_uid(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    reply = expect_status(
        lambda: core.create_namespaced_config_map(
            namespace,
            {
                "metadata": {
                    "name": "o",
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": ""}
                    ],
                }
            },
        ),
        422,
        "Invalid",
    )
    assert [c["field"] for c in reply["details"]["causes"]] == ["metadata.ownerReferences.uid"]


def test_pod_template_is_validated(api_client: client.ApiClient, namespace: str) -> None:
    apps = apps_v1(api_client)
    body = replicaset("tpl")
    body["spec"]["template"]["spec"]["containers"] = [
        {"name": "app"},
        {"name": "app", "image": "i"},
    ]
    body["spec"]["template"]["metadata"]["labels"]["bad"] = "-x"
    reply = expect_status(
        lambda: apps.create_namespaced_replica_set(namespace, body), 422, "Invalid"
    )
    fields = sorted(c["field"] for c in reply["details"]["causes"])
    assert fields == [
        "spec.template.labels",  # kube-apiserver's ValidatePodTemplateSpec path for label values
        "spec.template.spec.containers[0].image",
        "spec.template.spec.containers[1].name",
    ], reply
    body["spec"]["template"]["spec"]["containers"] = []
    del body["spec"]["template"]["metadata"]["labels"]["bad"]
    reply = expect_status(
        lambda: apps.create_namespaced_replica_set(namespace, body), 422, "Invalid"
    )
    assert [c["field"] for c in reply["details"]["causes"]] == ["spec.template.spec.containers"]


def test_replace_of_a_missing_object_is_404(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    expect_status(
        lambda: core.replace_namespaced_config_map(
            "ghost", namespace, {"metadata": {"name": "ghost"}}
        ),
        404,
        "NotFound",
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "real"}})
    expect_status(
        lambda: core.replace_namespaced_config_map(
            "real", namespace, {"metadata": {"name": "other"}}
        ),
        400,
        "BadRequest",
    )


def test_analysis_templates_are_validated(api_client: client.ApiClient, namespace: str) -> None:
    custom = custom_objects(api_client)

    def template(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AnalysisTemplate",
            "metadata": {"name": name},
            "spec": spec,
        }

    created = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "analysistemplates",
        template("ok", {"query": "up", "max": 1, "noData": "fail"}),
    )
    assert created["spec"] == {"query": "up", "max": 1, "noData": "fail"}
    reply = expect_status(
        lambda: custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "analysistemplates",
            template("bounds", {"query": "up", "min": 2, "max": 1}),
        ),
        422,
        "Invalid",
    )
    assert any("min must be <= max" in m for _, m in _causes(reply)), reply
    reply = expect_status(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "analysistemplates", template("noquery", {"max": 1})
        ),
        422,
        "Invalid",
    )
    assert ("spec.query", "Required value") in _causes(reply), reply
