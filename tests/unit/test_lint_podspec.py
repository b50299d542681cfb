"""``rollout lint`` checks a Rollout's pod template against the Kubernetes PodSpec schema: unknown
fields and wrong types with their paths, nothing new on valid templates, the schema's version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from rollout.lint import lint_paths
from tests.unit.test_lint import ROOT, canary_docs, lint, mutate, write

POD = "spec.template.spec"


def lint_pod(tmp_path: Path, pod: dict[str, Any], *args: str) -> tuple[int, list[str], Path]:
    rollout, template = canary_docs()
    path = write(tmp_path / "rollout.yaml", mutate(rollout, {POD: pod}), template)
    result = lint(*args, path)
    return result.exit_code, result.stdout.splitlines(), path


def test_a_misspelt_container_field_is_an_error_with_its_path(tmp_path: Path) -> None:
    code, lines, path = lint_pod(tmp_path, {"containers": [{"name": "x", "imagee": "y"}]})
    assert code == 1
    assert lines == [f"{path}: Rollout/reviews: {POD}.containers[0].imagee: unknown field"]


def test_every_mistake_of_a_pod_spec_is_reported_at_once(tmp_path: Path) -> None:
    pod = {
        "initContainers": [{"name": "init", "image": "busybox", "comand": ["true"]}],
        "containers": [
            {"name": "app", "image": "x:1", "ports": [{"containerPort": "http"}]},
            {"name": "side", "image": "y:1", "resources": {"limit": {"cpu": "1"}}},
        ],
        "restartPolicy": 3,
        "nodeSelectr": {"disk": "ssd"},
    }
    code, lines, path = lint_pod(tmp_path, pod)
    assert code == 1
    prefix = f"{path}: Rollout/reviews: {POD}"
    assert sorted(lines) == sorted(
        [
            f"{prefix}.initContainers[0].comand: unknown field",
            f'{prefix}.containers[0].ports[0].containerPort: must be an integer, not "http"',
            f"{prefix}.containers[1].resources.limit: unknown field",
            f"{prefix}.restartPolicy: must be a string, not 3",
            f"{prefix}.nodeSelectr: unknown field",
        ]
    )


def test_a_full_valid_pod_spec_is_clean(tmp_path: Path) -> None:
    pod = {
        "serviceAccountName": "reviews",
        "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
        "initContainers": [
            {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"},
        ],
        "containers": [
            {
                "name": "app",
                "image": "example.com/reviews:2",
                "args": ["--port", "8080"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "MODE", "value": "canary"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/reviews"}],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": "reviews"}}],
        "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 30,
    }
    code, lines, _ = lint_pod(tmp_path, pod)
    assert (code, lines) == (0, [])


def test_every_example_gets_no_pod_spec_problem() -> None:
    folders = [ROOT / "crds" / "examples", ROOT / "docs" / "examples"]
    report = lint_paths(folders, allow_missing_templates=True)
    assert report.manifests
    found = [f"{m.source}: {p}" for m in report.manifests for p in m.problems if POD in p.path]
    assert found == []


def test_the_kubernetes_version_picks_the_schema(tmp_path: Path) -> None:
    # restartPolicy of an init container (sidecars) is in the schema from 1.28 on.
    pod = {
        "initContainers": [{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}],
        "containers": [{"name": "app", "image": "x:1"}],
    }
    assert lint_pod(tmp_path, pod, "--kubernetes-version", "1.28")[:2] == (0, [])
    code, lines, path = lint_pod(tmp_path, pod, "--kubernetes-version", "v1.27.3")
    assert code == 1
    assert lines == [
        f"{path}: Rollout/reviews: {POD}.initContainers[0].restartPolicy: unknown field"
    ]


def test_list_items_and_no_duplicate_for_a_pod_spec_without_containers(tmp_path: Path) -> None:
    rollout, _ = canary_docs()
    bad = mutate(rollout, {POD: {"containers": [{"name": "x", "imagee": "y"}]}})
    empty = mutate(rollout, {POD: {"containers": []}, "metadata.name": "other"})
    path = write(
        tmp_path / "list.yaml", {"apiVersion": "v1", "kind": "List", "items": [bad, empty]}
    )
    result = lint(path, "--allow-missing-templates")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == (
        f"{path}: Rollout/reviews: items[0].{POD}.containers[0].imagee: unknown field"
    )
    others = [line for line in result.stdout.splitlines() if "Rollout/other" in line]
    assert len(others) == 1 and "at least one container" in others[0], others


def test_lint_and_help_do_not_load_the_schemas(tmp_path: Path) -> None:
    _, template = canary_docs()
    path = write(tmp_path / "template.yaml", template)
    code = (
        "import sys\n"
        "import rollout.cli, rollout.lint\n"
        f"assert rollout.lint.run_lint([{str(path)!r}]) == 0\n"
        "assert 'kubernetes_validate' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_type_errors_read_as_yaml_and_a_bad_quantity_does_not_hide_the_rest(
    tmp_path: Path,
) -> None:
    """``must be an integer, not true`` (JSON Schema said ``True is not of type 'integer',
    'null'``), and a value that fits none of a quantity's types is reported without stopping
    the search: the errors after it are reported too."""
    pod = {
        "securityContext": {"runAsUser": True},
        "containers": [
            {
                "name": "app",
                "image": "x:1",
                "resources": {"limits": {"cpu": [1]}},
                "livenessProbe": {"httpGet": {"port": None}},
                "tty": "yes",
            }
        ],
    }
    code, lines, path = lint_pod(tmp_path, pod)
    assert code == 1
    prefix = f"{path}: Rollout/reviews: {POD}"
    assert sorted(lines) == sorted(
        [
            f"{prefix}.securityContext.runAsUser: must be an integer, not true",
            f"{prefix}.containers[0].resources.limits.cpu: must be a string or a number, not [1]",
            f"{prefix}.containers[0].livenessProbe.httpGet.port: must be a string or an integer, "
            "not null",
            f'{prefix}.containers[0].tty: must be a boolean, not "yes"',
        ]
    )
