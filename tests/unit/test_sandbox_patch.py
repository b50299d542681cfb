"""PATCH semantics of the sandbox apiserver: RFC 7386, RFC 6902, strategic merge, media types."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollout.sandbox.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    merge_patch,
)


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def _strategic(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    return apply_patch(document, _body(patch), STRATEGIC_MERGE_PATCH, strategic=True)


def _refused(
    document: dict[str, Any], body: bytes, content_type: str, strategic: bool
) -> PatchError:
    before = copy.deepcopy(document)
    with pytest.raises(PatchError) as caught:
        apply_patch(document, body, content_type, strategic=strategic)
    assert document == before
    return caught.value


# --- RFC 7386 ------------------------------------------------------------------------------

RFC7386_APPENDIX_A: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC7386_APPENDIX_A)
def test_merge_patch_rfc7386_appendix_a(target: Any, patch: Any, result: Any) -> None:
    target_before = copy.deepcopy(target)
    patch_before = copy.deepcopy(patch)
    assert merge_patch(target, patch) == result
    assert target == target_before
    assert patch == patch_before


def test_merge_patch_result_shares_nothing_with_its_inputs() -> None:
    target: dict[str, Any] = {"a": {"b": [1]}, "keep": {"x": 1}}
    patch: dict[str, Any] = {"c": {"d": [2]}}
    result = merge_patch(target, patch)
    result["a"]["b"].append(9)
    result["keep"]["x"] = 2
    result["c"]["d"].append(9)
    assert target == {"a": {"b": [1]}, "keep": {"x": 1}}
    assert patch == {"c": {"d": [2]}}


def test_merge_patch_content_type_with_charset() -> None:
    document = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}
    patched = apply_patch(
        document,
        _body({"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"replicas": 3}}),
        MERGE_PATCH + "; charset=utf-8",
        strategic=False,
    )
    assert patched == {"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"replicas": 3}}
    assert document == {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}


def test_merge_patch_replaces_lists_even_on_built_in_types() -> None:
    document = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}
    patched = apply_patch(
        document,
        _body({"spec": {"containers": [{"name": "a", "image": "3"}]}}),
        MERGE_PATCH,
        strategic=True,
    )
    assert patched == {"spec": {"containers": [{"name": "a", "image": "3"}]}}


@pytest.mark.parametrize("body", [b"[]", b"[1]", b'"x"', b"3", b"true", b"null"])
def test_merge_patch_body_must_be_an_object(body: bytes) -> None:
    error = _refused({"a": 1}, body, MERGE_PATCH, strategic=False)
    assert (error.code, error.reason) == (400, "BadRequest")


# --- RFC 6902 ------------------------------------------------------------------------------

RFC6902_APPENDIX_A: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = [
    (
        "A.1 add an object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 add an array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 remove an object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 remove an array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replace a value",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 move a value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 move an array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 test a value: success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10 add a nested member object",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignore unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.16 add an array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    (
        "copy a value",
        {"foo": {"bar": [1, 2]}},
        [{"op": "copy", "from": "/foo/bar", "path": "/baz"}],
        {"foo": {"bar": [1, 2]}, "baz": [1, 2]},
    ),
]


@pytest.mark.parametrize(
    ("document", "operations", "result"),
    [case[1:] for case in RFC6902_APPENDIX_A],
    ids=[case[0] for case in RFC6902_APPENDIX_A],
)
def test_json_patch_rfc6902_appendix_a(
    document: dict[str, Any], operations: list[dict[str, Any]], result: dict[str, Any]
) -> None:
    before = copy.deepcopy(document)
    assert apply_patch(document, _body(operations), JSON_PATCH, strategic=False) == result
    assert document == before


def test_json_patch_copy_is_not_aliased() -> None:
    document: dict[str, Any] = {"a": {"b": 1}}
    operations = [
        {"op": "copy", "from": "/a", "path": "/c"},
        {"op": "replace", "path": "/c/b", "value": 2},
    ]
    assert apply_patch(document, _body(operations), JSON_PATCH, strategic=False) == {
        "a": {"b": 1},
        "c": {"b": 2},
    }


def test_json_pointer_escaping() -> None:
    document = {"metadata": {"annotations": {"example.com/a~b": "1"}}}
    operations = [
        {"op": "replace", "path": "/metadata/annotations/example.com~1a~0b", "value": "2"},
        {"op": "add", "path": "/metadata/annotations/x~1y", "value": "3"},
    ]
    patched = apply_patch(document, _body(operations), JSON_PATCH, strategic=False)
    assert patched == {"metadata": {"annotations": {"example.com/a~b": "2", "x/y": "3"}}}


@pytest.mark.parametrize(
    ("document", "operations"),
    [
        pytest.param({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], id="A.9"),
        pytest.param(
            {"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], id="A.12"
        ),
        pytest.param(
            {"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], id="A.15"
        ),
        pytest.param({"a": True}, [{"op": "test", "path": "/a", "value": 1}], id="true-is-not-1"),
        pytest.param({"a": 1}, [{"op": "remove", "path": "/b"}], id="remove-missing"),
        pytest.param({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], id="replace-missing"),
        pytest.param({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 2}], id="index-past-end"),
        pytest.param({"a": 1}, [{"op": "frobnicate", "path": "/a"}], id="unknown-op"),
        pytest.param({"a": 1}, [{"path": "/a", "value": 2}], id="missing-op"),
        pytest.param({"a": 1}, [{"op": "add", "path": "a", "value": 2}], id="path-without-slash"),
        pytest.param({"a": 1}, [{"op": "move", "from": "/x", "path": "/y"}], id="move-missing"),
    ],
)
def test_json_patch_that_cannot_apply_is_422(
    document: dict[str, Any], operations: list[dict[str, Any]]
) -> None:
    error = _refused(document, _body(operations), JSON_PATCH, strategic=False)
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == "the server rejected our request due to an error in our request"
    assert error.cause


def test_failed_json_patch_changes_nothing() -> None:
    document = {"spec": {"replicas": 1, "paused": False}, "list": [1, 2, 3]}
    before = copy.deepcopy(document)
    operations = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "remove", "path": "/list/0"},
        {"op": "add", "path": "/spec/new", "value": {"x": 1}},
        {"op": "test", "path": "/spec/paused", "value": True},
    ]
    with pytest.raises(PatchError) as caught:
        apply_patch(document, _body(operations), JSON_PATCH, strategic=False)
    assert caught.value.code == 422
    assert document == before


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b'{"op": "add", "path": "/a", "value": 1}',
        b"[1]",
        b'["add"]',
        b'[{"op": 1, "path": "/a"}]',
        b'[{"op": "add", "path": ["a"], "value": 1}]',
        b'[{"op": "add", "path": "/a", "value": NaN}]',
        b"\xff\xfe[]",
    ],
)
def test_malformed_json_patch_is_400(body: bytes) -> None:
    error = _refused({"a": 1}, body, JSON_PATCH, strategic=False)
    assert (error.code, error.reason) == (400, "BadRequest")


def test_json_patch_that_leaves_no_object_is_422() -> None:
    operations = [{"op": "replace", "path": "", "value": [1]}]
    error = _refused({"a": 1}, _body(operations), JSON_PATCH, strategic=False)
    assert (error.code, error.reason) == (422, "Invalid")


def test_too_many_json_patch_operations_is_413() -> None:
    operations = [{"op": "test", "path": "/a", "value": 1}] * 10001
    error = _refused({"a": 1}, _body(operations), JSON_PATCH, strategic=False)
    assert (error.code, error.reason) == (413, "RequestEntityTooLarge")


# --- malformed bodies and media types ------------------------------------------------------


@pytest.mark.parametrize("content_type", [MERGE_PATCH, JSON_PATCH, STRATEGIC_MERGE_PATCH])
@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"", b"{} {}"])
def test_malformed_json_is_400(content_type: str, body: bytes) -> None:
    error = _refused({"kind": "Pod", "a": 1}, body, content_type, strategic=True)
    assert (error.code, error.reason) == (400, "BadRequest")


ACCEPTED_FOR_CUSTOM_RESOURCES = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


def test_strategic_merge_patch_on_a_custom_resource_is_415() -> None:
    error = _refused({"spec": {}}, b"{}", STRATEGIC_MERGE_PATCH, strategic=False)
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")
    assert error.message == ACCEPTED_FOR_CUSTOM_RESOURCES


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "application/yaml", "", "application/merge-patch"],
)
def test_unknown_media_type_is_415(content_type: str) -> None:
    error = _refused({"spec": {}}, b"{}", content_type, strategic=False)
    assert (error.code, error.reason, error.message) == (
        415,
        "UnsupportedMediaType",
        ACCEPTED_FOR_CUSTOM_RESOURCES,
    )
    built_in = _refused({"spec": {}}, b"{}", content_type, strategic=True)
    assert built_in.code == 415
    assert built_in.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml"
    )


@pytest.mark.parametrize("strategic", [True, False])
def test_server_side_apply_is_415_and_says_so(strategic: bool) -> None:
    error = _refused({"spec": {}}, b"spec: {}\n", APPLY_PATCH, strategic=strategic)
    assert (error.code, error.reason) == (415, "UnsupportedMediaType")
    assert "server-side apply" in error.message
    assert "not supported" in error.message


# --- strategic merge patch -----------------------------------------------------------------


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "finalizers": ["a.example.com/x", "b.example.com/y"]},
        "spec": {
            "replicas": 2,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "web:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        },
                        {"name": "proxy", "image": "envoy:1"},
                    ],
                    "tolerations": [{"key": "k1", "operator": "Exists"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
        "status": {
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ]
        },
    }


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def test_strategic_merges_containers_by_name() -> None:
    document = _deployment()
    before = copy.deepcopy(document)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}}
    patched = _strategic(document, patch)
    containers = _pod_spec(patched)["containers"]
    assert [c["name"] for c in containers] == ["app", "proxy"]
    assert containers[0]["image"] == "web:2"
    assert containers[0]["env"] == before["spec"]["template"]["spec"]["containers"][0]["env"]
    assert containers[1] == {"name": "proxy", "image": "envoy:1"}
    assert document == before


def test_strategic_merges_env_by_name_and_ports_by_container_port() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                }
            }
        }
    }
    app = _pod_spec(_strategic(_deployment(), patch))["containers"][0]
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP", "name": "http"}]


def test_strategic_adds_a_new_container_first_as_the_apiserver_orders_it() -> None:
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}
    }
    containers = _pod_spec(_strategic(_deployment(), patch))["containers"]
    assert [c["name"] for c in containers] == ["debug", "app", "proxy"]


def test_strategic_set_element_order_places_items_and_is_not_stored() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [
                        {"name": "app"},
                        {"name": "proxy"},
                        {"name": "debug"},
                    ],
                    "containers": [{"name": "debug", "image": "busybox"}],
                }
            }
        }
    }
    spec = _pod_spec(_strategic(_deployment(), patch))
    assert [c["name"] for c in spec["containers"]] == ["app", "proxy", "debug"]
    assert not any(key.startswith("$") for key in spec)


def test_strategic_patch_delete_directive_removes_a_list_item() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "proxy", "$patch": "delete"},
                        {"name": "app", "env": [{"name": "A", "$patch": "delete"}]},
                    ]
                }
            }
        }
    }
    containers = _pod_spec(_strategic(_deployment(), patch))["containers"]
    assert [c["name"] for c in containers] == ["app"]
    assert containers[0]["env"] == [{"name": "B", "value": "2"}]


def test_strategic_patch_replace_directive_on_a_list() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "solo", "image": "solo:1"}, {"$patch": "replace"}]}
            }
        }
    }
    containers = _pod_spec(_strategic(_deployment(), patch))["containers"]
    assert containers == [{"name": "solo", "image": "solo:1"}]


def test_strategic_patch_replace_directive_on_a_map() -> None:
    patch = {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}
    assert _strategic(_deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_patch_delete_directive_on_a_map_empties_it() -> None:
    patch = {"spec": {"template": {"metadata": {"labels": {"$patch": "delete"}}}}}
    assert _strategic(_deployment(), patch)["spec"]["template"]["metadata"]["labels"] == {}


def test_strategic_retain_keys_clears_the_other_keys() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert _strategic(_deployment(), patch)["spec"]["strategy"] == {"type": "Recreate"}


def test_strategic_retain_keys_must_list_every_patched_key() -> None:
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}
    error = _refused(_deployment(), _body(patch), STRATEGIC_MERGE_PATCH, strategic=True)
    assert (error.code, error.reason) == (400, "BadRequest")


def test_strategic_merges_conditions_by_type() -> None:
    patch = {
        "status": {
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ]
        }
    }
    conditions = _strategic(_deployment(), patch)["status"]["conditions"]
    assert conditions == [
        {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
    ]


def test_strategic_merges_finalizers_as_a_set() -> None:
    patch = {"metadata": {"finalizers": ["b.example.com/y", "c.example.com/z"]}}
    finalizers = _strategic(_deployment(), patch)["metadata"]["finalizers"]
    assert sorted(finalizers) == ["a.example.com/x", "b.example.com/y", "c.example.com/z"]
    assert len(finalizers) == 3


def test_strategic_delete_from_primitive_list() -> None:
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}}
    metadata = _strategic(_deployment(), patch)["metadata"]
    assert metadata == {"name": "web", "finalizers": ["b.example.com/y"]}


def test_strategic_null_deletes_a_key() -> None:
    patch = {"spec": {"strategy": {"rollingUpdate": None}, "replicas": None}}
    spec = _strategic(_deployment(), patch)["spec"]
    assert "replicas" not in spec
    assert spec["strategy"] == {"type": "RollingUpdate"}


def test_strategic_replaces_lists_without_a_merge_key() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}}}
    spec = _pod_spec(_strategic(_deployment(), patch))
    assert spec["tolerations"] == [{"key": "k2", "operator": "Exists"}]


def test_strategic_merges_service_ports_by_port() -> None:
    service = {
        "kind": "Service",
        "spec": {
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "admin", "port": 9000},
            ]
        },
    }
    patched = _strategic(service, {"spec": {"ports": [{"port": 80, "targetPort": 8081}]}})
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8081},
        {"name": "admin", "port": 9000},
    ]


def test_strategic_new_values_drop_nulls_and_directives() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {"nodeSelector": {"zone": "a", "gone": None}, "volumes": [{"name": "x"}]}
            }
        }
    }
    spec = _pod_spec(_strategic(_deployment(), patch))
    assert spec["nodeSelector"] == {"zone": "a"}
    assert spec["volumes"] == [{"name": "x"}, {"name": "data", "emptyDir": {}}]


def test_strategic_item_without_its_merge_key_is_refused() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"image": "web:2"}]}}}}
    error = _refused(_deployment(), _body(patch), STRATEGIC_MERGE_PATCH, strategic=True)
    assert error.code == 500
    assert "does not contain declared merge key: name" in error.message


def test_failed_strategic_patch_changes_nothing() -> None:
    document = _deployment()
    patch = {
        "metadata": {"labels": {"x": "y"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "$patch": "bogus"}]}}},
    }
    _refused(document, _body(patch), STRATEGIC_MERGE_PATCH, strategic=True)
    assert document == _deployment()


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1"])
def test_strategic_patch_body_must_be_an_object(body: bytes) -> None:
    error = _refused(_deployment(), body, STRATEGIC_MERGE_PATCH, strategic=True)
    assert (error.code, error.reason) == (400, "BadRequest")


# --- properties ----------------------------------------------------------------------------

_PROPERTIES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_keys = st.sampled_from(["a", "b", "c", "d"])
# Merge patch cannot write a null into an object member, so the wanted documents have none.
_values = st.recursive(
    st.booleans() | st.integers(-5, 5) | st.floats(-2, 2) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=3),
    max_leaves=8,
)
_documents = st.dictionaries(_keys, _values, max_size=4)


def make_merge_patch(source: Any, target: Any) -> Any:
    """An RFC 7386 patch that turns `source` into `target` (which has no null members)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = value
        elif _canonical(source[key]) != _canonical(value):
            patch[key] = make_merge_patch(source[key], value)
    return patch


@_PROPERTIES
@given(_documents, _documents)
def test_merge_patch_of_the_difference_yields_the_target(
    source: dict[str, Any], target: dict[str, Any]
) -> None:
    diff = make_merge_patch(source, target)
    source_before = copy.deepcopy(source)
    assert _canonical(merge_patch(source, diff)) == _canonical(target)
    assert _canonical(source) == _canonical(source_before)
    via_http = apply_patch(source, _body(diff), MERGE_PATCH, strategic=False)
    assert _canonical(via_http) == _canonical(target)


@_PROPERTIES
@given(_documents, _documents)
def test_merge_patch_without_nulls_sets_every_key(
    document: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert merge_patch(document, {}) == document
    patched = merge_patch(document, patch)
    assert set(patch) <= set(patched)
    for key, value in patch.items():
        if not isinstance(value, dict):
            assert _canonical(patched[key]) == _canonical(value)


@_PROPERTIES
@given(_documents, _documents)
def test_strategic_patch_on_unknown_fields_is_a_merge_patch(
    document: dict[str, Any], patch: dict[str, Any]
) -> None:
    # No field here has a declared strategy and no value is null, so both patches agree.
    assert _canonical(_strategic(document, patch)) == _canonical(merge_patch(document, patch))
