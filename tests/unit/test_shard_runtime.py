"""A sharded ``Controller`` at the ClusterAccess seam: it asks the API for its own Rollouts only,
and a key of a Rollout outside its shard is never queued, retried, timed or written to.

The fake honours ``labelSelector`` as the API does (``selector.parse(...).matches``) and records
every call; everything else about it is inert.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from rollout.cluster.access import (
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    WatchEvent,
)
from rollout.cluster.selector import parse
from rollout.controller.runtime import Controller


def rollout(name: str, shard: str) -> Obj:
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {"shard": shard},
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {},
    }


def replica_set(owner: str) -> Obj:
    return {
        "metadata": {
            "name": f"{owner}-1",
            "namespace": "ns",
            "resourceVersion": "1",
            "ownerReferences": [{"kind": "Rollout", "name": owner, "controller": True}],
        },
        "spec": {"replicas": 1},
    }


class Recording:
    def __init__(self, objects: dict[str, Objs]) -> None:
        self.objects = objects
        self.lists: list[tuple[str, str | None]] = []
        self.watches: list[tuple[str, str | None]] = []
        self.writes: list[tuple[str, str]] = []
        self.quiet = threading.Event()

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        self.lists.append((res.plural, label_selector))
        selector = parse(label_selector or "")
        items = [
            o
            for o in self.objects.get(res.plural, [])
            if selector.matches(o["metadata"].get("labels") or {})
        ]
        return items, "1"

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        self.watches.append((res.plural, label_selector))
        self.quiet.wait(0.1)
        return iter(())

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        raise AssertionError(f"get {res.plural}/{name}")

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self.writes.append(("create", res.plural))
        return body

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        self.writes.append(("replace", name))
        return body

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        self.writes.append(("patch", name))
        return {}

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        self.writes.append(("patch_status", name))
        return {}

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self.writes.append(("delete", name))

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        self.writes.append(("event", reason))


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_shard_lists_and_watches_only_its_rollouts_and_never_touches_another_shards() -> None:
    access = Recording({"rollouts": [rollout("b1", "b")], "replicasets": [replica_set("b1")]})
    controller = Controller(access, namespace="ns", workers=1, shard_selector="shard=a")
    try:
        assert controller.start_caches(timeout=5)
        wait_until(lambda: len({p for p, _ in access.watches}) == len(controller.informers))
        # The Rollouts are selected at the API; nothing else is.
        assert ("rollouts", "shard=a") in access.lists
        assert ("rollouts", "shard=a") in access.watches
        assert all(s is None for p, s in access.lists + access.watches if p != "rollouts")
        assert controller.informers["rollouts"].list() == []
        assert len(controller.informers["replicasets"].list()) == 1  # not sharded
        controller.start_workers()

        # Another shard's ReplicaSet changes: its owner's key is not even queued.
        controller._on_replica_set("MODIFIED", replica_set("b1"))
        assert len(controller.queue) == 0
        # Its key reconciled anyway (a stale timer, say): nothing is written, nothing re-timed.
        controller.queue.add("ns/b1")
        wait_until(lambda: len(controller.queue) == 0)
        controller.timers.after("ns/b1", 0.0)
        wait_until(lambda: controller.timers.pending() == 0 and len(controller.queue) == 0)
        assert controller.reconciler.reconcile("ns/b1").writes == 0
        assert controller.timers.pending() == 0
        assert access.writes == []
    finally:
        controller.stop()


def test_without_a_selector_every_rollout_is_listed() -> None:
    access = Recording({"rollouts": [rollout("a1", "a"), rollout("b1", "b")]})
    controller = Controller(access, namespace="ns", workers=1)
    try:
        assert controller.start_caches(timeout=5)
        assert ("rollouts", None) in access.lists
        assert len(controller.informers["rollouts"].list()) == 2
        assert controller._owns("ns/b1") and not controller._owns("ns/c1")
    finally:
        controller.stop()


def test_the_replica_set_handler_queues_the_keys_of_its_own_rollouts() -> None:
    access = Recording({"rollouts": [rollout("a1", "a")]})
    controller = Controller(access, namespace="ns", workers=1, shard_selector="shard=a")
    try:
        assert controller.start_caches(timeout=5)
        controller._on_replica_set("MODIFIED", replica_set("a1"))
        assert len(controller.queue) == 1  # the control: its own shard's key is queued
        controller._on_replica_set("MODIFIED", replica_set("b1"))
        assert len(controller.queue) == 1
    finally:
        controller.stop()
