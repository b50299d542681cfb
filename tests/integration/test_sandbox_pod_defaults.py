"""Sandbox conformance: a ReplicaSet's pod template comes back with kube-apiserver's defaults.

A client that reads a ReplicaSet does not get back the template it wrote: the apiserver fills in
``imagePullPolicy``, ``terminationMessagePath``, ``dnsPolicy`` ... (pkg/apis/core/v1/defaults.go).
A controller that compares or hashes a template read back from a ReplicaSet (``rollout undo``
did) drifts on a real cluster; the sandbox does the same defaulting so that the drift shows on
both backends. Runs on both: the expected template below is what kube-apiserver v1.34 stores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tests.integration.sandbox_helpers import Obj, apps_v1

pytestmark = pytest.mark.integration

WRITTEN: Obj = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {
        "containers": [
            {
                "name": "a",
                "image": "example.com/a",
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            },
            {"name": "b", "image": "example.com/b:1.2"},
            {"name": "c", "image": "example.com:5000/c:latest"},
            {"name": "d", "image": "example.com/d@sha256:" + "0" * 64},
            {"name": "e", "image": "example.com/e:1", "imagePullPolicy": "Never"},
        ],
        "initContainers": [{"name": "i", "image": "example.com/i:1"}],
        "volumes": [
            {"name": "v", "configMap": {"name": "c"}},
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "t", "emptyDir": {}},
        ],
        "terminationGracePeriodSeconds": 5,
    },
}

DEFAULTED = {
    "resources": {},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}

STORED: Obj = {
    "metadata": {"labels": {"app": "x"}},
    "spec": {
        "containers": [
            {
                "name": "a",
                "image": "example.com/a",
                "imagePullPolicy": "Always",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                    "failureThreshold": 3,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "timeoutSeconds": 1,
                },
                "env": [
                    {
                        "name": "X",
                        "valueFrom": {
                            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                        },
                    }
                ],
                **DEFAULTED,
            },
            {"name": "b", "image": "example.com/b:1.2", "imagePullPolicy": "IfNotPresent"}
            | DEFAULTED,
            {"name": "c", "image": "example.com:5000/c:latest", "imagePullPolicy": "Always"}
            | DEFAULTED,
            {"name": "d", "image": "example.com/d@sha256:" + "0" * 64}
            | {"imagePullPolicy": "IfNotPresent"}
            | DEFAULTED,
            {"name": "e", "image": "example.com/e:1", "imagePullPolicy": "Never"} | DEFAULTED,
        ],
        "initContainers": [
            {"name": "i", "image": "example.com/i:1", "imagePullPolicy": "IfNotPresent"} | DEFAULTED
        ],
        "volumes": [
            {"name": "v", "configMap": {"name": "c", "defaultMode": 420}},
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "t", "emptyDir": {}},
        ],
        "terminationGracePeriodSeconds": 5,  # as written: only what is missing is filled in
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    },
}


def _raw(reply: Any) -> Obj:
    data: Obj = json.loads(reply.data)
    return data


def test_a_replica_sets_pod_template_is_stored_with_the_pod_defaults(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps = apps_v1(api_client)
    body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "x"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}}, "template": WRITTEN},
    }
    created = _raw(apps.create_namespaced_replica_set(namespace, body, _preload_content=False))
    assert created["spec"]["template"] == STORED
    read = _raw(apps.read_namespaced_replica_set("x", namespace, _preload_content=False))
    assert read["spec"]["template"] == STORED

    # Every write is defaulted, not only the create: a container added by a patch too.
    patch = {"spec": {"template": {"spec": {"containers": [*WRITTEN["spec"]["containers"]]}}}}
    patch["spec"]["template"]["spec"]["containers"].append({"name": "f", "image": "example.com/f"})
    patched = _raw(
        apps.patch_namespaced_replica_set(
            "x",
            namespace,
            patch,
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
    )
    added = patched["spec"]["template"]["spec"]["containers"][-1]
    assert added == {"name": "f", "image": "example.com/f", "imagePullPolicy": "Always"} | DEFAULTED
    assert patched["spec"]["template"]["spec"]["containers"][:-1] == STORED["spec"]["containers"]
