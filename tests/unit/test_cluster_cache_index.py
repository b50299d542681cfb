"""The informer's indexes answer exactly what a scan of its objects answered.

A scripted ``ClusterAccess`` (the seam) serves lists and watch events; after each change the
namespace index (``list(namespace)``) and the generic indexes (``by_index``) are compared with
a scan of what the API holds, across creates, updates that change the indexed values (an
owner, a Rollout's routing refs), deletes, and relists after 410 Gone that add, change and
drop objects without events.
"""

from __future__ import annotations

import contextlib
import queue
import random
import time
from collections.abc import Callable, Hashable, Iterable, Iterator

from rollout.cluster.access import (
    REPLICA_SETS,
    ROLLOUTS,
    Gone,
    Obj,
    Objs,
    Ops,
    PatchType,
    Resource,
    WatchEvent,
)
from rollout.cluster.cache import Informer, key_of
from rollout.controller.runtime import controller_uids, routing_refs, template_refs

NAMESPACES = ("a", "b", "c")


class ScriptedAccess:
    """Lists what ``world`` holds; watches replay the batches put on ``batches`` (a batch
    ``"gone"`` ends the watch with 410 Gone, so the informer lists again)."""

    def __init__(self) -> None:
        self.world: dict[tuple[str, str], Obj] = {}
        self.version = 0
        self.batches: queue.Queue[list[WatchEvent] | str] = queue.Queue()

    def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[Objs, str]:
        return [dict(o) for o in self.world.values()], str(self.version)

    def watch(
        self,
        res: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int = 300,
        label_selector: str | None = None,
    ) -> Iterator[WatchEvent]:
        try:
            batch = self.batches.get(timeout=0.05)
        except queue.Empty:
            return iter(())
        if batch == "gone":
            raise Gone("too old")
        assert not isinstance(batch, str)
        return iter(batch)

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

    # -- changing the world ---------------------------------------------------------------

    def _stamp(self, obj: Obj) -> Obj:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return obj

    def put(self, obj: Obj) -> None:
        """Create or update ``obj``, announced by a watch event."""
        key = key_of(obj)
        type_ = "MODIFIED" if key in self.world else "ADDED"
        self.world[key] = self._stamp(obj)
        self.batches.put([WatchEvent(type_, dict(obj))])

    def remove(self, key: tuple[str, str]) -> None:
        obj = self._stamp(self.world.pop(key))
        self.batches.put([WatchEvent("DELETED", dict(obj))])

    @contextlib.contextmanager
    def silently(self) -> Iterator[None]:
        """Changes whose events are lost: the watch expires and the informer lists again."""
        batches = self.batches
        self.batches = queue.Queue()
        yield
        self.batches = batches
        self.batches.put("gone")


def caught_up(informer: Informer, access: ScriptedAccess) -> None:
    deadline = time.monotonic() + 5
    while informer.resource_version != str(access.version) or not access.batches.empty():
        assert time.monotonic() < deadline, "the informer did not catch up"
        time.sleep(0.001)


def assert_same_as_scan(
    informer: Informer,
    access: ScriptedAccess,
    indexes: dict[str, Callable[[Obj], Iterable[Hashable]]],
) -> None:
    caught_up(informer, access)
    world = list(access.world.values())
    keys = sorted(key_of(o) for o in informer.list())
    assert keys == sorted(access.world)
    for namespace in (*NAMESPACES, "nowhere"):
        scanned = sorted(key_of(o) for o in world if key_of(o)[0] == namespace)
        assert sorted(key_of(o) for o in informer.list(namespace)) == scanned
    for name, fn in indexes.items():
        values = {v for o in world for v in fn(o)} | {("nowhere", "nothing")}
        for value in values:
            scanned = sorted(key_of(o) for o in world if value in set(fn(o)))
            found = informer.by_index(name, value)
            assert sorted(key_of(o) for o in found) == scanned, (name, value)
            # the objects themselves are the stored ones, as list() would return them
            assert all(o is informer.get(*key_of(o)) for o in found)


def replica_set(rng: random.Random, namespace: str, name: str) -> Obj:
    owners = [
        {"kind": "Rollout", "name": f"r{u}", "uid": f"uid-{u}", "controller": rng.random() < 0.8}
        for u in rng.sample(range(4), rng.randint(0, 2))
    ]
    return {"metadata": {"name": name, "namespace": namespace, "ownerReferences": owners}}


def rollout(rng: random.Random, namespace: str, name: str) -> Obj:
    istio: Obj = {"virtualServices": [{"name": f"vs{rng.randint(0, 3)}"}]}
    if rng.random() < 0.5:
        istio["virtualServices"].append({"name": f"gw.{rng.choice(NAMESPACES)}"})
    if rng.random() < 0.5:
        istio["destinationRule"] = {"name": f"dr{rng.randint(0, 2)}"}
    else:
        istio.update(stableService=f"s{rng.randint(0, 2)}", canaryService="canary")
    checks = [{"templateRef": {"name": f"t{rng.randint(0, 2)}"}} for _ in range(rng.randint(0, 2))]
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"trafficRouting": {"istio": istio}, "analysis": {"checks": checks}},
    }


def run_script(
    resource: Resource,
    make: Callable[[random.Random, str, str], Obj],
    indexes: dict[str, Callable[[Obj], Iterable[Hashable]]],
    seed: int,
) -> None:
    rng = random.Random(seed)
    access = ScriptedAccess()
    for i in range(6):
        namespace = rng.choice(NAMESPACES)
        access.world[(namespace, f"o{i}")] = access._stamp(make(rng, namespace, f"o{i}"))
    informer = Informer(access, resource, max_backoff=0.05)
    informer.add_index(next(iter(indexes)), next(iter(indexes.values())))  # before start
    informer.start()
    try:
        caught_up(informer, access)
        for name, fn in list(indexes.items())[1:]:
            informer.add_index(name, fn)  # after the first sync: files what is there
        assert_same_as_scan(informer, access, indexes)
        for step in range(120):
            choice = rng.random()
            existing = sorted(access.world)
            if choice < 0.35 or not existing:
                namespace = rng.choice(NAMESPACES)
                access.put(make(rng, namespace, f"n{step}"))
            elif choice < 0.7:  # an update that (often) changes what it is filed under
                namespace, name = rng.choice(existing)
                access.put(make(rng, namespace, name))
            elif choice < 0.9:
                access.remove(rng.choice(existing))
            else:
                with access.silently():
                    for key in rng.sample(existing, min(3, len(existing))):
                        del access.world[key]
                    for namespace, name in rng.sample(existing, min(2, len(existing))):
                        if (namespace, name) in access.world:
                            access.world[(namespace, name)] = access._stamp(
                                make(rng, namespace, name)
                            )
                    namespace = rng.choice(NAMESPACES)
                    access.world[(namespace, f"l{step}")] = access._stamp(
                        make(rng, namespace, f"l{step}")
                    )
            assert_same_as_scan(informer, access, indexes)
    finally:
        informer.stop()


def test_the_owner_index_answers_what_the_scan_of_replica_sets_answered() -> None:
    for seed in range(3):
        run_script(REPLICA_SETS, replica_set, {"owner": controller_uids}, seed)


def test_the_routing_and_template_indexes_answer_what_the_scan_of_rollouts_answered() -> None:
    indexes: dict[str, Callable[[Obj], Iterable[Hashable]]] = {
        "routing": routing_refs,
        "templates": template_refs,
    }
    for seed in range(3):
        run_script(ROLLOUTS, rollout, indexes, seed)


def test_an_index_function_that_fails_files_the_object_under_nothing() -> None:
    access = ScriptedAccess()
    access.world[("a", "x")] = access._stamp({"metadata": {"name": "x", "namespace": "a"}})
    informer = Informer(access, REPLICA_SETS, max_backoff=0.05)

    def broken(obj: Obj) -> list[str]:
        return [obj["metadata"]["labels"]["app"]]  # KeyError: no labels

    informer.add_index("app", broken)
    informer.start()
    try:
        caught_up(informer, access)
        assert [key_of(o) for o in informer.list("a")] == [("a", "x")]
        assert informer.by_index("app", "x") == []
        access.put({"metadata": {"name": "x", "namespace": "a", "labels": {"app": "shop"}}})
        caught_up(informer, access)
        assert [key_of(o) for o in informer.by_index("app", "shop")] == [("a", "x")]
    finally:
        informer.stop()
