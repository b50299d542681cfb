"""kubectl against the API: the real ``kubectl`` binary, without flags like ``--validate=false``.

What kubectl needs from an API server, asserted as kubectl behaves against a real
kube-apiserver (these tests are meant to pass on both backends, so they assert kubectl's
outcomes and the API's documented behaviour, never the exact content of an OpenAPI document):

- OpenAPI v3 (and v2): ``kubectl apply`` validates (an unknown field is kubectl's strict
  decoding error, or a warning with ``--validate=warn``), ``kubectl explain`` prints field docs;
- Table responses: ``kubectl get`` shows a CRD's printer columns;
- ``involvedObject.*`` field selectors on events: ``kubectl describe`` shows Events;
- ``dryRun=All``: ``--dry-run=server`` stores nothing, changes no version, sends no watch event;
- RBAC and policy kinds: the chart's manifests apply.

The official client checks what kubectl did.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    as_json,
    auth_headers,
    core_v1,
    custom_objects,
    expect_status,
    rollout,
    server,
    stream,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rollout-controller"
ROLLOUTS_CRD = ROOT / "crds" / "rollout.dev_rollouts.yaml"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """Run the real ``kubectl`` with the test kubeconfig and a fresh cache directory."""
    binary = shutil.which("kubectl")
    if binary is None:  # a skip would hide a broken setup
        pytest.fail("kubectl is not on PATH", pytrace=False)
    cache = tmp_path_factory.mktemp("kubectl-cache")
    env = {
        **os.environ,
        "KUBECONFIG": str(sandbox_kubeconfig),
        "KUBECACHEDIR": str(cache),
        "HOME": str(cache),
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def manifest(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def read_rollout(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom_objects(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", name
    )
    return obj


def absent(read: Callable[[], object]) -> None:
    expect_status(read, 404, "NotFound")


# -- openapi: kubectl apply validates, kubectl explain explains ----------------------------------


def test_apply_creates_then_is_unchanged(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    text = manifest(rollout("web"))
    assert "rollout.rollout.dev/web created" in ok(
        kubectl("apply", "-n", namespace, "-f", "-", stdin=text)
    )
    assert read_rollout(api_client, namespace, "web")["spec"]["replicas"] == 2
    assert "unchanged" in ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=text))
    changed = rollout("web", replicas=3)
    assert "configured" in ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(changed)))
    assert read_rollout(api_client, namespace, "web")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (("spec",), "bogusField"),
        (("spec", "strategy", "canary"), "stepz"),
        (("spec", "trafficRouting", "istio"), "virtualService"),
        (("metadata",), "labelz"),
    ],
)
def test_apply_rejects_an_unknown_field(
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
    where: tuple[str, ...],
    field: str,
) -> None:
    obj = rollout("bad")
    node = obj
    for part in where:
        node = node[part]
    node[field] = {"x": 1} if where == ("metadata",) else 1
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(obj))
    assert result.returncode != 0, result.stdout
    assert "unknown field" in result.stderr and field in result.stderr, result.stderr
    assert "--validate=false" not in " ".join(result.args)
    absent(lambda: read_rollout(api_client, namespace, "bad"))


def test_apply_rejects_an_unknown_field_in_a_patch_of_an_existing_object(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(rollout("web"))))
    before = read_rollout(api_client, namespace, "web")
    changed = rollout("web", replicas=5)
    changed["spec"]["replicaz"] = 5
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(changed))
    assert result.returncode != 0, result.stdout
    assert "unknown field" in result.stderr and "replicaz" in result.stderr, result.stderr
    after = read_rollout(api_client, namespace, "web")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["replicas"] == 2


def test_apply_rejects_an_unknown_top_level_field_of_a_built_in_kind(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "datta": {"a": "1"}}
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(cm))
    assert result.returncode != 0, result.stdout
    assert "unknown field" in result.stderr and "datta" in result.stderr, result.stderr
    absent(lambda: core_v1(api_client).read_namespaced_config_map("c", namespace))


def test_apply_with_validate_warn_warns_and_drops_the_unknown_field(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    obj = rollout("warned")
    obj["spec"]["bogusField"] = 1
    result = kubectl("apply", "--validate=warn", "-n", namespace, "-f", "-", stdin=manifest(obj))
    assert result.returncode == 0, result.stderr
    assert "Warning" in result.stderr and "bogusField" in result.stderr, result.stderr
    stored = read_rollout(api_client, namespace, "warned")
    assert "bogusField" not in stored["spec"]


def test_apply_of_a_schema_violation_is_the_servers_422(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(rollout("w", weight=150)))
    assert result.returncode != 0
    assert "Invalid" in result.stderr or "invalid" in result.stderr, result.stderr
    absent(lambda: read_rollout(api_client, namespace, "w"))


@pytest.mark.parametrize(
    ("what", "expected"),
    [
        ("rollouts.rollout.dev.spec.strategy", ("KIND:", "Rollout", "canary")),
        ("rollouts.spec.trafficRouting.istio", ("Rollout", "virtualServices")),
        ("virtualservices.spec", ("VirtualService", "FIELD:", "spec")),
        ("configmaps", ("ConfigMap", "data")),
        ("analysistemplates.rollout.dev", ("AnalysisTemplate", "spec")),
    ],
)
def test_explain_prints_field_docs(kubectl: Kubectl, what: str, expected: tuple[str, ...]) -> None:
    out = ok(kubectl("explain", what))
    for text in expected:
        assert text in out, out


def test_explain_of_a_field_that_does_not_exist_fails(kubectl: Kubectl) -> None:
    result = kubectl("explain", "rollouts.rollout.dev.spec.noSuchField")
    assert result.returncode != 0
    assert "noSuchField" in result.stderr, result.stderr


def test_openapi_documents_are_served(api_client: client.ApiClient) -> None:
    pool = api_client.rest_client.pool_manager
    base = server(api_client)
    auth = auth_headers(api_client)
    index = json.loads(pool.request("GET", f"{base}/openapi/v3", headers=auth).data)
    entry = index["paths"][f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"]
    reply = pool.request("GET", base + entry, headers={"Accept": "application/json", **auth})
    assert reply.status == 200
    document = json.loads(reply.data)
    assert document["openapi"].startswith("3.")
    kinds = {
        gvk["kind"]
        for schema in document["components"]["schemas"].values()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    }
    assert {"Rollout", "AnalysisTemplate"} <= kinds
    assert json.loads(pool.request("GET", f"{base}/openapi/v3/api/v1", headers=auth).data)["paths"]
    v2 = pool.request("GET", f"{base}/openapi/v2", headers={"Accept": "application/json", **auth})
    assert v2.status == 200
    assert json.loads(v2.data)["swagger"] == "2.0"


# -- tables: kubectl get shows the printer columns -----------------------------------------------


def _header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def _printer_columns() -> list[str]:
    crd = yaml.safe_load(ROLLOUTS_CRD.read_text())
    version = crd["spec"]["versions"][0]
    return [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]


def test_get_rollouts_shows_the_crds_printer_columns(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    custom_objects(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("web")
    )
    custom_objects(api_client).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        "web",
        {
            "status": {
                "phase": "Progressing",
                "strategy": "Canary",
                "currentStepIndex": 1,
                "stepCount": 3,
                "step": "2/3",
                "weights": {"stable": 70, "canary": 30},
            }
        },
    )
    out = ok(kubectl("get", "rollouts.rollout.dev", "-n", namespace))
    expected = " ".join(["NAME", *_printer_columns()])
    assert " ".join(_header(out)) == expected, out
    row = out.splitlines()[1].split()
    assert row[:5] == ["web", "Progressing", "Canary", "2/3", "30"], out
    single = ok(kubectl("get", "rollouts.rollout.dev", "web", "-n", namespace))
    assert single.splitlines()[1].split()[:2] == ["web", "Progressing"], single


def test_get_of_built_in_kinds_has_name_and_age(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    core_v1(api_client).create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    for what in ("configmaps", "services", "events", "leases", "roles", "poddisruptionbudgets"):
        out = ok(kubectl("get", what, "-n", namespace, "--ignore-not-found"))
        if out:
            header = _header(out)
            assert header[0] in ("NAME", "LAST"), out
    cms = ok(kubectl("get", "configmaps", "c", "-n", namespace))
    assert _header(cms)[0] == "NAME" and _header(cms)[-1] == "AGE", cms
    assert cms.splitlines()[1].split()[0] == "c"
    namespaces = ok(kubectl("get", "namespace", namespace))
    assert _header(namespaces) == ["NAME", "STATUS", "AGE"], namespaces


def test_table_response_through_the_api(api_client: client.ApiClient, namespace: str) -> None:
    custom_objects(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("web")
    )
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    reply = api_client.rest_client.pool_manager.request(
        "GET",
        f"{server(api_client)}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/rollouts",
        headers={"Accept": accept, **auth_headers(api_client)},
    )
    body = json.loads(reply.data)
    assert body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in body["columnDefinitions"] if not c.get("priority")]
    assert [n.upper() for n in names] == ["NAME", *_printer_columns()]
    assert [row["cells"][0] for row in body["rows"]] == ["web"]
    assert body["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert body["rows"][0]["object"]["metadata"]["name"] == "web"


# -- events: kubectl describe shows them ---------------------------------------------------------


def _event(
    namespace: str, involved: dict[str, Any], reason: str, kind: str = "Normal"
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{involved['name']}.{uuid.uuid4().hex[:10]}"},
        "involvedObject": involved,
        "reason": reason,
        "message": f"{reason} happened to {involved['name']}",
        "type": kind,
        "source": {"component": "test-recorder"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
    }


def _ref(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": namespace,
        "uid": obj["metadata"]["uid"],
    }


def test_describe_rollout_shows_its_events(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    objects = custom_objects(api_client)
    web = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("web")
    )
    other = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("other")
    )
    core = core_v1(api_client)
    core.create_namespaced_event(namespace, _event(namespace, _ref(web, namespace), "StepAdvanced"))
    core.create_namespaced_event(
        namespace, _event(namespace, _ref(other, namespace), "OtherThing", "Warning")
    )
    out = ok(kubectl("describe", "rollouts.rollout.dev", "web", "-n", namespace))
    events = out[out.index("Events:") :]
    assert "StepAdvanced" in events and "StepAdvanced happened to web" in events, out
    assert "OtherThing" not in events, out


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("involvedObject.name=web", {"StepAdvanced", "Paused"}),
        ("involvedObject.name=web,involvedObject.kind=Rollout", {"StepAdvanced", "Paused"}),
        ("involvedObject.kind=ConfigMap", {"Touched"}),
        ("involvedObject.name!=web", {"Touched"}),
        ("reason=Paused", {"Paused"}),
        ("type=Warning", {"Paused"}),
        ("source=test-recorder,type=Normal", {"StepAdvanced", "Touched"}),
        ("involvedObject.apiVersion=v1", {"Touched"}),
        (f"involvedObject.apiVersion={GROUP}/{VERSION}", {"StepAdvanced", "Paused"}),
    ],
)
def test_event_field_selectors_on_list(
    api_client: client.ApiClient, namespace: str, selector: str, expected: set[str]
) -> None:
    objects = custom_objects(api_client)
    web = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", rollout("web")
    )
    core = core_v1(api_client)
    cm = as_json(
        api_client, core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}})
    )
    cm["apiVersion"], cm["kind"] = "v1", "ConfigMap"
    core.create_namespaced_event(namespace, _event(namespace, _ref(web, namespace), "StepAdvanced"))
    core.create_namespaced_event(
        namespace, _event(namespace, _ref(web, namespace), "Paused", "Warning")
    )
    core.create_namespaced_event(namespace, _event(namespace, _ref(cm, namespace), "Touched"))
    found = core.list_namespaced_event(namespace, field_selector=selector).items
    assert {e.reason for e in found} == expected
    uid_selector = f"involvedObject.uid={web['metadata']['uid']}"
    assert {
        e.reason for e in core.list_namespaced_event(namespace, field_selector=uid_selector).items
    } == {
        "StepAdvanced",
        "Paused",
    }


def test_event_field_selector_on_watch(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    start = core.list_namespaced_event(namespace).metadata.resource_version
    web = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "web",
        "namespace": namespace,
        "uid": "u1",
    }
    other = {**web, "name": "other", "uid": "u2"}
    core.create_namespaced_event(namespace, _event(namespace, other, "Ignored"))
    core.create_namespaced_event(namespace, _event(namespace, web, "Wanted"))
    events = stream(
        core.list_namespaced_event,
        namespace,
        field_selector="involvedObject.name=web",
        resource_version=start,
        timeout=3,
        until=lambda seen: any(o.get("reason") == "Wanted" for _, o in seen),
    )
    seen = [o["reason"] for _, o in events]
    assert seen == ["Wanted"]


def test_an_unsupported_event_field_selector_is_a_400(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = core_v1(api_client)
    expect_status(
        lambda: core.list_namespaced_event(namespace, field_selector="involvedObject.color=red"),
        400,
        "BadRequest",
    )
    expect_status(
        lambda: core.list_namespaced_config_map(namespace, field_selector="reason=x"),
        400,
        "BadRequest",
    )


# -- dryRun=All ----------------------------------------------------------------------------------


def _quiet_watch(api_client: client.ApiClient, namespace: str, start: str) -> list[str]:
    events = stream(
        custom_objects(api_client).list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        resource_version=start,
        timeout=2,
        until=lambda seen: False,
    )
    seen = [f"{t} {o['metadata']['name']}" for t, o in events]
    return seen


def test_apply_dry_run_server_stores_nothing(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    objects = custom_objects(api_client)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", rollout("web"))
    start = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts")[
        "metadata"
    ]["resourceVersion"]
    before = read_rollout(api_client, namespace, "web")

    out = ok(
        kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest(rollout("new"))
        )
    )
    assert "server dry run" in out, out
    absent(lambda: read_rollout(api_client, namespace, "new"))

    changed = manifest(rollout("web", replicas=7))
    shown = ok(
        kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", "-o", "json", stdin=changed
        )
    )
    assert json.loads(shown)["spec"]["replicas"] == 7
    after = read_rollout(api_client, namespace, "web")
    assert after["spec"]["replicas"] == 2
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    ok(kubectl("delete", "--dry-run=server", "-n", namespace, "rollouts.rollout.dev", "web"))
    assert (
        read_rollout(api_client, namespace, "web")["metadata"]["resourceVersion"]
        == (before["metadata"]["resourceVersion"])
    )
    ok(kubectl("create", "configmap", "c", "--dry-run=server", "-n", namespace))
    absent(lambda: core_v1(api_client).read_namespaced_config_map("c", namespace))
    assert _quiet_watch(api_client, namespace, start) == []


def test_dry_run_still_validates(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    bad = manifest(rollout("w", weight=150))
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=bad)
    assert result.returncode != 0
    assert "150" in result.stderr or "Invalid" in result.stderr, result.stderr
    unknown = rollout("u")
    unknown["spec"]["bogusField"] = 1
    result = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest(unknown)
    )
    assert result.returncode != 0 and "bogusField" in result.stderr, result.stderr
    # A create into a namespace that does not exist fails in dry run too.
    result = kubectl("create", "configmap", "c", "--dry-run=server", "-n", f"{namespace}-missing")
    assert result.returncode != 0 and "not found" in result.stderr, result.stderr


def test_dry_run_through_the_official_client(api_client: client.ApiClient, namespace: str) -> None:
    core = core_v1(api_client)
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}}, dry_run="All"
    )
    assert created.metadata.name == "c" and created.metadata.uid
    absent(lambda: core.read_namespaced_config_map("c", namespace))
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    stored = core.read_namespaced_config_map("c", namespace)
    patched = core.patch_namespaced_config_map("c", namespace, {"data": {"a": "2"}}, dry_run="All")
    assert patched.data == {"a": "2"}
    stored.data = {"a": "3"}
    replaced = core.replace_namespaced_config_map("c", namespace, stored, dry_run="All")
    assert replaced.data == {"a": "3"}
    core.delete_namespaced_config_map("c", namespace, dry_run="All")
    now = core.read_namespaced_config_map("c", namespace)
    assert now.data == {"a": "1"}
    assert now.metadata.resource_version == stored.metadata.resource_version


@pytest.mark.parametrize("value", ["true", "Server", "all"])
def test_other_dry_run_values_are_refused(
    api_client: client.ApiClient, namespace: str, value: str
) -> None:
    core = core_v1(api_client)
    expect_status(
        lambda: core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "c"}}, dry_run=value
        ),
        422,
        "Invalid",
    )
    absent(lambda: core.read_namespaced_config_map("c", namespace))


# -- RBAC and policy kinds; the chart applies ----------------------------------------------------


def test_rbac_and_policy_are_discovered(kubectl: Kubectl) -> None:
    rbac = ok(kubectl("api-resources", "--api-group=rbac.authorization.k8s.io", "-o", "name"))
    assert set(rbac.split()) >= {
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
    }
    policy = ok(kubectl("api-resources", "--api-group=policy", "-o", "name"))
    assert "poddisruptionbudgets.policy" in policy.split()


def _chart_kinds() -> set[str]:
    kinds = set()
    for template in (CHART / "templates").glob("*.yaml"):
        for line in template.read_text().splitlines():
            if line.startswith("kind: "):
                kinds.add(line.split()[1])
    return kinds - {"ServiceMonitor"}  # off by default; needs the Prometheus Operator's CRDs


def test_every_kind_of_the_chart_applies(
    kubectl: Kubectl, api_client: client.ApiClient, namespace: str
) -> None:
    labels = {"app": "rc"}
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rc"}
    subject = [{"kind": "ServiceAccount", "name": "rc", "namespace": namespace}]
    rules = [{"apiGroups": [GROUP], "resources": ["rollouts"], "verbs": ["get", "list", "watch"]}]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "rc"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "rc"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rc"},
            "roleRef": role_ref,
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{namespace}-rc"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{namespace}-rc"},
            "roleRef": {**role_ref, "kind": "ClusterRole", "name": f"{namespace}-rc"},
            "subjects": subject,
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "rc"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "rc"},
            "spec": {"selector": labels, "ports": [{"name": "metrics", "port": 8080}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "rc"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "rc",
                        "containers": [{"name": "c", "image": "example.com/rc:1"}],
                    },
                },
            },
        },
    ]
    assert _chart_kinds() <= {o["kind"] for o in objects}
    text = manifest(*objects)
    out = ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=text))
    assert out.count("created") == len(objects), out
    # Applied again: no error (a PDB reads "configured" on any server: kubectl always sends
    # its selector, whose patch strategy is replace).
    again = ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=text))
    assert "role.rbac.authorization.k8s.io/rc unchanged" in again, again
    rbac = client.RbacAuthorizationV1Api(api_client)
    role: Any = rbac.read_namespaced_role("rc", namespace)
    assert role.rules[0].resources == ["rollouts"]
    assert rbac.read_cluster_role_binding(f"{namespace}-rc").role_ref.name == f"{namespace}-rc"
    pdb: Any = client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget("rc", namespace)
    assert pdb.spec.min_available == 1
    listed = ok(
        kubectl("get", "roles,rolebindings,poddisruptionbudgets", "-n", namespace, "-o", "name")
    )
    assert "role.rbac.authorization.k8s.io/rc" in listed
    assert "poddisruptionbudget.policy/rc" in listed
    ok(kubectl("delete", "clusterrole,clusterrolebinding", f"{namespace}-rc"))
    with pytest.raises(ApiException):
        rbac.read_cluster_role(f"{namespace}-rc")


def _built_helm() -> str | None:
    """helm in the control plane's build cache: the folder ``scripts/kube-build`` prints (it
    takes seconds once built; it builds what is missing, and needs Go for that)."""
    try:
        built = subprocess.run(
            [str(ROOT / "scripts" / "kube-build")],
            capture_output=True,
            text=True,
            timeout=3600,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = built.stdout.strip().splitlines()
    return str(Path(lines[-1]) / "helm") if lines else None


def _helm() -> str:
    """The helm binary: ``$HELM``, PATH, or the control plane's build (``scripts/kube-build``)."""
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), _built_helm()):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "helm not found: put it on PATH, set HELM, or build it with scripts/kube-build",
        pytrace=False,
    )


@pytest.mark.parametrize(
    "overrides",
    [(), ("--set", "podDisruptionBudget.enabled=false"), ("--set", "replicaCount=1")],
)
def test_the_chart_rendered_by_helm_applies(
    kubectl: Kubectl, namespace: str, overrides: tuple[str, ...]
) -> None:
    rendered = subprocess.run(
        [
            _helm(),
            "template",
            f"rc-{namespace}",
            str(CHART),
            "-n",
            namespace,
            "--kube-version",
            "1.31.0",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"Deployment", "ClusterRole", "ServiceAccount"} <= kinds
    out = ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=rendered))
    assert "created" in out
    ok(kubectl("apply", "-n", namespace, "-f", "-", stdin=rendered))
    cluster_scoped = [
        f"{d['kind'].lower()}/{d['metadata']['name']}"
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] in ("ClusterRole", "ClusterRoleBinding")
    ]
    ok(kubectl("delete", *cluster_scoped))
