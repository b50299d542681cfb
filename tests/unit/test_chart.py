"""The Helm chart in charts/rollout-controller.

Linted by real Helm (the helm-sdkpy bindings load Helm's Go library; ``helm lint`` renders every
template with the chart's values and validates them against values.schema.json), with the
default values and with the non-default switches. helm-sdkpy has no ``template``/dry-run API:
the rendered manifests are inspected with the real ``helm template`` binary (the one
scripts/kube-build builds, as tests/integration/test_kube_chart.py uses), and every rendered
object is validated against the strict Kubernetes schema of its kind (``kubernetes-validate``,
through rollout.podspec). The RBAC, security and probe checks further down read the templates'
own YAML (template actions stripped) and values.yaml.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from rollout import podspec
from rollout.cli import app
from tests.integration.kube_helpers import KUBE_VERSION, helm

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
    # Which Secrets, if any: test_secrets_none_by_default_or_only_the_named_ones.


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


# --- Rendered by the real `helm template`, every object checked against Kubernetes' schemas ---

RELEASE_38 = "payments-progressive-delivery-eu-west1"  # 38 characters
RELEASE_53 = "payments-progressive-delivery-controller-eu-west1-prd"  # 53: helm's maximum


@functools.cache
def _helm() -> str:
    return helm()  # looked up once: scripts/kube-build is a subprocess


def _template(
    chart: Path, release: str, *sets: str, show_only: str | None = None
) -> subprocess.CompletedProcess[str]:
    args = [_helm(), "template", release, str(chart), "-n", "ops", "--kube-version", KUBE_VERSION]
    if show_only:
        args += ["--show-only", show_only]
    for value in sets:
        args += ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _render(release: str, *sets: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """The chart rendered by helm (``--set`` each of ``sets``); each object valid for its kind."""
    result = _template(chart, release, *sets)
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert objects
    minor = ".".join(KUBE_VERSION.split(".")[:2])
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":  # a custom resource: no schema in the package
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert podspec.object_problems(obj, minor) == [], where
    return objects


def _kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_object_problems_is_strict_and_says_where() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": "eighty"}]},
    }
    assert podspec.object_problems(service) == [
        "spec.ports[0].port: 'eighty' is not of type 'integer'"
    ]
    service["spec"] = {"portz": []}
    assert len(podspec.object_problems(service)) == 1
    crd = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {}}
    assert podspec.object_problems(crd) == ["monitoring.coreos.com/v1/ServiceMonitor: no schema"]


RENDERED_OVERRIDES = {
    "defaults": (),
    "one-replica": ("replicaCount=1",),
    "no-leader-election": ("controller.leaderElect=false", "replicaCount=1"),
    "named-secrets-hard-anti-affinity": (
        "rbac.secretNames[0]=prometheus-token",
        "rbac.secretNames[1]=prometheus-ca",
        "podAntiAffinity=hard",
        "replicaCount=3",
    ),
    "any-secret-no-anti-affinity-servicemonitor": (
        "rbac.secretsGet=true",
        "podAntiAffinity=none",
        "metrics.serviceMonitor.enabled=true",
    ),
    "shards": (
        "shards[0].name=a-long-shard-name-20",
        "shards[0].selector=shard=a",
        "shards[1].name=rest",
        "shards[1].selector=!shard",
        "shards[1].replicaCount=1",
    ),
}


def _lease_names(deployment: dict[str, Any]) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [a.removeprefix("--lease-name=") for a in container["args"] if "--lease-name=" in a]


@pytest.mark.parametrize("release", ["rc", RELEASE_38, RELEASE_53])
@pytest.mark.parametrize("sets", RENDERED_OVERRIDES.values(), ids=RENDERED_OVERRIDES.keys())
def test_every_name_is_a_dns_label_for_any_release_name(release: str, sets: tuple[str]) -> None:
    """(Before: a 38-character release name gave a 65-character metrics Service name.) Each
    name is at most 63 characters with no trailing '-', and the names of one kind stay
    distinct. Every object is valid for its kind (``_render``)."""
    objects = _render(release, *sets)
    names: dict[str, list[str]] = {}
    for obj in objects:
        names.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    names["Lease"] = [n for d in _kinds(objects, "Deployment") for n in _lease_names(d)]
    for kind, found in names.items():
        assert len(set(found)) == len(found), (kind, found)
        for name in found:
            assert len(name) <= 63, (kind, name)
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), (kind, name)
    assert names["Service"][0].endswith("-metrics")


def test_suffixed_names_cut_the_full_name_and_keep_the_suffix() -> None:
    """Helm's convention (``trunc 63 | trimSuffix "-"``) on the full name, cut shorter by the
    suffix's length, so that ``-metrics``, ``-leader-election`` and ``-<shard>`` survive."""
    fullname = f"{RELEASE_53}-rollout-controller"  # 72 characters
    objects = _render(RELEASE_53, "shards[0].name=a", "shards[0].selector=shard=a")
    (deployment,) = _kinds(objects, "Deployment")
    assert deployment["metadata"]["name"] == fullname[:61] + "-a"
    assert _lease_names(deployment) == [fullname[:61] + "-a"]
    assert [r["metadata"]["name"] for r in _kinds(objects, "Role")] == [
        fullname[:47] + "-leader-election"
    ]
    assert _kinds(objects, "ClusterRole")[0]["metadata"]["name"] == fullname[:63]
    # Cut on a '-': trimmed, never "--metrics". "r"*46 + "-rollout-controller" cut to 63 - 8
    # characters ends in "-rollout-".
    (service,) = _kinds(_render("r" * 46), "Service")  # cut at 55: "r"*46 + "-rollout" + "-"
    assert service["metadata"]["name"] == "r" * 46 + "-rollout-metrics"


def _secret_rules(*sets: str) -> list[dict[str, Any]]:
    (role,) = _kinds(_render("rc", *sets), "ClusterRole")
    return [r for r in role["rules"] if "secrets" in r["resources"]]


def test_secrets_none_by_default_or_only_the_named_ones() -> None:
    """(Before: `get` on every Secret in the cluster by default.)"""
    assert _secret_rules() == []
    names = ("rbac.secretNames[0]=prometheus-token", "rbac.secretNames[1]=prometheus-ca")
    limited = {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["prometheus-token", "prometheus-ca"],
    }
    assert _secret_rules(*names) == [limited]
    assert _secret_rules(*names, "rbac.secretsGet=true") == [limited]  # the names still limit
    assert _secret_rules("rbac.secretsGet=true") == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]
    refused = _template(CHART, "rc", "rbac.secretNames[0]=Not_A_Name")
    assert refused.returncode != 0 and "/rbac/secretNames/0" in refused.stderr
    # values.yaml documents both.
    text = (CHART / "values.yaml").read_text()
    assert "secretNames: []" in text and "secretsGet: false" in text


@pytest.mark.parametrize(
    ("sets", "budgets"),
    [
        ((), {"rc-rollout-controller": 1}),
        (("replicaCount=1",), {}),
        (("replicaCount=0",), {}),
        (("replicaCount=2", "podDisruptionBudget.minAvailable=2"), {}),
        (("replicaCount=3", "podDisruptionBudget.minAvailable=2"), {"rc-rollout-controller": 2}),
        (("podDisruptionBudget.enabled=false",), {}),
        (("podDisruptionBudget.minAvailable=50%",), {"rc-rollout-controller": "50%"}),
        (("podDisruptionBudget.minAvailable=100%",), {}),
        (("replicaCount=3", "podDisruptionBudget.minAvailable=70%"), {}),  # 2.1: all 3
        (
            (
                "shards[0].name=a",
                "shards[0].selector=shard=a",
                "shards[1].name=b",
                "shards[1].selector=!shard",
                "shards[1].replicaCount=1",
            ),
            {"rc-rollout-controller-a": 1},
        ),
    ],
    ids=[
        "defaults",
        "one",
        "zero",
        "min-equals-replicas",
        "three-min-two",
        "disabled",
        "half",
        "all",
        "three-sixty-percent",
        "shards",
    ],
)
def test_the_pdb_never_blocks_a_drain(sets: tuple[str, ...], budgets: dict[str, int | str]) -> None:
    """(Before: a PodDisruptionBudget with minAvailable 1 for a single replica, which no
    eviction can ever satisfy, so `kubectl drain` of its node waits forever.) Rendered only
    where the Deployment has more replicas than the budget keeps available, per shard."""
    objects = _render("rc", *sets)
    found = {
        p["metadata"]["name"]: p["spec"]["minAvailable"]
        for p in _kinds(objects, "PodDisruptionBudget")
    }
    assert found == budgets
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in _kinds(objects, "Deployment")}
    for name, keep in found.items():
        if isinstance(keep, str):  # a percentage of the pods, rounded up (as Kubernetes does)
            keep = -(-replicas[name] * int(keep.removesuffix("%")) // 100)
        assert replicas[name] > keep  # one eviction is always allowed
        (pdb,) = [
            p for p in _kinds(objects, "PodDisruptionBudget") if p["metadata"]["name"] == name
        ]
        (deployment,) = [d for d in _kinds(objects, "Deployment") if d["metadata"]["name"] == name]
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize(
    "sets",
    [
        ("controller.leaderElect=false",),  # replicaCount 2, the default
        ("controller.leaderElect=false", "replicaCount=3"),
        (
            "controller.leaderElect=false",
            "replicaCount=1",
            "shards[0].name=a",
            "shards[0].selector=shard=a",
            "shards[0].replicaCount=2",
        ),
    ],
    ids=["default-replicas", "three", "a-shards-replicas"],
)
def test_the_schema_refuses_no_leader_election_with_replicas(sets: tuple[str, ...]) -> None:
    """(Before: accepted, and every replica reconciled the same Rollouts.) Refused by Helm's
    own schema validation, naming the value; helm lint (the Go library) refuses it too."""
    result = _template(CHART, "rc", *sets)
    assert result.returncode != 0
    assert "replicaCount" in result.stderr and "maximum" in result.stderr, result.stderr


def test_the_schema_accepts_no_leader_election_with_one_replica(tmp_path: Path) -> None:
    objects = _render("rc", "controller.leaderElect=false", "replicaCount=1")
    (deployment,) = _kinds(objects, "Deployment")
    assert "--no-leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert _kinds(objects, "Role") == []
    chart = _chart_with(tmp_path, {"controller.leaderElect": False})  # replicaCount 2
    assert _problems(_lint(chart)) != []
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError, match="maximum"):
        jsonschema.validate({**_values(), "controller": {"leaderElect": False}}, schema)


def _affinity(*sets: str) -> list[Any]:
    return [
        d["spec"]["template"]["spec"].get("affinity")
        for d in _kinds(_render("rc", *sets), "Deployment")
    ]


def test_replicas_prefer_distinct_nodes_by_default() -> None:
    """(Before: no affinity: both replicas could land on one node and go down together.)"""
    selector = {"app.kubernetes.io/name": "rollout-controller", "app.kubernetes.io/instance": "rc"}
    assert _affinity() == [
        {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": selector},
                        },
                    }
                ]
            }
        }
    ]
    # Sharded: each shard's replicas spread among themselves (their own selector).
    sharded = _affinity("shards[0].name=a", "shards[0].selector=x")
    term = sharded[0]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        **selector,
        "rollout.dev/controller-shard": "a",
    }
    (hard,) = _affinity("podAntiAffinity=hard")
    assert hard["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
    ]
    assert _affinity("podAntiAffinity=none") == [None]
    # A user's affinity replaces the default entirely; topology spread adds to it.
    own = (
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key=pool"
    )
    objects = _render(
        "rc",
        own,
        own.replace(".key=pool", ".operator=Exists"),
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    )
    (spec,) = [d["spec"]["template"]["spec"] for d in _kinds(objects, "Deployment")]
    assert set(spec["affinity"]) == {"nodeAffinity"}
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert _template(CHART, "rc", "podAntiAffinity=sometimes").returncode != 0


def _notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as Helm renders it (``helm template`` omits it: a probe template includes it by
    its template name, in a copy of the chart)."""
    chart = tmp_path / "rollout-controller"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "notes-probe.yaml").write_text(
        'notes: {{ include "rollout-controller/templates/NOTES.txt" . | toJson }}\n'
    )
    result = _template(chart, "rc", *sets, show_only="templates/notes-probe.yaml")
    assert result.returncode == 0, result.stderr
    notes: str = yaml.safe_load(result.stdout)["notes"]
    return notes


def test_notes_point_at_the_leaders_logs(tmp_path: Path) -> None:
    """(Before: `kubectl logs deploy/...`, which picks any pod, often a standby.)"""
    notes = _notes(tmp_path)
    holder = "get lease rollout-controller -o jsonpath='{.spec.holderIdentity}'"
    assert f"kubectl -n ops {holder}" in notes
    assert f'kubectl -n ops logs -f "$(kubectl -n ops {holder} | cut -d_ -f1)"' in notes
    assert "logs deploy/" not in notes
    sharded = _notes(
        tmp_path / "s",
        "shards[0].name=a",
        "shards[0].selector=x",
        "shards[1].name=b",
        "shards[1].selector=!x",
    )
    for shard in ("a", "b"):
        assert f"get lease rc-rollout-controller-{shard} -o jsonpath" in sharded
    single = _notes(tmp_path / "one", "controller.leaderElect=false", "replicaCount=1")
    assert "kubectl -n ops logs -f deploy/rc-rollout-controller" in single
    assert "lease" not in single.lower()
    assert "rbac.secretNames" in notes  # no Secret by default: the note says how to allow one
