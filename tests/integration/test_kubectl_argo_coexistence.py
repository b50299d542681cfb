"""Our CRDs beside Argo Rollouts', with the real ``kubectl`` (docs/argo-coexistence.md).

During a migration both ``rollouts.rollout.dev`` and ``rollouts.argoproj.io`` are installed: the
same kind ``Rollout`` and plural ``rollouts``, and Argo's short name ``ro``. kubectl must still
reach ours by the fully qualified name, by our short name ``rdro`` and by our category
``rollout-dev``, and ``ro`` stays Argo's. Runs on both backends (the sandbox and a real
kube-apiserver); the Argo-like CRD is removed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.kube_helpers import Kubectl
from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    apiextensions_v1,
    custom_objects,
    eventually,
    rollout,
)

pytestmark = pytest.mark.integration

ARGO_GROUP = "argoproj.io"
ARGO_CRD = "rollouts.argoproj.io"


def _argo_like_crd() -> dict[str, Any]:
    """The names of Argo Rollouts' Rollout CRD, with an open schema (only the names matter)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": ARGO_CRD},
        "spec": {
            "group": ARGO_GROUP,
            "names": {
                "kind": "Rollout",
                "listKind": "RolloutList",
                "plural": "rollouts",
                "singular": "rollout",
                "shortNames": ["ro"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def argo_crd(api_client: client.ApiClient) -> Iterator[None]:
    """Argo's Rollout CRD installed (and served) for one test, then deleted."""
    ext = apiextensions_v1(api_client)
    ext.create_custom_resource_definition(_argo_like_crd())
    custom = custom_objects(api_client)

    def served() -> None:
        # The real apiserver serves a new CRD a moment after creating it: 404 until then.
        try:
            custom.list_cluster_custom_object(ARGO_GROUP, "v1alpha1", "rollouts")
        except ApiException as exc:
            assert exc.status != 404, "Argo's CRD is not served yet"
            raise

    eventually(served, timeout=30)
    try:
        yield
    finally:
        try:
            ext.delete_custom_resource_definition(ARGO_CRD)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _names(out: str) -> set[str]:
    """The NAME column of ``kubectl get -o name`` output (``kind.group/name`` per line)."""
    return {line.strip() for line in out.splitlines() if line.strip()}


def test_kubectl_reaches_ours_beside_argo(
    sandbox_kubeconfig: Path,
    api_client: client.ApiClient,
    namespace: str,
    argo_crd: None,
    tmp_path: Path,
) -> None:
    custom = custom_objects(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "rollouts", rollout("ours"))
    argo = {
        "apiVersion": f"{ARGO_GROUP}/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "theirs"},
        "spec": {"replicas": 1},
    }
    custom.create_namespaced_custom_object(ARGO_GROUP, "v1alpha1", namespace, "rollouts", argo)
    template = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors"},
        "spec": {"query": "vector(0)", "max": 1},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "analysistemplates", template)
    kubectl = Kubectl(sandbox_kubeconfig, tmp_path / "kubectl-cache")

    # A real apiserver publishes a new CRD in discovery a moment after it is served.
    def argo_short_name() -> None:
        assert _names(kubectl.ok("get", "ro", "-n", namespace, "-o", "name")) == {
            "rollout.argoproj.io/theirs"
        }

    eventually(argo_short_name, timeout=30)

    ours = {"rollout.rollout.dev/ours"}
    assert _names(kubectl.ok("get", "rdro", "-n", namespace, "-o", "name")) == ours
    assert _names(kubectl.ok("get", "rollouts.rollout.dev", "-n", namespace, "-o", "name")) == ours
    assert _names(kubectl.ok("get", "rdat", "-n", namespace, "-o", "name")) == {
        "analysistemplate.rollout.dev/errors"
    }
    assert _names(kubectl.ok("get", "rollout-dev", "-n", namespace, "-o", "name")) == {
        "rollout.rollout.dev/ours",
        "analysistemplate.rollout.dev/errors",
    }
    # The table shows our printer columns through the short name.
    table = kubectl.ok("get", "rdro", "ours", "-n", namespace)
    assert table.split()[:2] == ["NAME", "PHASE"], table
    # And the plain plural is ambiguous: kubectl picks one group, which is why the docs always
    # spell ours rollouts.rollout.dev.
    plain = _names(kubectl.ok("get", "rollouts", "-n", namespace, "-o", "name"))
    assert plain in ({"rollout.argoproj.io/theirs"}, ours)
    # kubectl explain through the short name shows our schema.
    assert "blueGreen" in kubectl.ok("explain", "rdro.spec.strategy")
    assert yaml.safe_load(kubectl.ok("get", "rdro", "ours", "-n", namespace, "-o", "yaml"))[
        "apiVersion"
    ] == (f"{GROUP}/{VERSION}")
