"""GitOps under server-side apply on a real kube-apiserver (managedFields, apply conflicts).

A ``gitops`` field manager applies the VirtualService, the DestinationRule and the Rollout with
``kubectl apply --server-side --field-manager=gitops`` (what Argo CD with
``ServerSideApply=true`` and Flux do); ``rollout controller`` (field manager
``rollout-controller``) runs a canary; the same manifests are applied again mid-canary, as a
sync or a self-heal would. What the apiserver does (docs/gitops.md, "Server-side apply"):

- Istio's CRDs declare ``spec.http`` (VirtualService) and ``spec.subsets`` (DestinationRule) as
  atomic lists, so whoever writes one weight or one subset label owns the whole list. The
  controller's JSON patches are updates: they take the list over without a conflict.
- An apply of Git's values (weights 100/0, no revision labels) then conflicts with
  ``rollout-controller``; the sync fails and nothing changes. With ``--force-conflicts`` it
  succeeds and resets the weights mid-canary: traffic moves backwards until the controller
  reverts the route (``RouteReverted``).
- With ``ignoreDifferences`` on those fields and ``RespectIgnoreDifferences=true``, Argo CD
  applies the live values of the ignored fields: the apply equals what is there, the gitops
  manager co-owns the lists without a conflict (forced or not), the weights never move
  backwards and the controller's next patches succeed. ``respect_ignore_differences`` below does
  what Argo CD does with docs/gitops.md's ``jqPathExpressions``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from rollout.domain.revision import HASH_LABEL
from tests.integration.controller_helpers import (
    Cluster,
    Recorder,
    canary_weight,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.kube_helpers import ControllerProcess, Kubectl
from tests.integration.sandbox_helpers import eventually

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

Obj = dict[str, Any]
STEPS: list[Obj] = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def _without_custom(obj: Any) -> Any:
    """The test helpers' objects carry an unknown field (``x-custom``) that kubectl's strict
    validation refuses; a Git repository would not have it."""
    if isinstance(obj, dict):
        return {k: _without_custom(v) for k, v in obj.items() if k != "x-custom"}
    if isinstance(obj, list):
        return [_without_custom(v) for v in obj]
    return obj


def git_manifests(image: str) -> list[Obj]:
    """What Git holds: routing at its steady state (stable 100, canary 0), no revision labels."""
    rollout = rollout_manifest(steps=STEPS, replicas=2, image=image)
    return [_without_custom(virtual_service()), _without_custom(destination_rule()), rollout]


def respect_ignore_differences(desired: Obj, live: Obj | None) -> Obj:
    """``desired`` with the live values of docs/gitops.md's ignored fields, as Argo CD applies
    it with ``RespectIgnoreDifferences=true``: route weights, mirrors, the ``canary-header``
    route (VirtualService) and the subsets' revision label (DestinationRule)."""
    if live is None:
        return desired
    out = copy.deepcopy(desired)
    if desired["kind"] == "VirtualService":
        live_routes = {r.get("name"): r for r in live["spec"].get("http") or []}
        routes = []
        for route in out["spec"].get("http") or []:
            now = live_routes.get(route.get("name"), {})
            weights = {
                json.dumps(d["destination"], sort_keys=True): d.get("weight")
                for d in now.get("route") or []
            }
            for dest in route.get("route") or []:
                weight = weights.get(json.dumps(dest["destination"], sort_keys=True))
                if weight is not None:
                    dest["weight"] = weight
            for key in ("mirror", "mirrorPercentage"):
                route.pop(key, None)
                if key in now:
                    route[key] = now[key]
            routes.append(route)
        header = [r for r in live["spec"].get("http") or [] if r.get("name") == "canary-header"]
        out["spec"]["http"] = header + routes
    if desired["kind"] == "DestinationRule":
        live_labels = {s["name"]: s.get("labels") or {} for s in live["spec"].get("subsets") or []}
        for subset in out["spec"].get("subsets") or []:
            revision = live_labels.get(subset["name"], {}).get(HASH_LABEL)
            if revision is not None:
                subset.setdefault("labels", {})[HASH_LABEL] = revision
    return out


class GitOps:
    """The ``gitops`` field manager: ``kubectl apply --server-side`` of the Git manifests."""

    def __init__(self, kubectl: Kubectl, cluster: Cluster, tmp_path: Path) -> None:
        self.kubectl = kubectl
        self.cluster = cluster
        self.path = tmp_path / "git.yaml"

    def live(self, obj: Obj) -> Obj | None:
        plural = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules"}
        if obj["kind"] not in plural:
            return None
        return self.cluster.get_istio(plural[obj["kind"]], obj["metadata"]["name"])

    def apply(self, image: str, *, ignore_differences: bool, force: bool = False) -> Any:
        docs = git_manifests(image)
        if ignore_differences:
            docs = [respect_ignore_differences(d, self.live(d)) for d in docs]
        self.path.write_text(yaml.safe_dump_all(docs))
        args = ["apply", "-n", self.cluster.namespace, "--server-side", "--field-manager=gitops"]
        if force:
            args.append("--force-conflicts")
        return self.kubectl(*args, "-f", str(self.path))


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sandbox_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture
def gitops_controller(
    sandbox_kubeconfig: Path, namespace: str, tmp_path: Path
) -> Iterator[ControllerProcess]:
    """``rollout controller`` as a process on the test namespace (its real field manager)."""
    args = ["--no-leader-elect", "--namespace", namespace, "--metrics-port", "0"]
    args += ["--health-port", "0", "--log-format", "text"]
    process = ControllerProcess(sandbox_kubeconfig, tmp_path / "controller.log", args)
    try:
        yield process
    finally:
        process.close()


V1, V2 = "example.com/reviews:1", "example.com/reviews:2"


def start(
    kubectl: Kubectl, cluster: Cluster, tmp_path: Path, recorder: Callable[..., Recorder]
) -> tuple[GitOps, Recorder, str]:
    """v1 deployed from Git, then v2 committed; the canary paused at 20%. The recorder, v2."""
    gitops = GitOps(kubectl, cluster, tmp_path)
    first = gitops.apply(V1, ignore_differences=False)
    assert first.returncode == 0, first.stderr
    stable = cluster.wait_status(lambda s: s.get("phase") == "Healthy", timeout=20)[
        "stableRevision"
    ]
    rec = recorder()
    commit = gitops.apply(V2, ignore_differences=True)
    assert commit.returncode == 0, commit.stderr
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 20, timeout=20
    )
    assert status["stableRevision"] == stable
    return gitops, rec, str(status["canaryRevision"])


def managers(obj: Obj) -> dict[str, set[str]]:
    """manager -> top-level spec fields it owns."""
    out: dict[str, set[str]] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        out.setdefault(entry["manager"], set()).update(k.removeprefix("f:") for k in spec)
    return out


def warnings(cluster: Cluster) -> list[str]:
    return [f"{e['reason']}: {e['message']}" for e in cluster.events() if e["type"] == "Warning"]


def finish(cluster: Cluster, canary: str) -> None:
    cluster.promote()
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 50)
    cluster.promote()
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == canary, timeout=20
    )
    assert status["weights"]["canary"] == 0 and status["weights"]["stable"] == 100, status
    assert canary_weight(cluster.vs()) == 0


def test_with_ignore_differences_a_re_apply_mid_canary_changes_no_weight(
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
    gitops_controller: ControllerProcess,
    recorder: Callable[..., Recorder],
    tmp_path: Path,
) -> None:
    cluster = Cluster(api_client, namespace)
    gitops, rec, canary = start(kubectl, cluster, tmp_path, recorder)
    # The controller's field manager is its own name, and it owns the atomic route list.
    assert "http" in managers(cluster.vs())["rollout-controller"]
    # Syncs mid-canary: plain and forced, as Argo CD's and Flux's differ. Neither conflicts.
    for force in (False, True):
        synced = gitops.apply(V2, ignore_differences=True, force=force)
        assert synced.returncode == 0, synced.stderr
        assert canary_weight(cluster.vs()) == 20
    assert {"http"} <= managers(cluster.vs())["gitops"]  # co-owned with the controller now
    finish(cluster, canary)
    # One more sync at the end (self-heal): steady state, nothing moves.
    synced = gitops.apply(V2, ignore_differences=True)
    assert synced.returncode == 0, synced.stderr
    rec.catch_up()
    # Never backwards while the canary runs; 100 then 0 is the promotion (canary -> stable).
    assert rec.weights() == [0, 20, 50, 100, 0], rec.weights()
    assert warnings(cluster) == []
    assert "Traceback" not in gitops_controller.text()
    assert "onflict" not in gitops_controller.text()


def test_without_ignore_differences_a_sync_conflicts_and_a_forced_one_resets_the_weights(
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
    gitops_controller: ControllerProcess,
    recorder: Callable[..., Recorder],
    tmp_path: Path,
) -> None:
    cluster = Cluster(api_client, namespace)
    gitops, rec, canary = start(kubectl, cluster, tmp_path, recorder)
    # Git's weights, not forced: the apiserver refuses the apply, naming the controller.
    refused = gitops.apply(V2, ignore_differences=False)
    assert refused.returncode != 0
    assert 'conflict with "rollout-controller"' in refused.stderr, refused.stderr
    assert ".spec.http" in refused.stderr and ".spec.subsets" in refused.stderr
    assert canary_weight(cluster.vs()) == 20
    # Forced: Git's 100/0 is written mid-canary (the hazard), and the controller puts 20 back.
    forced = gitops.apply(V2, ignore_differences=False, force=True)
    assert forced.returncode == 0, forced.stderr

    def reverted() -> None:
        assert canary_weight(cluster.vs()) == 20
        assert any(e["reason"] == "RouteReverted" for e in cluster.events())

    eventually(reverted, timeout=10, interval=0.1)
    rec.catch_up()
    assert rec.weights()[:4] == [0, 20, 0, 20], rec.weights()
    finish(cluster, canary)
