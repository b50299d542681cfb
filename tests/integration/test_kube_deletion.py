"""Deleting a Rollout on a real kube-apiserver, whose garbage collector (kube-controller-manager)
follows the ownerReferences the controller puts on its ReplicaSets (docs/architecture.md,
"Deleting a Rollout").

- ``--cascade=orphan``: the Rollout goes at once; its ReplicaSets and their pods stay, and the
  garbage collector removes their ownerReference to the Rollout.
- ``--cascade=foreground``: the Rollout stays, with a deletionTimestamp and the
  ``foregroundDeletion`` finalizer, until the garbage collector has deleted its ReplicaSets
  (they block it: ``blockOwnerDeletion``); then it goes. The controller, still running,
  creates nothing for a Rollout being deleted.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kubernetes import client

from rollout.cluster.access import REPLICA_SETS, ROLLOUTS
from rollout.cluster.kube import KubeAccess
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    canary_weight,
    consistently,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.kube_helpers import Kubectl
from tests.integration.sandbox_helpers import Obj, eventually

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sandbox_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


def deployed(cluster: Cluster) -> tuple[str, dict[str, Obj]]:
    """A Healthy Rollout; its uid and its ReplicaSets."""
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    created = cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 50}], replicas=2))
    cluster.wait_status(lambda s: s.get("phase") == "Healthy", timeout=20)
    uid = str(created["metadata"]["uid"])

    def ready() -> dict[str, Obj]:
        owned = {
            name: rs
            for name, rs in cluster.replica_sets().items()
            if any(r["uid"] == uid for r in rs["metadata"].get("ownerReferences") or [])
        }
        assert owned and all(rs["status"].get("readyReplicas") == 2 for rs in owned.values())
        return owned

    return uid, eventually(ready, timeout=20, interval=0.1)


def test_orphan_deletion_leaves_the_replica_sets_without_their_owner(
    api_client: client.ApiClient, kubectl: Kubectl, namespace: str, controller: ControllerHandle
) -> None:
    cluster = Cluster(api_client, namespace)
    uid, owned = deployed(cluster)
    kubectl.ok("delete", "rollouts.rollout.dev", "reviews", "-n", namespace, "--cascade=orphan")

    def orphaned() -> None:
        now = cluster.replica_sets()
        for name in owned:
            refs = now[name]["metadata"].get("ownerReferences") or []
            assert all(r["uid"] != uid for r in refs), refs

    eventually(orphaned, timeout=20, interval=0.1)
    assert kubectl("get", "rollouts.rollout.dev", "reviews", "-n", namespace).returncode != 0

    # They keep running, and the traffic stays as it was: nobody manages them now.
    def untouched() -> None:
        now = cluster.replica_sets()
        assert all(now[name]["spec"]["replicas"] == 2 for name in owned)
        assert canary_weight(cluster.vs()) == 0

    consistently(untouched, 1.0)


def test_foreground_deletion_holds_the_rollout_until_its_replica_sets_are_gone(
    api_client: client.ApiClient, kubectl: Kubectl, namespace: str, controller: ControllerHandle
) -> None:
    cluster = Cluster(api_client, namespace)
    _, owned = deployed(cluster)
    # Watch the Rollout and its ReplicaSets from before the delete: a fast garbage collector
    # may finish before a poll's first look, and the watches still see every state. The
    # resourceVersions of both kinds are etcd revisions, one counter for every write.
    access = KubeAccess(api_client)
    _, version = access.list(ROLLOUTS, namespace)
    _, rs_version = access.list(REPLICA_SETS, namespace)
    rs_deleted: dict[str, int] = {}  # owned ReplicaSet -> resourceVersion of its DELETED

    def watch_replica_sets() -> None:
        events = access.watch(REPLICA_SETS, namespace, rs_version, timeout_seconds=30)
        for event in events:
            name = (event.object.get("metadata") or {}).get("name")
            if event.type == "DELETED" and name in owned:
                rs_deleted[name] = int(event.resource_version)
                if len(rs_deleted) == len(owned):
                    return

    rs_watch = threading.Thread(target=watch_replica_sets, daemon=True)
    rs_watch.start()
    kubectl.ok(
        "delete",
        "rollouts.rollout.dev",
        "reviews",
        "-n",
        namespace,
        "--cascade=foreground",
        "--wait=false",
    )
    seen: list[tuple[str, bool]] = []  # (event type, foregroundDeletion finalizer present)
    deleted_at = 0
    for event in access.watch(ROLLOUTS, namespace, version, timeout_seconds=30):
        meta = event.object.get("metadata") or {}
        if event.type == "BOOKMARK" or meta.get("name") != "reviews":
            continue
        finalizers = meta.get("finalizers") or []
        seen.append((event.type, "foregroundDeletion" in finalizers))
        if event.type == "DELETED":
            deleted_at = int(event.resource_version)
            break
    # Held with the finalizer (and a deletionTimestamp) until the garbage collector let it go.
    assert seen and seen[-1][0] == "DELETED", seen
    held = [with_finalizer for type_, with_finalizer in seen if type_ == "MODIFIED"]
    assert held and held[0], seen
    # Every ReplicaSet of it was gone before it went (a dependent that does not block its
    # owner, blockOwnerDeletion false, is deleted after or alongside it).
    rs_watch.join(30)
    assert set(rs_deleted) == set(owned), (rs_deleted, sorted(owned))
    assert all(rv < deleted_at for rv in rs_deleted.values()), (rs_deleted, deleted_at)
    # Its ReplicaSets went first, and the controller created none for the dying Rollout.
    assert not set(owned) & set(cluster.replica_sets())
    consistently(lambda: None if not cluster.replica_sets() else pytest.fail("recreated"), 1.0)
