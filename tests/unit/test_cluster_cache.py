"""The watch cache survives a malformed reply: it lists again instead of dying silently."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from rollout.cluster.access import SERVICES, Obj, Objs, Ops, PatchType, Resource, WatchEvent
from rollout.cluster.cache import Informer


class FlakyWatch:
    """A ``ClusterAccess`` whose first watch breaks with a non-API error (a torn JSON line)."""

    def __init__(self) -> None:
        self.lists = 0
        self.watches = 0
        self.quiet = threading.Event()

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        self.lists += 1
        names = ["a"] if self.lists == 1 else ["a", "b"]
        return [{"metadata": {"name": n, "namespace": "ns"}} for n in names], str(self.lists)

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        self.watches += 1
        if self.watches == 1:
            raise ValueError("Unterminated string starting at: line 1 column 40")
        self.quiet.wait(0.05)
        return iter(())

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        raise NotImplementedError

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        raise NotImplementedError

    def replace(self, res: Resource, namespace: str | None, name: str, body: Obj) -> Obj:
        raise NotImplementedError

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Obj | Ops,
        *,
        patch_type: PatchType = "merge",
    ) -> Obj:
        raise NotImplementedError

    def patch_status(
        self, res: Resource, namespace: str | None, name: str, patch: Obj | Ops
    ) -> Obj:
        raise NotImplementedError

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        raise NotImplementedError

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        raise NotImplementedError


def test_a_malformed_watch_reply_makes_the_informer_list_again() -> None:
    access = FlakyWatch()
    informer = Informer(access, SERVICES, max_backoff=0.05)
    informer.start()
    try:
        deadline = time.monotonic() + 5
        while sorted(o["metadata"]["name"] for o in informer.list()) != ["a", "b"]:
            assert time.monotonic() < deadline, (access.lists, informer.list())
            time.sleep(0.01)
        assert access.lists >= 2
    finally:
        informer.stop()


class ManagedFields(FlakyWatch):
    """Objects as a real apiserver sends them, with ``metadata.managedFields``."""

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        self.lists += 1
        return [{"metadata": {"name": "a", "namespace": "ns", "managedFields": [{}]}}], "1"

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        self.watches += 1
        if self.watches == 1:
            managed = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
            meta = {"name": "b", "namespace": "ns", "resourceVersion": "2"}
            yield WatchEvent("ADDED", {"metadata": {**meta, "managedFields": managed}})
        self.quiet.wait(0.05)


def test_the_cache_keeps_no_managed_fields() -> None:
    access = ManagedFields()
    informer = Informer(access, SERVICES, max_backoff=0.05)
    seen: list[Obj] = []
    informer.add_handler(lambda type_, obj: seen.append(obj))
    informer.start()
    try:
        deadline = time.monotonic() + 5
        while sorted(o["metadata"]["name"] for o in informer.list()) != ["a", "b"]:
            assert time.monotonic() < deadline, informer.list()
            time.sleep(0.01)
        assert all("managedFields" not in o["metadata"] for o in informer.list())
        assert all("managedFields" not in o["metadata"] for o in seen)
        assert informer.get("ns", "b") == {
            "metadata": {"name": "b", "namespace": "ns", "resourceVersion": "2"}
        }
    finally:
        informer.stop()
