"""The Helm chart in charts/rollout-controller.

Linted by real Helm (the helm-sdkpy bindings load Helm's Go library; ``helm lint`` renders every
template with the chart's values and validates them against values.schema.json), with the
default values and with the non-default switches. helm-sdkpy has no ``template``/dry-run API,
so the rendered manifests cannot be inspected here: the RBAC, security and probe checks below
read the templates' own YAML (template actions stripped) and values.yaml. They are static
checks, honest as far as they go.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from rollout.cli import app

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rollout-controller"
TEMPLATES = CHART / "templates"
HELM_WARNING = 2  # helm's support.WarningSev; 1 is info, 3 error


def _lint(chart: Path) -> dict[str, Any]:
    try:
        import helm_sdkpy
    except ImportError:  # a skip would hide a broken setup: scripts/setup installs it
        pytest.fail("helm-sdkpy is not installed: run scripts/setup", pytrace=False)
    result: dict[str, Any] = asyncio.run(
        helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(str(chart))
    )
    return result


def _problems(result: dict[str, Any]) -> list[Any]:
    # The Go errors do not survive JSON ({}): say where, and how bad.
    return [
        (m["Path"], m["Severity"])
        for m in result.get("Messages") or []
        if m["Severity"] >= HELM_WARNING
    ] + list(result.get("Errors") or [])


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def _chart_with(tmp_path: Path, changes: dict[str, Any]) -> Path:
    chart = tmp_path / "rollout-controller"
    shutil.copytree(CHART, chart)
    values = _values()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node[key]
        node[leaf] = value
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    return chart


def _static_docs(template: str) -> list[Any]:
    """The template's YAML with template actions removed: whole-line actions dropped, inline
    ones replaced by a placeholder."""
    lines = []
    for line in (TEMPLATES / template).read_text().splitlines():
        if re.fullmatch(r"\s*\{\{.*\}\}\s*", line):
            continue
        lines.append(re.sub(r"\{\{.*?\}\}", "TEMPLATED", line))
    return [doc for doc in yaml.safe_load_all("\n".join(lines)) if doc]


def test_crds_are_byte_identical_copies() -> None:
    top = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").iterdir())
    assert copies == top  # the CRDs, not the examples
    for name in top:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), name


def test_helm_lint_default_values() -> None:
    result = _lint(CHART)
    assert result["TotalChartsLinted"] == 1
    assert _problems(result) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"rbac.secretsGet": False, "metrics.serviceMonitor.enabled": True},
        {"controller.leaderElect": False, "replicaCount": 1, "podDisruptionBudget.enabled": False},
        {
            "controller.watchNamespace": "shop",
            "controller.prometheusUrl": "http://prometheus.monitoring:9090",
            "serviceAccount.create": False,
            "serviceAccount.name": "existing",
            "rbac.create": False,
        },
        {
            "shards": [
                {"name": "a", "selector": "shard=a"},
                {"name": "b", "selector": "shard in (b, c)", "replicaCount": 3},
                {"name": "rest", "selector": "!shard"},
            ]
        },
    ],
    ids=["no-secrets-servicemonitor", "no-leader-election", "namespace-existing-sa", "shards"],
)
def test_helm_lint_other_values(tmp_path: Path, changes: dict[str, Any]) -> None:
    assert _problems(_lint(_chart_with(tmp_path, changes))) == []


def test_helm_lint_finds_errors(tmp_path: Path) -> None:
    """The lint is real: a value the schema rejects and a template that fails to render."""
    chart = _chart_with(tmp_path, {"replicaCount": "two"})
    (chart / "templates" / "broken.yaml").write_text("{{ .Values.nope.missing }}\n")
    assert len(_problems(_lint(chart))) >= 2


@pytest.mark.parametrize(
    "shards",
    [
        [{"name": "a"}],
        [{"name": "a", "selector": ""}],
        [{"name": "Shard_A", "selector": "shard=a"}],
    ],
    ids=["no-selector", "empty-selector", "bad-name"],
)
def test_helm_lint_refuses_bad_shards(tmp_path: Path, shards: list[dict[str, str]]) -> None:
    # (A name used twice is a `fail` in the template, which helm lint ignores: rendered by the
    # real helm in tests/integration/test_kube_chart.py.)
    assert _problems(_lint(_chart_with(tmp_path, {"shards": shards}))) != []


def test_values_match_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(_values(), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_values(), "unknown": 1}, schema)


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for template in ("clusterrole.yaml", "role.yaml"):
        for doc in _static_docs(template):
            rules += doc.get("rules") or []
    return rules


def test_rbac_has_no_wildcards() -> None:
    rules = _rules()
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in "".join(rule.get(key) or []), rule
    for template in ("clusterrole.yaml", "role.yaml"):
        body = [ln for ln in (TEMPLATES / template).read_text().splitlines() if "#" not in ln]
        assert not any("*" in ln for ln in body), template


def test_rbac_is_exactly_what_the_controller_calls() -> None:
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in _rules()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    watched = ["get", "list", "watch"]
    assert granted == {
        ("rollout.dev", "rollouts"): sorted([*watched, "patch"]),  # rollout.dev/revision
        ("rollout.dev", "rollouts/status"): ["patch"],
        ("rollout.dev", "rollouts/finalizers"): ["update"],
        ("rollout.dev", "analysistemplates"): watched,
        ("apps", "replicasets"): sorted([*watched, "create", "patch", "delete"]),
        ("networking.istio.io", "virtualservices"): sorted([*watched, "patch"]),
        ("networking.istio.io", "destinationrules"): sorted([*watched, "patch"]),
        ("", "services"): sorted([*watched, "patch"]),
        ("", "events"): ["create"],
        ("", "secrets"): ["get"],
        ("coordination.k8s.io", "leases"): ["create", "get", "update"],
    }
    text = (TEMPLATES / "clusterrole.yaml").read_text()
    assert re.search(r"if \.Values\.rbac\.secretsGet \}\}\n(\s*#.*\n)+.*\n.*secrets", text)


def _deployment() -> dict[str, Any]:
    (doc,) = _static_docs("deployment.yaml")
    assert doc["kind"] == "Deployment"
    return doc  # type: ignore[no-any-return]


def test_deployment_security() -> None:
    values = _values()
    assert values["replicaCount"] == 2
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    container = values["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert values["resources"]["requests"] and values["resources"]["limits"]
    text = (TEMPLATES / "deployment.yaml").read_text()
    assert "toYaml $.Values.securityContext | nindent 12" in text
    assert "toYaml $.Values.podSecurityContext | nindent 8" in text
    assert "toYaml $.Values.resources | nindent 12" in text
    # The read-only root filesystem needs a writable /tmp for the gates' CA bundles.
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_deployment_probes_on_health_port() -> None:
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports) == {"metrics", "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    text = (TEMPLATES / "deployment.yaml").read_text()
    assert "containerPort: {{ $.Values.controller.healthPort }}" in text
    assert "--health-port={{ $.Values.controller.healthPort }}" in text


def test_deployment_args_are_controller_options() -> None:
    command = typer.main.get_command(app).commands["controller"]  # type: ignore[attr-defined]
    options = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    text = (TEMPLATES / "deployment.yaml").read_text()
    used = set(re.findall(r"^\s*- (--[a-z-]+)", text, re.MULTILINE))
    used |= set(re.findall(r'printf "(--[a-z-]+)=', text))
    assert {"--bind-address", "--leader-elect", "--lease-namespace", "--health-port"} <= used
    assert {"--shard-selector", "--lease-name"} <= used
    assert used <= options, used - options
    assert "- --bind-address=0.0.0.0" in text
    # The image's ENTRYPOINT is `rollout controller`: the args are options only.
    assert re.search(r"args:\n\s*- --", text)
    assert '"rollout", "controller"' in (ROOT / "Dockerfile").read_text()
