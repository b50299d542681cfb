"""The Helm chart on a real kube-apiserver: it applies, and its RBAC is enough, and no more.

The chart is rendered by the real ``helm`` and applied with ``kubectl``; then ``rollout
controller`` runs with the arguments of the chart's Deployment, authenticated as the chart's
ServiceAccount (a token from the TokenRequest API), while the apiserver enforces RBAC: a verb
or resource the chart forgot is a 403 in the controller's log or a Warning Event. The
controller goes through a full canary with a gate against a real Prometheus, so every call of
that path (caches, ReplicaSets, routing patches, status, Events, the Lease, the gate's
AnalysisTemplate and its Secret) is made as the ServiceAccount.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout.domain.revision import HASH_LABEL
from rollout.sandbox.istio_metrics import Workload
from tests.integration.controller_helpers import (
    Cluster,
    canary_weight,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.kube_helpers import (
    CHART,
    KUBE_VERSION,
    ControllerProcess,
    Kubectl,
    documents,
    forbidden_lines,
    helm,
    render_chart,
    service_account_kubeconfig,
)
from tests.integration.sandbox_helpers import GROUP, VERSION, core_v1, custom_objects, eventually
from tests.integration.test_controller_gates import GateWorld, gate_world

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

__all__ = ["gate_world"]  # the module-scoped real Prometheus, shared with the gate tests


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sandbox_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


def cluster_scoped(rendered: str) -> list[str]:
    return [
        f"{d['kind'].lower()}.rbac.authorization.k8s.io/{d['metadata']['name']}"
        for d in documents(rendered)
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
    ]


@pytest.fixture
def installed(kubectl: Kubectl) -> Iterator[list[str]]:
    """Rendered manifests applied by a test; their cluster-scoped objects deleted afterwards."""
    applied: list[str] = []
    yield applied
    for rendered in applied:
        kubectl("delete", "--ignore-not-found", *cluster_scoped(rendered))


OVERRIDES = {
    "defaults": (),
    "namespace-scoped": ("controller.watchNamespace={ns}",),
    "custom-service-account": ("serviceAccount.name=deployer-{ns}",),
    "single-replica-no-leader-election": ("replicaCount=1", "controller.leaderElect=false"),
    "no-secrets-no-pdb": ("rbac.secretsGet=false", "podDisruptionBudget.enabled=false"),
    "named-secrets-hard-anti-affinity-three-replicas": (
        "rbac.secretNames[0]=prometheus-token",
        "podAntiAffinity=hard",
        "replicaCount=3",
        "podDisruptionBudget.minAvailable=2",
    ),
    "any-secret": ("rbac.secretsGet=true",),
    "two-shards-and-the-rest": (
        "shards[0].name=a",
        "shards[0].selector=shard in (a\\,x)",
        "shards[1].name=rest",
        "shards[1].selector=!shard",
        "shards[1].replicaCount=1",
    ),
    # Shard names YAML reads as something else unquoted (false, true): label values are strings.
    "shards-named-like-yaml-words": (
        "shards[0].name=no",
        "shards[0].selector=shard=no",
        "shards[1].name=on",
        "shards[1].selector=shard notin (no)",
    ),
}


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_the_chart_rendered_by_helm_is_accepted(
    kubectl: Kubectl, namespace: str, installed: list[str], values: tuple[str, ...]
) -> None:
    rendered = render_chart(f"rc-{namespace}", namespace, *(v.format(ns=namespace) for v in values))
    objects = documents(rendered)
    installed.append(rendered)
    out = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=rendered)
    assert out.count(" created") == len(objects), out
    # Every object is there as rendered (nothing dropped by the server's validation).
    for obj in objects:
        where = () if obj["kind"].startswith("Cluster") else ("-n", namespace)
        kubectl.ok("get", f"{obj['kind']}/{obj['metadata']['name']}", *where)
    # Applied again (helm upgrade, a GitOps sync): nothing to change, no error.
    again = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=rendered)
    assert "created" not in again, again


def test_the_chart_with_a_53_character_release_name_is_accepted(
    kubectl: Kubectl, namespace: str, installed: list[str]
) -> None:
    """Helm's longest release name: every name (Service, Role, per-shard Deployment and PDB)
    fits in 63 characters, which the apiserver checks for the DNS-label kinds."""
    release = f"{namespace}-{'progressive-delivery-controller' * 2}"[:53].rstrip("-")
    assert len(release) >= 50
    rendered = render_chart(
        release,
        namespace,
        "shards[0].name=a-long-shard-name-20",
        "shards[0].selector=shard=a",
        "shards[1].name=rest",
        "shards[1].selector=!shard",
    )
    objects = documents(rendered)
    installed.append(rendered)
    out = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=rendered)
    assert out.count(" created") == len(objects), out
    for obj in objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


def test_each_shard_is_a_deployment_with_its_selector_its_lease_and_its_pdb() -> None:
    rendered = documents(
        render_chart(
            "rc",
            "ops",
            "shards[0].name=a",
            "shards[0].selector=shard in (a\\,x)",
            "shards[1].name=rest",
            "shards[1].selector=!shard",
        )
    )
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert set(deployments) == {"rc-rollout-controller-a", "rc-rollout-controller-rest"}
    args = {
        name: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for name, d in deployments.items()
    }
    assert "--shard-selector=shard in (a,x)" in args["rc-rollout-controller-a"]
    assert "--lease-name=rc-rollout-controller-a" in args["rc-rollout-controller-a"]
    assert "--shard-selector=!shard" in args["rc-rollout-controller-rest"]
    assert "--lease-name=rc-rollout-controller-rest" in args["rc-rollout-controller-rest"]
    # The Deployments' selectors do not overlap: each owns its pods (and its PDB counts them).
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments.values()]
    assert selectors[0] != selectors[1]
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["rollout.dev/controller-shard"]
        for d in rendered
        if d["kind"] == "PodDisruptionBudget"
    }
    assert pdbs == {"a", "rest"}
    # Unsharded (the default), the Deployment is the one it always was: no shard, no Lease name.
    [default] = [d for d in documents(render_chart("rc", "ops")) if d["kind"] == "Deployment"]
    assert default["metadata"]["name"] == "rc-rollout-controller"
    assert "rollout.dev/controller-shard" not in default["spec"]["selector"]["matchLabels"]
    assert not [
        a
        for a in default["spec"]["template"]["spec"]["containers"][0]["args"]
        if a.startswith(("--shard-selector=", "--lease-name="))
    ]


def test_a_shard_name_yaml_would_read_as_a_boolean_or_a_number_stays_a_string() -> None:
    names = ("no", "on", "y", "off")  # (--set itself makes 0, 1e3 and null non-strings)
    sets = []
    for i, name in enumerate(names):
        sets += [f"shards[{i}].name={name}", f"shards[{i}].selector=shard={i}"]
    rendered = documents(render_chart("rc", "ops", *sets))
    shard_labels = [
        labels["rollout.dev/controller-shard"]
        for d in rendered
        if d["kind"] in ("Deployment", "PodDisruptionBudget")
        for labels in (
            d["metadata"]["labels"],
            d["spec"]["selector"]["matchLabels"],
            *([d["spec"]["template"]["metadata"]["labels"]] if d["kind"] == "Deployment" else []),
        )
    ]
    assert sorted(shard_labels) == sorted(names * 5)  # 3 in each Deployment, 2 in each PDB


def test_a_shard_name_used_twice_is_refused_by_helm() -> None:
    result = subprocess.run(
        [
            helm(),
            "template",
            "rc",
            str(CHART),
            "--kube-version",
            KUBE_VERSION,
            "--set",
            "shards[0].name=a",
            "--set",
            "shards[0].selector=shard=a",
            "--set",
            "shards[1].name=a",
            "--set",
            "shards[1].selector=shard=b",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert 'shards: the name "a" is used twice' in result.stderr, result.stderr


def test_the_charts_crds_are_accepted_by_a_server_side_dry_run(
    kubectl: Kubectl, namespace: str
) -> None:
    rendered = render_chart(f"rc-{namespace}", namespace, include_crds=True)
    crds = [d for d in documents(rendered) if d["kind"] == "CustomResourceDefinition"]
    assert {d["metadata"]["name"] for d in crds} == {
        "rollouts.rollout.dev",
        "analysistemplates.rollout.dev",
    }
    out = kubectl.ok("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    assert "customresourcedefinition.apiextensions.k8s.io/rollouts.rollout.dev" in out


# -- the controller as the chart's ServiceAccount ----------------------------------------------

TEMPLATE = "canary-5xx"
TOKEN_SECRET = "prometheus-token"


def gate(namespace: str) -> dict[str, Any]:
    """A built-in check and an AnalysisTemplate check, with a bearer token from a Secret."""
    return {
        "interval": "4s",
        "prometheus": {
            "scrapeInterval": "1s",
            "timeout": "2s",
            "bearerTokenSecret": {"name": TOKEN_SECRET, "key": "token"},
        },
        "checks": [
            {"name": "error-rate", "errorRate": {"max": 0.02, "minRequests": 10}},
            {"name": "5xx", "templateRef": {"name": TEMPLATE, "args": {"namespace": namespace}}},
        ],
    }


def analysis_template() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE},
        "spec": {
            "args": [{"name": "namespace"}],
            "query": (
                'sum(rate(istio_requests_total{reporter="destination",'
                'destination_workload_namespace="{{args.namespace}}",'
                'destination_canonical_revision="{{canary.revision}}",'
                'response_code=~"5.."}[{{interval}}])) or vector(0)'
            ),
            "max": 0.5,
            "noData": "inconclusive",
        },
    }


def install_as_service_account(
    kubectl: Kubectl,
    namespace: str,
    admin: Path,
    tmp_path: Path,
    installed: list[str],
    *sets: str,
) -> tuple[Path, list[str]]:
    """Apply the chart; a kubeconfig for its ServiceAccount and its Deployment's arguments."""
    rendered = render_chart(f"rc-{namespace}", namespace, *sets)
    installed.append(rendered)
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=rendered)
    objects = documents(rendered)
    [account] = [d["metadata"]["name"] for d in objects if d["kind"] == "ServiceAccount"]
    [deployment] = [d for d in objects if d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    token = kubectl.ok("create", "token", account, "-n", namespace, "--duration", "1h").strip()
    kubeconfig = service_account_kubeconfig(admin, token, tmp_path / "sa.kubeconfig")
    who = Kubectl(kubeconfig, tmp_path / "sa-cache").ok(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    )
    assert who == f"system:serviceaccount:{namespace}:{account}"
    return kubeconfig, list(container["args"])


LOCAL = ["--bind-address=127.0.0.1", "--metrics-port=0", "--health-port=0", "--log-format=text"]


def controller_warnings(api_client: client.ApiClient, namespace: str) -> list[str]:
    events = core_v1(api_client).list_namespaced_event(namespace).items
    return [
        f"{e.reason}: {e.message}"
        for e in events
        if e.type == "Warning" and e.involved_object.kind == "Rollout"
    ]


class Canary:
    """Two controller replicas as the chart's ServiceAccount, and a gated canary under way."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, world: GateWorld, tmp_path: Path
    ) -> None:
        self.cluster = Cluster(api_client, namespace)
        self.namespace = namespace
        self.world = world
        self.tmp_path = tmp_path
        self.replicas: list[ControllerProcess] = []
        self.stable = self.canary = ""

    def start(self, kubeconfig: Path, args: list[str]) -> None:
        core_v1(self.cluster.api_client).create_namespaced_secret(
            self.namespace,
            # Prometheus ignores the token: the controller's read of the Secret is the point.
            {"metadata": {"name": TOKEN_SECRET}, "stringData": {"token": "not-checked"}},
        )
        custom_objects(self.cluster.api_client).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "analysistemplates", analysis_template()
        )
        # Two replicas, as the chart deploys them: the standby's Lease calls are checked too.
        self.replicas = [
            ControllerProcess(kubeconfig, self.tmp_path / f"controller-{i}.log", [*args, *LOCAL])
            for i in range(2)
        ]
        cluster = self.cluster
        cluster.create_istio("virtualservices", virtual_service())
        cluster.create_istio("destinationrules", destination_rule())
        manifest = rollout_manifest(
            steps=[{"setWeight": 20}, {"analysis": {"count": 2}}, {"setWeight": 60}], replicas=2
        )
        manifest["spec"]["analysis"] = gate(self.namespace)
        cluster.create_rollout(manifest)
        healthy = cluster.wait_status(lambda s: s.get("phase") == "Healthy", timeout=30)
        self.stable = str(healthy["stableRevision"])
        self.world.traffic.set(Workload(self.namespace, "reviews", self.stable, rps=100))
        template = manifest["spec"]["template"]
        template["spec"]["containers"][0]["image"] = "example.com/reviews:2"
        cluster.set_template(template)
        started = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, self.stable))
        self.canary = str(started["canaryRevision"])
        self.world.traffic.set(Workload(self.namespace, "reviews", self.canary, rps=100))

    def logs(self) -> str:
        return "\n".join(r.text() for r in self.replicas)

    def close(self) -> None:
        for replica in self.replicas:
            replica.close()


@pytest.fixture
def chart_canary(
    api_client: client.ApiClient, namespace: str, gate_world: GateWorld, tmp_path: Path
) -> Iterator[Canary]:
    canary = Canary(api_client, namespace, gate_world, tmp_path)
    try:
        yield canary
    finally:
        canary.close()


def chart_values(namespace: str, world: GateWorld) -> list[str]:
    """A namespace-scoped install, two replicas with leader election, a custom account name."""
    return [
        f"controller.watchNamespace={namespace}",
        f"serviceAccount.name=rollouts-{namespace}",
        "replicaCount=2",
        f"controller.prometheusUrl={world.prometheus.url}",
    ]


def test_the_controller_runs_a_gated_canary_as_the_charts_service_account_without_a_403(
    kubectl: Kubectl,
    api_client: client.ApiClient,
    sandbox_kubeconfig: Path,
    namespace: str,
    installed: list[str],
    gate_world: GateWorld,
    chart_canary: Canary,
    tmp_path: Path,
) -> None:
    kubeconfig, args = install_as_service_account(
        kubectl,
        namespace,
        sandbox_kubeconfig,
        tmp_path,
        installed,
        *chart_values(namespace, gate_world),
        f"rbac.secretNames[0]={TOKEN_SECRET}",  # `get` on that name only: no Secret by default
    )
    assert "--leader-elect" in args and f"--namespace={namespace}" in args
    chart_canary.start(kubeconfig, args)
    cluster, stable, canary = chart_canary.cluster, chart_canary.stable, chart_canary.canary
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == canary,
        timeout=90,
    )
    assert status["weights"]["canary"] == 0 and status["weights"]["stable"] == 100, status
    assert canary_weight(cluster.vs()) == 0
    checks = {c["name"]: c for c in status["analysis"]["checks"]}
    for name in ("error-rate", "5xx"):
        assert any(m["phase"] == "Successful" for m in checks[name]["measurements"]), checks

    # The old revision is scaled down by the ServiceAccount (a patch of its ReplicaSet).
    def scaled_down() -> None:
        olds = [
            rs
            for rs in cluster.replica_sets().values()
            if rs["metadata"]["labels"].get(HASH_LABEL) == stable
        ]
        assert olds and all(rs["spec"]["replicas"] == 0 for rs in olds), olds

    eventually(scaled_down, timeout=30, interval=0.2)
    replicas = chart_canary.replicas
    assert len([r for r in replicas if "became leader" in r.text()]) == 1, chart_canary.logs()
    for replica in replicas:
        assert replica.process.poll() is None, replica.text()
        assert "Traceback" not in replica.text()
    assert forbidden_lines(chart_canary.logs()) == [], chart_canary.logs()
    assert controller_warnings(api_client, namespace) == []


def test_a_rule_missing_from_the_chart_is_seen_as_a_403(
    kubectl: Kubectl,
    api_client: client.ApiClient,
    sandbox_kubeconfig: Path,
    namespace: str,
    installed: list[str],
    gate_world: GateWorld,
    chart_canary: Canary,
    tmp_path: Path,
) -> None:
    # The control for the test above: without `get secrets` (the default) the same
    # canary's gate is refused by the apiserver, and the refusal is visible where that test
    # looks for one. The canary is held at its first weight, never promoted.
    kubeconfig, args = install_as_service_account(
        kubectl,
        namespace,
        sandbox_kubeconfig,
        tmp_path,
        installed,
        *chart_values(namespace, gate_world),
        "rbac.secretsGet=false",
    )
    chart_canary.start(kubeconfig, args)

    def refused() -> list[str]:
        found = [w for w in controller_warnings(api_client, namespace) if "forbidden" in w]
        assert found, controller_warnings(api_client, namespace)
        return found

    eventually(refused, timeout=30, interval=0.2)
    assert f"cannot read Secret {namespace}/{TOKEN_SECRET}" in refused()[0]
    status = chart_canary.cluster.status()
    assert status["stableRevision"] == chart_canary.stable
    assert status["weights"]["canary"] <= 20
