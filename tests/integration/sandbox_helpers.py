"""Helpers for the sandbox conformance tests: polling, Status bodies, watches, sample objects.

Everything here talks to the sandbox over HTTP through the official ``kubernetes`` client (its
``ApiClient``, its ``rest_client`` pool, ``Watch``): never through the emulator's internals.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.kube import BACKEND_ENV

T = TypeVar("T")

# The generated client's signatures take its models and return Optionals everywhere; these
# tests send and read plain JSON dicts, as on the wire (the client validates arguments at run
# time itself). So the APIs are used untyped here, and a missing field fails the test.
_client: Any = client
_watch: Any = watch
_config: Any = config


def core_v1(api_client: client.ApiClient) -> Any:
    return _client.CoreV1Api(api_client)


def apps_v1(api_client: client.ApiClient) -> Any:
    return _client.AppsV1Api(api_client)


def custom_objects(api_client: client.ApiClient) -> Any:
    return _client.CustomObjectsApi(api_client)


def coordination_v1(api_client: client.ApiClient) -> Any:
    return _client.CoordinationV1Api(api_client)


def apiextensions_v1(api_client: client.ApiClient) -> Any:
    return _client.ApiextensionsV1Api(api_client)


def discovery(api_client: client.ApiClient) -> Any:
    """The generated discovery APIs: ``version``, ``core`` (/api), ``apis`` (/apis)."""

    class Discovery:
        version = _client.VersionApi(api_client)
        core = _client.CoreApi(api_client)
        apis = _client.ApisApi(api_client)

    return Discovery


def as_json(api_client: client.ApiClient, model: Any) -> Obj:
    """A typed model as the JSON the server sent (camelCase keys)."""
    untyped: Any = api_client
    out: Obj = untyped.sanitize_for_serialization(model)
    return out


def client_from(kubeconfig: str) -> client.ApiClient:
    api_client: client.ApiClient = _config.new_client_from_config(config_file=kubeconfig)
    return api_client


Obj = dict[str, Any]

GROUP = "rollout.dev"
VERSION = "v1alpha1"


def eventually(fn: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Call ``fn`` until it returns without raising ``AssertionError``; its last error if never.

    A deadline-bound poll, not a sleep: the check itself decides when the wait is over.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval)


def expect_status(call: Callable[[], object], code: int, reason: str) -> Obj:
    """Run ``call``, which must fail with a ``kind: Status`` body of this code and reason.

    Raises ``AssertionError`` otherwise, so that ``eventually`` can poll it.
    """
    try:
        call()
    except ApiException as error:
        assert error.status == code, error.body
        return assert_status_body(error.body, code, reason)
    raise AssertionError(f"expected {code} {reason}, but the call succeeded")


PAGE_NOT_FOUND = {"text": "404 page not found\n"}


def expect_page_not_found(call: Callable[[], object]) -> None:
    """Run ``call``, which must fail with the apiserver's plain-text ``404 page not found``:
    its answer for a path that no built-in group serves (an unknown API group, or a CRD
    group's unknown version or resource)."""
    try:
        call()
    except ApiException as error:
        assert error.status == 404, error.body
        body = error.body.decode() if isinstance(error.body, bytes) else error.body
        assert body == PAGE_NOT_FOUND["text"], body
        return
    raise AssertionError("expected 404 page not found, but the call succeeded")


def assert_status_body(raw: str | bytes | None, code: int, reason: str) -> Obj:
    assert raw, "the error has no body"
    body: Obj = json.loads(raw)
    assert body["kind"] == "Status", body
    assert body["apiVersion"] == "v1", body
    assert body["status"] == "Failure", body
    assert body["code"] == code, body
    assert body["reason"] == reason, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def on_kube() -> bool:
    """Whether this run's API server is the real kube-apiserver (``--backend kube``)."""
    return os.environ.get(BACKEND_ENV, "sandbox") == "kube"


# Deadlines for what a controller does in the background: the sandbox's simulator acts within
# milliseconds; the real control plane's controllers (the ReplicaSet controller, the garbage
# collector, the namespace controller, kwok) within seconds.
def slow() -> float:
    """The deadline (seconds) for such background work on this run's backend."""
    return 60.0 if on_kube() else 10.0


# The ConfigMap a real cluster puts in every namespace (the root CA publisher); none on the
# sandbox. ``preexisting`` lists what a fresh namespace holds before a test writes.
ROOT_CA = "kube-root-ca.crt"


def preexisting_configmaps() -> set[str]:
    """The ConfigMaps of a fresh (settled) ``namespace`` fixture: none on the sandbox, the
    root CA bundle (no labels) on a real cluster."""
    return {ROOT_CA} if on_kube() else set()


def auth_headers(api_client: client.ApiClient) -> dict[str, str]:
    """The kubeconfig's credentials as headers, for requests made outside the generated APIs
    (a real apiserver answers an anonymous request with 403; the sandbox takes any)."""
    headers: dict[str, str] = {}
    for setting in api_client.configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"])] = str(setting["value"])
    return headers


def server(api_client: client.ApiClient) -> str:
    host: str = api_client.configuration.host
    return host.rstrip("/")


def raw_request(
    api_client: client.ApiClient,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
    *,
    new_connection: bool = False,
) -> tuple[int, Obj]:
    """One request through the client's own urllib3 pool; the status and the JSON reply."""
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    headers.update(auth_headers(api_client))
    if new_connection:
        headers["Connection"] = "close"
    reply = api_client.rest_client.pool_manager.request(
        method,
        server(api_client) + path,
        body=body,
        headers=headers,
        timeout=10,
        retries=False,
    )
    if not reply.headers.get("Content-Type", "").startswith("application/json"):
        return reply.status, {"text": reply.data.decode()}  # e.g. "404 page not found"
    data: Obj = json.loads(reply.data)
    return reply.status, data


def get_json(api_client: client.ApiClient, path: str) -> Obj:
    status, data = raw_request(api_client, "GET", path)
    assert status == 200, data
    return data


def read_raw(api_client: client.ApiClient, path: str) -> Obj:
    """A GET through ``call_api`` (the generated methods' transport), as plain JSON."""
    reply: Any = api_client.call_api(
        "GET", server(api_client) + path, {"Accept": "application/json", **auth_headers(api_client)}
    )
    reply.read()
    assert reply.status == 200, reply.data
    data: Obj = json.loads(reply.data)
    return data


def stream(
    list_fn: Callable[..., Any],
    *args: Any,
    until: Callable[[list[tuple[str, Obj]]], bool],
    timeout: int = 5,
    **kwargs: Any,
) -> list[tuple[str, Obj]]:
    """Watch with the official ``Watch`` until ``until(events)`` holds or the server ends it.

    Events are ``(type, raw object)``. ``timeout`` becomes ``timeoutSeconds``: a failing test
    ends instead of hanging.
    """
    events: list[tuple[str, Obj]] = []
    w = _watch.Watch()
    for event in w.stream(list_fn, *args, timeout_seconds=timeout, **kwargs):
        events.append((event["type"], event["raw_object"]))
        if until(events):
            w.stop()
            break
    return events


def names(events: list[tuple[str, Obj]], *types: str) -> list[str]:
    return [o["metadata"]["name"] for t, o in events if not types or t in types]


def labelled_configmap(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}


def replicaset(
    name: str,
    replicas: int = 1,
    *,
    annotations: dict[str, str] | None = None,
    containers: list[Obj] | None = None,
    owner: Obj | None = None,
) -> Obj:
    metadata: Obj = {"name": name}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "containers": containers or [{"name": "app", "image": "example.com/app:1"}],
                },
            },
        },
    }


def deployment(name: str, containers: list[Obj]) -> Obj:
    body = replicaset(name, containers=containers)
    body["kind"] = "Deployment"
    return body


def rollout(name: str, *, weight: int = 10, replicas: int = 2) -> Obj:
    """A minimal valid Rollout (canary, host-level split)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
            },
            "trafficRouting": {
                "istio": {
                    "virtualServices": [{"name": name}],
                    "stableService": f"{name}-stable",
                    "canaryService": f"{name}-canary",
                }
            },
            "strategy": {"canary": {"steps": [{"setWeight": weight}, {"pause": {}}]}},
        },
    }


def owner_ref(kind: str, api_version: str, obj: Obj) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
    }


def rv(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])
