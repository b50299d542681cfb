"""Garbage collection and namespace/CRD clean-up, run by one background thread.

As Kubernetes' garbage collector: after an owner is deleted, a dependent whose every owner is
gone is deleted (background propagation), and one that still has a live owner loses the dangling
reference. ``Orphan`` deletion leaves the owner with the ``orphan`` finalizer until its
dependents' references to it are removed; ``Foreground`` with ``foregroundDeletion`` until the
dependents that block it (``blockOwnerDeletion``) are gone. A deleted namespace's objects are
deleted, and the namespace disappears once they are all gone (objects with finalizers hold it in
``Terminating``). A deleted CRD keeps its ``customresourcecleanup`` finalizer until its custom
resources are gone. Asynchronous, as in Kubernetes: tests poll for the outcome.

Each step reads the store's indexes (dependents by owner uid, objects by uid, by namespace, by
type), never every stored object: a deletion costs O(its dependents), not O(objects stored).
"""

from __future__ import annotations

import threading
from typing import Any

from rollout.sandbox.errors import ApiError
from rollout.sandbox.resources import Registry, ResourceType
from rollout.sandbox.store import CRD_CLEANUP, CRDS, FOREGROUND, NAMESPACES, ORPHAN, Obj, Store


class GarbageCollector:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        self.pending_namespaces: set[str] = set()
        self.pending_crds: set[str] = set()
        self.pending_foreground: set[str] = set()  # owner uids
        self._thread = threading.Thread(target=self._loop, name="sandbox-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _pending(self) -> bool:
        return bool(self.pending_namespaces or self.pending_crds or self.pending_foreground)

    def _loop(self) -> None:
        while not self.store.closed:
            with self.store.cond:
                if not self.store.gc_queue:
                    # Pending clean-ups are re-checked a few times a second, not busily.
                    self.store.cond.wait(0.1 if self._pending() else 1.0)
            for uid, propagation in self.store.take_gc_work():
                self._collect(uid, propagation)
            for namespace in list(self.pending_namespaces):
                self._finish_namespace(namespace)
            for crd in list(self.pending_crds):
                self._finish_crd(crd)
            for uid in list(self.pending_foreground):
                self._finish_foreground(uid)

    def _types(self) -> dict[tuple[str, str], ResourceType]:
        return {t.key: t for t in self.registry.all()}

    def _dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        types = self._types()
        return [(types[key], obj) for key, obj in self.store.dependents_of(uid) if key in types]

    def _collect(self, uid: str, propagation: str) -> None:
        still = self.store.by_uid(uid)
        if still is not None:  # only marked for deletion
            key, obj = still
            finalizers = obj["metadata"].get("finalizers") or []
            if key == NAMESPACES:
                self.pending_namespaces.add(obj["metadata"]["name"])
            if key == CRDS and CRD_CLEANUP in finalizers:
                self.pending_crds.add(obj["metadata"]["name"])
            if ORPHAN in finalizers:
                for rtype, dependent in self._dependents(uid):
                    self._drop_reference(rtype, dependent, uid)
                self._remove_finalizer(key, obj, ORPHAN)
            if FOREGROUND in finalizers:
                for rtype, dependent in self._dependents(uid):
                    self._delete(rtype, dependent)
                self.pending_foreground.add(uid)
            return
        for rtype, dependent in self._dependents(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            if all(self.store.by_uid(r.get("uid")) is None for r in refs):
                self._delete(rtype, dependent)
            else:  # another owner is alive: the dangling reference goes
                self._drop_reference(rtype, dependent, uid)
        self._forget_crd_objects()

    def _delete(self, rtype: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        try:
            self.store.delete(rtype, meta.get("namespace"), meta["name"])
        except ApiError:
            pass  # changed or gone meanwhile: nothing left to do for it

    def _drop_reference(self, rtype: ResourceType, obj: Obj, uid: str) -> None:
        meta = obj["metadata"]
        try:
            self.store.mutate(
                rtype, meta.get("namespace"), meta["name"], lambda o: _without_owner(o, uid), None
            )
        except ApiError:
            pass

    def _remove_finalizer(self, key: tuple[str, str], obj: Obj, finalizer: str) -> None:
        rtype = self._types().get(key)
        if rtype is None:
            return
        meta = obj["metadata"]

        def change(current: Obj) -> Obj:
            current_meta: dict[str, Any] = dict(current["metadata"])
            finalizers = [f for f in current_meta.get("finalizers") or [] if f != finalizer]
            if finalizers:
                current_meta["finalizers"] = finalizers
            else:
                current_meta.pop("finalizers", None)
            return {**current, "metadata": current_meta}

        try:
            self.store.mutate(rtype, meta.get("namespace"), meta["name"], change, None)
        except ApiError:
            pass

    def _finish_foreground(self, uid: str) -> None:
        owner = self.store.by_uid(uid)
        if owner is None:
            self.pending_foreground.discard(uid)
            return
        blocking = [
            obj
            for _, obj in self._dependents(uid)
            if any(
                r.get("uid") == uid and r.get("blockOwnerDeletion")
                for r in obj["metadata"].get("ownerReferences") or []
            )
        ]
        if not blocking:
            self.pending_foreground.discard(uid)
            self._remove_finalizer(owner[0], owner[1], FOREGROUND)

    def _finish_crd(self, name: str) -> None:
        crd = self.store.find(self._types()[CRDS], None, name)
        if crd is None:
            self.pending_crds.discard(name)
            return
        spec = crd.get("spec") or {}
        key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rtype = self._types().get(key)
        remaining = self.store.objects_of(key)
        if rtype is not None:
            for obj in remaining:
                self._delete(rtype, obj)
        if not remaining:
            self.pending_crds.discard(name)
            self._remove_finalizer(CRDS, crd, CRD_CLEANUP)

    def _forget_crd_objects(self) -> None:
        """Custom resources whose CRD is gone are deleted with it."""
        types = self._types()
        for key in self.store.keys():
            if key in types:
                continue
            for obj in self.store.objects_of(key):
                self._forget(key, obj)

    def _forget(self, key: tuple[str, str], obj: Obj) -> None:
        meta = obj["metadata"]
        orphan_type = ResourceType(
            group=key[0],
            versions=("v1",),
            kind=obj.get("kind", ""),
            plural=key[1],
            singular=key[1],
            namespaced=bool(meta.get("namespace")),
            strategic=False,
        )
        self.store.remove_now(orphan_type, meta.get("namespace"), meta["name"])

    def _finish_namespace(self, namespace: str) -> None:
        types = self._types()
        remaining = 0
        for key, obj in self.store.in_namespace(namespace):
            meta = obj["metadata"]
            if key not in types:
                continue
            remaining += 1
            try:
                self.store.delete(types[key], namespace, meta["name"])
            except ApiError:
                continue
        if remaining == 0:
            self.store.remove_now(types[NAMESPACES], None, namespace)
            self.pending_namespaces.discard(namespace)


def _without_owner(obj: Obj, uid: str) -> Obj:
    meta: dict[str, Any] = dict(obj["metadata"])
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
    if refs:
        meta["ownerReferences"] = refs
    else:
        meta.pop("ownerReferences", None)
    return {**obj, "metadata": meta}
