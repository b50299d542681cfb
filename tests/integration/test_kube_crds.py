"""Our CRDs on a real kube-apiserver: accepted as generated, their CEL rules evaluated, their
printer columns shown by ``kubectl get``.

The control plane creates ``crds/*.yaml`` (``rollout/api/crdgen.py``'s output) at start-up; a
schema that is not structural, or a CEL rule over the cost budget, would be refused there or
marked by a condition. Creates exercise the rules: a valid Rollout is stored, each invalid one
is refused with the rule's message at its field path.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.controller_helpers import rollout_manifest
from tests.integration.kube_helpers import ROOT, Kubectl
from tests.integration.sandbox_helpers import GROUP, VERSION, custom_objects

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

CRDS = sorted((ROOT / "crds").glob("*.yaml"))


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sandbox_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


def test_the_crds_are_the_generated_ones() -> None:
    assert [p.name for p in CRDS] == [
        "rollout.dev_analysistemplates.yaml",
        "rollout.dev_rollouts.yaml",
    ]


@pytest.mark.parametrize("path", CRDS, ids=[p.stem for p in CRDS])
def test_each_crd_is_established_with_a_structural_schema(
    api_client: client.ApiClient, kubectl: Kubectl, path: Path
) -> None:
    generated = yaml.safe_load(path.read_text())
    name = generated["metadata"]["name"]
    api = client.ApiextensionsV1Api(api_client)
    raw: Any = api.read_custom_resource_definition(name, _preload_content=False)
    served = json.loads(raw.data)
    conditions = {c["type"]: c for c in served["status"].get("conditions") or []}
    assert conditions["Established"]["status"] == "True", conditions
    assert conditions["NamesAccepted"]["status"] == "True", conditions
    assert "NonStructuralSchema" not in conditions, conditions["NonStructuralSchema"]
    # What the server holds is what crdgen wrote (no field pruned, no default added).
    for mine, theirs in zip(generated["spec"]["versions"], served["spec"]["versions"], strict=True):
        assert theirs["schema"] == mine["schema"]
        assert theirs.get("additionalPrinterColumns") == mine.get("additionalPrinterColumns")
        assert theirs.get("subresources") == mine.get("subresources")
    # And the file as generated is accepted again (a fresh validation, CEL cost budget included).
    out = kubectl.ok("apply", "--dry-run=server", "--server-side", "-f", str(path))
    assert name in out


def valid_rollout(name: str = "web") -> dict[str, Any]:
    manifest = rollout_manifest(name, steps=[{"setWeight": 20}, {"pause": {"duration": "5s"}}])
    manifest["spec"]["analysis"] = {
        "interval": "30s",
        "prometheus": {"bearerTokenSecret": {"name": "prom", "key": "token"}},
        "checks": [{"name": "errors", "errorRate": {"max": 0.01}}],
    }
    return manifest


ISTIO = "spec.trafficRouting.istio"
# One mistake each that only a CEL rule (x-kubernetes-validations) of the schema catches.
CEL_MISTAKES = {
    "same-subsets": (
        {ISTIO + ".destinationRule.canarySubset": "stable"},
        ISTIO + ".destinationRule",
        "stableSubset and canarySubset must differ",
    ),
    "stable-service-alone": (
        {ISTIO + ".destinationRule": None, ISTIO + ".stableService": "web-stable"},
        "spec.trafficRouting.istio",
        "stableService and canaryService go together",
    ),
    "interval-under-1s": (
        {"spec.analysis.interval": "500ms"},
        "spec.analysis.interval",
        "must be at least 1s",
    ),
    "two-auths": (
        {"spec.analysis.prometheus.basicAuthSecret": "prom-basic"},
        "spec.analysis.prometheus",
        "set at most one of bearerTokenSecret, bearerTokenFile, basicAuthSecret",
    ),
    "error-rate-without-threshold": (
        {"spec.analysis.checks": [{"name": "errors", "errorRate": {"minRequests": 5}}]},
        "spec.analysis.checks[0].errorRate",
        "errorRate needs max or maxIncreaseOverStable",
    ),
    "two-kinds-of-check": (
        {
            "spec.analysis.checks": [
                {"name": "e", "errorRate": {"max": 0.1}, "latencyP99": {"maxMs": 100}}
            ]
        },
        "spec.analysis.checks[0]",
        "a check has exactly one of errorRate, latencyP99, templateRef",
    ),
}


def mutated(changes: dict[str, Any]) -> dict[str, Any]:
    doc = valid_rollout()
    for path, value in changes.items():
        parts = path.split(".")
        parent = doc
        for part in parts[:-1]:
            parent = parent[part]
        if value is None:
            del parent[parts[-1]]
        else:
            parent[parts[-1]] = copy.deepcopy(value)
    return doc


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    return custom_objects(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "rollouts", body
    )


def test_a_valid_rollout_passes_every_rule(api_client: client.ApiClient, namespace: str) -> None:
    created = create(api_client, namespace, valid_rollout())
    assert created["metadata"]["uid"]


@pytest.mark.parametrize(
    ("changes", "field", "message"), CEL_MISTAKES.values(), ids=CEL_MISTAKES.keys()
)
def test_each_cel_rule_is_evaluated_on_create(
    api_client: client.ApiClient,
    namespace: str,
    changes: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with pytest.raises(ApiException) as refused:
        create(api_client, namespace, mutated(changes))
    assert refused.value.status == 422, refused.value.body
    causes = json.loads(str(refused.value.body))["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes


def test_the_selector_rule_compares_with_the_old_object(
    api_client: client.ApiClient, namespace: str
) -> None:
    # A transition rule (oldSelf): evaluated on update only.
    create(api_client, namespace, valid_rollout())
    patch = {"spec": {"selector": {"matchLabels": {"app": "other"}}}}
    with pytest.raises(ApiException) as refused:
        custom_objects(api_client).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "rollouts",
            "web",
            patch,
            _content_type="application/merge-patch+json",
        )
    assert refused.value.status == 422
    assert "selector is immutable" in str(refused.value.body)


def test_the_printer_columns_are_shown_by_kubectl_get(
    api_client: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create(api_client, namespace, valid_rollout())
    status = {
        "phase": "Progressing",
        "strategy": "canary",
        "currentStepIndex": 1,
        "stepCount": 3,
        "step": "2/3",
        "weights": {"canary": 20, "stable": 80},
    }
    custom_objects(api_client).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "rollouts",
        "web",
        {"status": status},
        _content_type="application/merge-patch+json",
    )
    out = kubectl.ok("get", "rollouts.rollout.dev", "-n", namespace)
    header, row = out.splitlines()
    assert re.split(r"\s{2,}", header.strip()) == [
        "NAME",
        "PHASE",
        "STRATEGY",
        "STEP",
        "CANARY WEIGHT",
        "AGE",
    ]
    assert re.split(r"\s{2,}", row.strip())[:5] == ["web", "Progressing", "canary", "2/3", "20"]
