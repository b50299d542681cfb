"""Two ``rollout controller --shard-selector`` processes split the Rollouts of a namespace.

Each shard lists and watches only the Rollouts its selector selects and elects its leader with a
Lease of its own. Who reconciled a Rollout is read from the API and from each process:

- every Event a controller records names it (``reportingInstance``: the identity it holds its
  Lease with), so the Events of a Rollout say which process made its decisions;
- each process's ``/metrics`` has a ``rollout_canary_weight`` series for every Rollout it has
  reconciled and still owns (a Rollout that leaves the shard is forgotten).

A Rollout whose label moves from one shard to the other is let go by the first (its series
disappears, no Event of it comes from the first any more) and carried on by the second. A
Rollout that no selector selects is reconciled by nobody: it never gets a status.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.cluster.selector import SelectorError, parse
from rollout.controller.leader import lease_name_for
from rollout.sandbox.prometheus import free_port
from tests.integration.controller_helpers import (
    Cluster,
    Steps,
    canary_weight,
    consistently,
    destination_rule,
    pod_template,
    rollout_manifest,
    subset_routing,
    virtual_service,
)
from tests.integration.kube_helpers import ControllerProcess
from tests.integration.sandbox_helpers import coordination_v1, core_v1, eventually

pytestmark = pytest.mark.integration

SHARDS = {"a": "shard=a", "b": "shard in (b)"}
COUNT = 20
STEPS: Steps = [{"setWeight": 50}, {"pause": {}}]


class Shard:
    def __init__(self, name: str, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.name = name
        self.selector = SHARDS[name]
        self.lease = lease_name_for(str(parse(self.selector)))
        self.port = free_port()
        self.process = ControllerProcess(
            kubeconfig,
            log,
            [
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--shard-selector",
                self.selector,
                "--metrics-port",
                str(self.port),
                "--health-port",
                "0",
                "--workers",
                "2",
            ],
        )

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            return str(reply.read().decode())

    def reconciled(self) -> set[str]:
        """The Rollouts this process reconciled and still owns (its canary weight series)."""
        return set(
            re.findall(
                r'^rollout_canary_weight\{namespace="[^"]*",rollout="([^"]+)"', self.metrics(), re.M
            )
        )


@pytest.fixture
def shards(sandbox_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[dict[str, Shard]]:
    started = {
        name: Shard(name, sandbox_kubeconfig, namespace, tmp_path / f"shard-{name}.log")
        for name in SHARDS
    }
    try:
        yield started
    finally:
        for shard in started.values():
            shard.process.close()


def holder(api_client: client.ApiClient, namespace: str, lease: str) -> str:
    try:
        spec = coordination_v1(api_client).read_namespaced_lease(lease, namespace).spec
    except ApiException as error:
        assert error.status != 404, f"no Lease {lease} yet"
        raise
    assert spec.holder_identity, f"nobody holds {lease}"
    return str(spec.holder_identity)


def instances(api_client: client.ApiClient, namespace: str) -> dict[str, list[tuple[int, str]]]:
    """Per Rollout, the (resourceVersion, reportingInstance) of each of its Events."""
    found: dict[str, list[tuple[int, str]]] = {}
    for e in core_v1(api_client).list_namespaced_event(namespace).items:
        if e.involved_object.kind == "Rollout":
            found.setdefault(e.involved_object.name, []).append(
                (int(e.metadata.resource_version), str(e.reporting_instance or ""))
            )
    return found


def owner(i: int) -> str:
    return "a" if i % 2 == 0 else "b"


def test_two_shards_split_the_rollouts_and_a_moved_one_changes_hands(
    api_client: client.ApiClient, namespace: str, shards: dict[str, Shard]
) -> None:
    cluster = Cluster(api_client, namespace)
    names = [f"app-{i}" for i in range(COUNT)]
    for i, name in enumerate([*names, "orphan"]):
        cluster.create_istio("virtualservices", virtual_service(name, host=name))
        cluster.create_istio("destinationrules", destination_rule(name, host=name, app=name))
        manifest = rollout_manifest(
            name, steps=STEPS, replicas=1, routing=subset_routing(vs=name, dr=name)
        )
        if name != "orphan":
            manifest["metadata"]["labels"] = {"shard": owner(i)}
        cluster.create_rollout(manifest)

    # Each shard holds a Lease of its own: two leaders, not one.
    def held(shard: Shard) -> str:
        return eventually(lambda: holder(api_client, namespace, shard.lease), timeout=20)

    leaders = {s.name: held(s) for s in shards.values()}
    assert leaders["a"] != leaders["b"]
    pids = {name: int(identity.rsplit("_", 2)[1]) for name, identity in leaders.items()}
    assert pids == {name: s.process.pid for name, s in shards.items()}

    eventually(
        lambda: [cluster.wait_status(lambda s: s.get("phase") == "Healthy", n, 1) for n in names],
        timeout=60,
        interval=0.2,
    )
    for name in names:
        cluster.set_template(pod_template(name, f"example.com/{name}:2"), name)
    eventually(
        lambda: [
            cluster.wait_status(
                lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 50, n, 1
            )
            for n in names
        ],
        timeout=60,
        interval=0.2,
    )

    # Every Rollout's Events come from its own shard's leader, and only from it.
    events = instances(api_client, namespace)
    for i, name in enumerate(names):
        assert events.get(name), f"no Event of {name}"
        assert {who for _, who in events[name]} == {leaders[owner(i)]}, (name, events[name])
    # Each process reconciled exactly its own Rollouts (nothing of the other shard's, nor the
    # orphan), and says which shard it is.
    for shard in shards.values():
        mine = {n for i, n in enumerate(names) if owner(i) == shard.name}

        def only_its_own(shard: Shard = shard, mine: set[str] = mine) -> None:
            assert shard.reconciled() == mine

        eventually(only_its_own, timeout=10)
        canonical = str(parse(shard.selector))
        assert (
            f'rollout_controller_shard_info{{lease="{shard.lease}",selector="{canonical}"}} 1.0'
            in shard.metrics()
        )

    # app-0 moves from shard a to shard b while paused.
    moved = cluster.patch_rollout({"metadata": {"labels": {"shard": "b"}}}, "app-0")
    moved_at = int(moved["metadata"]["resourceVersion"])

    def changed_hands() -> None:
        assert "app-0" not in shards["a"].reconciled()
        assert "app-0" in shards["b"].reconciled()

    eventually(changed_hands, timeout=15, interval=0.1)
    cluster.promote("app-0")
    status = cluster.wait_status(lambda s: s.get("phase") == "Healthy", "app-0", timeout=30)
    assert status["weights"]["canary"] == 0
    after = [who for rv, who in instances(api_client, namespace)["app-0"] if rv > moved_at]
    assert after and set(after) == {leaders["b"]}, after
    # A Rollout of shard a promoted now is still shard a's alone.
    cluster.promote("app-2")
    cluster.wait_status(lambda s: s.get("phase") == "Healthy", "app-2", timeout=30)
    assert {who for _, who in instances(api_client, namespace)["app-2"]} == {leaders["a"]}

    # No shard selects the orphan: nobody reconciles it (no status, no Event, no series).
    def untouched() -> None:
        assert not cluster.rollout("orphan").get("status"), cluster.rollout("orphan")
        assert "orphan" not in instances(api_client, namespace)

    consistently(untouched, 1.0, interval=0.2)
    for shard in shards.values():
        assert "orphan" not in shard.reconciled()
        text = shard.process.text()
        assert shard.process.process.poll() is None, text
        assert "Traceback" not in text, text
        assert f"shard {parse(shard.selector)} owns" in text, text


SELECTORS = [
    "shard=a",
    "shard==a",
    "shard!=a",
    "shard in (a, b)",
    "shard notin (a)",
    "shard",
    "!shard",
    "shard=",
    "tier=web,!shard",
    "rollout.dev/shard=a",
    "shard=a,",
    ",shard=a",
    "shard in ()",
    "shard in (a",
    "shard in a",
    "shard in (a b)",
    "shard=a b",
    "!shard=a",
    "shard=-a",
    "shard=" + "a" * 64,
    "-shard=a",
    "Rollout.Dev/shard=a",
    "/shard=a",
    "a" * 64 + "=x",
    "shard=a)",
    "shard foo",
    "shard in (a,)",
    "shard in (,a)",
    # Kubernetes' lexer: only space, tab, CR and LF separate words; "in"/"notin" can be keys
    "shard=a\f",
    "shard=a\v",
    "shard=a\u00a0",
    "\u00a0shard=a",
    "\tshard = a\r\n",
    "in=a",
    "notin in (in,notin)",
    "a in (b,,c)",
    "a notin ()",
    "!a,!b",
    "a,a",
]


@pytest.mark.kube_only
def test_the_selector_check_agrees_with_kube_apiserver(api_client: client.ApiClient) -> None:
    """Every selector ``parse`` accepts, the apiserver accepts, and every one it refuses, the
    apiserver refuses (400) — so a shard never starts with a selector its list would fail."""
    custom = client.CustomObjectsApi(api_client)
    disagree = []
    for text in SELECTORS:
        try:
            parse(text)
            ours = True
        except SelectorError:
            ours = False
        try:
            custom.list_cluster_custom_object(
                "rollout.dev", "v1alpha1", "rollouts", label_selector=text
            )
            theirs = True
        except ApiException as error:
            assert error.status == 400, error
            theirs = False
        if ours != theirs:
            disagree.append((text, ours, theirs))
    assert disagree == []


def test_a_rollout_moved_between_shards_while_being_aborted_ends_with_no_canary_traffic(
    api_client: client.ApiClient, namespace: str, shards: dict[str, Shard]
) -> None:
    """Hostile: the label goes a -> b -> a -> b while the Rollout is paused at 50%, and the abort
    comes in the middle of it; another one is moved to a label no shard selects."""
    cluster = Cluster(api_client, namespace)
    for name in ("flip", "away"):
        cluster.create_istio("virtualservices", virtual_service(name, host=name))
        cluster.create_istio("destinationrules", destination_rule(name, host=name, app=name))
        manifest = rollout_manifest(
            name, steps=STEPS, replicas=1, routing=subset_routing(vs=name, dr=name)
        )
        manifest["metadata"]["labels"] = {"shard": "a"}
        cluster.create_rollout(manifest)
    for name in ("flip", "away"):
        cluster.wait_status(lambda s: s.get("phase") == "Healthy", name, 30)
        cluster.set_template(pod_template(name, f"example.com/{name}:2"), name)
        cluster.wait_status(
            lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 50, name, 30
        )
    for label in ("b", "a"):
        cluster.patch_rollout({"metadata": {"labels": {"shard": label}}}, "flip")
    cluster.abort("flip")
    moved = cluster.patch_rollout({"metadata": {"labels": {"shard": "b"}}}, "flip")
    moved_at = int(moved["metadata"]["resourceVersion"])
    status = cluster.wait_status(
        lambda s: (
            bool(s.get("abort")) and s["weights"]["canary"] == 0 and s.get("phase") == "Degraded"
        ),
        "flip",
        timeout=30,
    )
    assert status["weights"]["canary"] == 0

    def settled() -> None:
        assert canary_weight(cluster.vs("flip")) == 0, cluster.vs("flip")
        assert "flip" in shards["b"].reconciled()
        assert "flip" not in shards["a"].reconciled()

    eventually(settled, timeout=15, interval=0.1)
    consistently(settled, 1.5, interval=0.2)
    leader_b = holder(api_client, namespace, shards["b"].lease)
    after = [who for rv, who in instances(api_client, namespace)["flip"] if rv > moved_at]
    assert set(after) <= {leader_b}, after

    # Moved to a label no shard selects mid-pause: shard a lets go, nobody touches it again.
    cluster.patch_rollout({"metadata": {"labels": {"shard": "c"}}}, "away")
    eventually(lambda: "away" not in shards["a"].reconciled(), timeout=15, interval=0.1)
    frozen = cluster.rollout("away")
    cluster.promote("away")
    promoted = cluster.rollout("away")["metadata"]["resourceVersion"]

    def untouched() -> None:
        now = cluster.rollout("away")
        assert now["metadata"]["resourceVersion"] == promoted
        assert now["status"]["weights"] == frozen["status"]["weights"]
        assert canary_weight(cluster.vs("away")) == 50

    consistently(untouched, 2.0, interval=0.2)
