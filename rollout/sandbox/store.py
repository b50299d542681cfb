"""The emulator's object store: Kubernetes' write semantics over plain dicts, and watch.

Contract, as the apiserver behaves (each point has a conformance test in
``tests/integration/test_sandbox_*.py``):

- one monotonic ``resourceVersion`` counter for every write; a write that changes nothing is
  not a write (no new version, no event), as in Kubernetes;
- create sets ``uid``, ``creationTimestamp``, ``generation: 1`` (on the types that keep a
  generation: custom resources, apps workloads, CRDs; not ConfigMaps, Secrets, Services...),
  honours ``generateName``, drops ``status`` when the type has a status subresource, needs an
  existing namespace (and one not terminating: 403), and a CRD not terminating (405);
- ``generation`` moves only when content other than ``metadata`` and ``status`` changes (status
  counts too when the type has no status subresource);
- replace with a stale ``resourceVersion`` is a Conflict; without one it is unconditional for
  built-in types and 422 for custom resources (whose strategy forbids unconditional updates);
- writes to ``/status`` change only status; writes to the object never change status;
- delete with finalizers only sets ``deletionTimestamp``; the object goes when the last
  finalizer is removed, and no finalizer can be added meanwhile; ``Orphan`` and ``Foreground``
  propagation add the ``orphan``/``foregroundDeletion`` finalizer that the garbage collector
  (see ``gc``) removes once it has orphaned/deleted the dependents; a CRD gets
  ``customresourcecleanup.apiextensions.k8s.io`` until its objects are gone; dependents are
  garbage-collected after their owner goes;
- watch delivers exactly the events after the version asked for (410 Gone once compacted),
  with selection changes delivered as ADDED/DELETED, as the watch cache does (the DELETED of an
  object that left the selection carries its previous content at the new resourceVersion);
- ``dry_run`` (the API's ``dryRun=All``) on create, update, patch and delete runs every check and
  admission step and returns the object the write would produce, but stores nothing: no new
  version, no event, no garbage collection (a dry-run create has a ``uid`` and no
  ``resourceVersion``, as the apiserver's).

Stored objects are never mutated: every write builds a new dict, so readers may hold them.

Cost (issue 14): a write, a get and a watch event cost O(1) in the number of stored objects; a
list costs O(objects returned) (a per-namespace index, and the sorted order of a bucket's names
kept until an object is added or removed: no scan of other namespaces, no sort per list). The
garbage collector finds an owner's dependents and an object by uid through indexes. Each
resource type has its own ``threading.Condition`` (one lock for the store): a write wakes only
the watchers of its type, and the garbage collector only when it has work.
"""

from __future__ import annotations

import bisect
import builtins  # ``Store.list`` shadows the builtin in the class body
import copy
import random
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rollout.sandbox.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from rollout.sandbox.resources import ResourceType
from rollout.sandbox.selectors import Matcher, ObjectMatcher

Obj = dict[str, Any]
Key = tuple[str, str]  # (group, plural)
Name = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Event:
    rv: int
    key: Key
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    prev: Obj | None  # the object before a MODIFIED, for selection changes


class Admission(Protocol):
    """Type-specific behaviour: defaults, validation, reactions (see ``admission.py``)."""

    def on_create(self, rtype: ResourceType, obj: Obj) -> Obj: ...

    def validate(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj: ...

    def committed(self, rtype: ResourceType, event: Event) -> None: ...


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: Obj, rtype: ResourceType) -> Obj:
    """What ``generation`` tracks: everything but metadata (and status, if a subresource)."""
    skip = ("metadata", "apiVersion", "kind", "status") if rtype.status else ("metadata",)
    return {k: v for k, v in obj.items() if k not in skip and k not in ("apiVersion", "kind")}


ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACES = ("", "namespaces")
PROPAGATIONS = ("Background", "Foreground", "Orphan")


IDLE_EVERY = 1.0

SERVER_FIELDS = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class Store:
    def __init__(self, admission: Admission, *, history: int = 50_000) -> None:
        self.admission = admission
        self.lock = threading.RLock()
        # ``cond``: the store's lock, notified when garbage-collection work is queued or the
        # store closes. Watchers wait on their type's condition (``_type_cond``), same lock.
        self.cond = threading.Condition(self.lock)
        self._type_conds: dict[Key, threading.Condition] = {}
        self.rv = 0
        self.data: dict[Key, dict[Name, Obj]] = {}
        # Indexes, kept by ``_put``/``_drop``: objects by namespace, the sorted names of a
        # bucket or namespace (dropped when an object is added or removed), owner uid to its
        # dependents, uid to the object.
        self._by_namespace: dict[Key, dict[str, dict[str, Obj]]] = {}
        self._sorted: dict[tuple[Key, str | None], builtins.list[Name]] = {}
        self._dependents: dict[str, set[tuple[Key, Name]]] = {}
        self._by_uid: dict[str, tuple[Key, Name]] = {}
        self._type_rv: dict[Key, int] = {}  # the version of each type's last write
        self.log: list[Event] = []
        self.log_rvs: list[int] = []
        self.history = history
        self.compacted = 0  # events at or below this version are gone from the log
        self.gc_queue: list[tuple[str, str]] = []  # (uid, propagation) of deleted owners
        self.closed = False

    # -- helpers ----------------------------------------------------------------------------

    def _bucket(self, rtype: ResourceType) -> dict[Name, Obj]:
        return self.data.setdefault(rtype.key, {})

    def _name(self, rtype: ResourceType, namespace: str | None, name: str) -> Name:
        return ((namespace or "") if rtype.namespaced else "", name)

    def _type_cond(self, key: Key) -> threading.Condition:
        cond = self._type_conds.get(key)
        if cond is None:
            cond = self._type_conds.setdefault(key, threading.Condition(self.lock))
        return cond

    def _put(self, key: Key, name: Name, obj: Obj, old: Obj | None) -> None:
        """Store ``obj`` under ``name`` (replacing ``old``), keeping the indexes."""
        self.data.setdefault(key, {})[name] = obj
        self._by_namespace.setdefault(key, {}).setdefault(name[0], {})[name[1]] = obj
        if old is None:
            self._sorted.pop((key, None), None)
            self._sorted.pop((key, name[0]), None)
        else:
            self._unindex(key, name, old)
        uid = obj["metadata"].get("uid")
        if uid:
            self._by_uid[uid] = (key, name)
        for owner in _owner_uids(obj):
            self._dependents.setdefault(owner, set()).add((key, name))

    def _drop(self, key: Key, name: Name, old: Obj) -> None:
        del self.data[key][name]
        in_namespace = self._by_namespace[key][name[0]]
        del in_namespace[name[1]]
        if not in_namespace:
            del self._by_namespace[key][name[0]]
        self._sorted.pop((key, None), None)
        self._sorted.pop((key, name[0]), None)
        self._unindex(key, name, old)

    def _unindex(self, key: Key, name: Name, old: Obj) -> None:
        uid = old["metadata"].get("uid")
        if uid and self._by_uid.get(uid) == (key, name):
            del self._by_uid[uid]
        for owner in _owner_uids(old):
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard((key, name))
                if not dependents:
                    del self._dependents[owner]

    def _sorted_names(self, key: Key, namespace: str | None) -> builtins.list[Name]:
        names = self._sorted.get((key, namespace))
        if names is None:
            if namespace is None:
                names = sorted(self.data.get(key, {}))
            else:
                names = [
                    (namespace, n)
                    for n in sorted(self._by_namespace.get(key, {}).get(namespace, {}))
                ]
            self._sorted[(key, namespace)] = names
        return names

    def _record(self, rtype: ResourceType, type_: str, obj: Obj, prev: Obj | None) -> None:
        event = Event(self.rv, rtype.key, type_, obj, prev)
        self._type_rv[rtype.key] = self.rv
        self.log.append(event)
        self.log_rvs.append(self.rv)
        if len(self.log) > self.history:
            drop = len(self.log) - self.history * 3 // 4
            self.compacted = self.log_rvs[drop - 1]
            del self.log[:drop]
            del self.log_rvs[:drop]
        self.admission.committed(rtype, event)
        self._type_cond(rtype.key).notify_all()

    def _queue_gc(self, uid: str, propagation: str) -> None:
        self.gc_queue.append((uid, propagation))
        self.cond.notify_all()

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.cond:
            obj = self._bucket(rtype).get(self._name(rtype, namespace, name))
            if obj is None:
                raise not_found(rtype.group, rtype.plural, name)
            return obj

    def find(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        with self.cond:
            return self._bucket(rtype).get(self._name(rtype, namespace, name))

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: Matcher,
        fields: ObjectMatcher,
    ) -> tuple[list[Obj], int]:
        with self.lock:
            bucket = self._bucket(rtype)
            candidates = (bucket[name] for name in self._sorted_names(rtype.key, namespace))
            items = [
                obj
                for obj in candidates
                if labels(obj["metadata"].get("labels") or {}) and fields(obj)
            ]
            return items, self.rv

    def all_objects(self) -> builtins.list[tuple[Key, Obj]]:
        with self.lock:
            return [(key, obj) for key, bucket in self.data.items() for obj in bucket.values()]

    def type_version(self, key: Key) -> int:
        """The resourceVersion of the last write to a type (0: none): unchanged means nothing
        of that type changed."""
        with self.lock:
            return self._type_rv.get(key, 0)

    def keys(self) -> builtins.list[Key]:
        """The resource types that have stored objects (or had)."""
        with self.lock:
            return builtins.list(self.data)

    def objects_of(self, key: Key) -> builtins.list[Obj]:
        """Every stored object of one resource type."""
        with self.lock:
            return builtins.list(self.data.get(key, {}).values())

    def in_namespace(self, namespace: str) -> builtins.list[tuple[Key, Obj]]:
        """Every stored object in ``namespace``, of every type (from the namespace index)."""
        with self.lock:
            return [
                (key, obj)
                for key, namespaces in self._by_namespace.items()
                for obj in namespaces.get(namespace, {}).values()
            ]

    def dependents_of(self, uid: str) -> builtins.list[tuple[Key, Obj]]:
        """The stored objects with an ownerReference to ``uid`` (from the owner index)."""
        with self.lock:
            return [(key, self.data[key][name]) for key, name in self._dependents.get(uid, ())]

    def by_uid(self, uid: str) -> tuple[Key, Obj] | None:
        """The stored object with this ``metadata.uid``, if any (from the uid index)."""
        with self.lock:
            found = self._by_uid.get(uid)
            return None if found is None else (found[0], self.data[found[0]][found[1]])

    # -- writes -----------------------------------------------------------------------------

    def create(
        self, rtype: ResourceType, namespace: str | None, body: Obj, *, dry_run: bool = False
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        meta = body.get("metadata")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if body.get("kind") not in (None, rtype.kind):
            raise bad_request(
                f"the kind of the object ({body.get('kind')}) does not match the resource "
                f"({rtype.kind})"
            )
        obj: Obj = {**body, "metadata": dict(meta)}
        meta = obj["metadata"]
        name = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiError(
                    422,
                    "Invalid",
                    f"{rtype.kind} is invalid: metadata.name: Required value: name or "
                    "generateName is required",
                    {
                        "kind": rtype.kind,
                        "causes": [
                            {
                                "reason": "FieldValueRequired",
                                "message": "Required value: name or generateName is required",
                                "field": "metadata.name",
                            }
                        ],
                    },
                )
            alphabet = string.ascii_lowercase + string.digits
            name = prefix + "".join(random.choices(alphabet, k=5))
            meta["name"] = name
        if rtype.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if _nonzero_version(meta.get("resourceVersion")):
            # The storage layer's refusal, which the apiserver answers as a plain 500.
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        for server_field in SERVER_FIELDS:
            meta.pop(server_field, None)
        meta.pop("managedFields", None)
        if rtype.status:
            obj.pop("status", None)
        obj["apiVersion"] = rtype.api_version(rtype.preferred)
        obj["kind"] = rtype.kind
        with self.cond:
            if rtype.namespaced:
                self._require_namespace(namespace or "")
            if not rtype.strategic:
                self._require_live_crd(rtype, name)
            bucket = self._bucket(rtype)
            key = self._name(rtype, namespace, name)
            if key in bucket:
                raise already_exists(rtype.group, rtype.plural, name)
            obj = self.admission.on_create(rtype, obj)
            obj = self.admission.validate(rtype, obj, None)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rtype.generation:
                meta["generation"] = 1
            if dry_run:
                return obj
            meta["resourceVersion"] = self._next_rv()
            self._put(rtype.key, key, obj, None)
            self._record(rtype, "ADDED", obj, None)
            return obj

    def _require_namespace(self, namespace: str) -> None:
        ns = self.data.get(("", "namespaces"), {}).get(("", namespace))
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _require_live_crd(self, rtype: ResourceType, name: str) -> None:
        crd = self.data.get(CRDS, {}).get(("", f"{rtype.plural}.{rtype.group}"))
        if crd is not None and crd["metadata"].get("deletionTimestamp"):
            # apiextensions-apiserver's create strategy: 403 Forbidden (kube-apiserver v1.34).
            raise ApiError(
                403,
                "Forbidden",
                f'{rtype.plural}.{rtype.group} "{name}" is forbidden: create not allowed while '
                "custom resource definition is terminating",
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        subresource: str | None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise bad_request("the body of the request must be an object with metadata")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name not in (None, "", name):
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        body_namespace = (body.get("metadata") or {}).get("namespace")
        if rtype.namespaced and body_namespace not in (None, "", namespace):
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        with self.cond:
            old = self.get(rtype, namespace, name)
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted not in (None, "") and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(rtype.group, rtype.plural, name)
            if wanted in (None, "") and not rtype.strategic:
                # Custom resources: AllowUnconditionalUpdate() is false (registry store Update).
                raise invalid(
                    rtype.group,
                    rtype.plural,
                    name,
                    [
                        (
                            "metadata.resourceVersion",
                            "FieldValueInvalid",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            return self._commit(
                rtype, old, self._compose(rtype, old, body, subresource), dry_run=dry_run
            )

    def mutate(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        subresource: str | None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Apply ``change`` (a patch) to the current object atomically, then commit it."""
        with self.cond:
            old = self.get(rtype, namespace, name)
            patched = change(old)
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise ApiError(422, "Invalid", "the patched object must be an object with metadata")
            meta = patched["metadata"]
            if meta.get("name") != name or (
                rtype.namespaced and meta.get("namespace") not in (None, namespace)
            ):
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rtype.kind} "{name}" is invalid: metadata.name: Invalid value: '
                    f'"{meta.get("name")}": field is immutable',
                )
            wanted = meta.get("resourceVersion")
            if wanted not in (None, "") and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(rtype.group, rtype.plural, name)
            return self._commit(
                rtype, old, self._compose(rtype, old, patched, subresource), dry_run=dry_run
            )

    def _compose(self, rtype: ResourceType, old: Obj, body: Obj, subresource: str | None) -> Obj:
        """The object a write asks for, with what the caller may not change taken from ``old``."""
        if subresource == "status":
            # Its own metadata: the commit sets a new resourceVersion there, and the stored
            # object (which events and watchers hold) must never change.
            new = {k: v for k, v in old.items() if k != "status"}
            new["metadata"] = dict(old["metadata"])
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            return new
        new = copy.deepcopy({k: v for k, v in body.items() if k != "status"})
        meta = new.setdefault("metadata", {})
        for server_field in (*SERVER_FIELDS, "name", "namespace"):
            if server_field in old["metadata"]:
                meta[server_field] = old["metadata"][server_field]
            else:
                meta.pop(server_field, None)
        meta.pop("managedFields", None)
        if rtype.status:
            if "status" in old:
                new["status"] = old["status"]
        elif "status" in body:
            new["status"] = copy.deepcopy(body["status"])
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = rtype.kind
        return new

    def _commit(self, rtype: ResourceType, old: Obj, new: Obj, *, dry_run: bool = False) -> Obj:
        _check_finalizers(rtype, old, new)
        new = self.admission.validate(rtype, new, old)
        meta = new["metadata"]
        if rtype.generation and _content(new, rtype) != _content(old, rtype):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new
        key = self._name(rtype, meta.get("namespace"), meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            meta["resourceVersion"] = self._next_rv()
            self._drop(rtype.key, key, old)
            self._record(rtype, "DELETED", new, old)
            self._queue_gc(meta["uid"], "Background")
            return new
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old  # a no-op is not a write: no new version, no event
        meta["resourceVersion"] = self._next_rv()
        self._put(rtype.key, key, new, old)
        self._record(rtype, "MODIFIED", new, old)
        return new

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str = "Background",
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if propagation not in PROPAGATIONS:
            raise invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                [
                    (
                        "propagationPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{propagation}": supported values: "Foreground", '
                        '"Background", "Orphan"',
                    )
                ],
            )
        with self.cond:
            old = self.get(rtype, namespace, name)
            meta = old["metadata"]
            pre = preconditions or {}
            if pre.get("uid") not in (None, meta["uid"]) or pre.get("resourceVersion") not in (
                None,
                meta["resourceVersion"],
            ):
                raise conflict(rtype.group, rtype.plural, name)
            # The finalizers the apiserver adds for the garbage collector and the CRD cleanup.
            extra = {"Orphan": [ORPHAN], "Foreground": [FOREGROUND]}.get(propagation, [])
            if rtype.key == CRDS:
                extra.append(CRD_CLEANUP)
            if meta.get("finalizers") or extra or rtype.key == NAMESPACES:
                if meta.get("deletionTimestamp"):
                    return old
                new = copy.deepcopy(old)
                new_meta = new["metadata"]
                new_meta["deletionTimestamp"] = now_rfc3339()
                new_meta["deletionGracePeriodSeconds"] = 0
                finalizers = list(new_meta.get("finalizers") or [])
                finalizers += [f for f in extra if f not in finalizers]
                if finalizers:
                    new_meta["finalizers"] = finalizers
                if rtype.key == NAMESPACES:
                    new.setdefault("status", {})["phase"] = "Terminating"
                if rtype.key == CRDS:
                    _set_condition(
                        new,
                        "Terminating",
                        "InstanceDeletionPending",
                        "CustomResourceDefinition marked for deletion; CustomResource deletion "
                        "will begin soon",
                    )
                if dry_run:
                    return new
                new_meta["resourceVersion"] = self._next_rv()
                self._put(rtype.key, self._name(rtype, namespace, name), new, old)
                self._record(rtype, "MODIFIED", new, old)
                self._queue_gc(meta["uid"], propagation)
                return new
            if dry_run:
                return old
            return self._remove(rtype, old, propagation)

    def _remove(self, rtype: ResourceType, old: Obj, propagation: str) -> Obj:
        meta = old["metadata"]
        gone = {**old, "metadata": {**meta, "resourceVersion": self._next_rv()}}
        self._drop(rtype.key, self._name(rtype, meta.get("namespace"), meta["name"]), old)
        self._record(rtype, "DELETED", gone, old)
        self._queue_gc(meta["uid"], propagation)
        return gone

    def remove_now(self, rtype: ResourceType, namespace: str | None, name: str) -> None:
        """Remove without finalizers (the namespace controller's last step)."""
        with self.cond:
            old = self.find(rtype, namespace, name)
            if old is not None:
                self._remove(rtype, old, "Background")

    def take_gc_work(self) -> builtins.list[tuple[str, str]]:
        with self.cond:
            work, self.gc_queue = self.gc_queue, []
            return work

    # -- watch ------------------------------------------------------------------------------

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        resource_version: str | None,
        labels: Matcher,
        fields: ObjectMatcher,
        *,
        timeout: float,
        bookmark_every: float | None,
    ) -> Iterator[tuple[str, Obj]]:
        """Yield ``(type, object)``: ADDED/MODIFIED/DELETED, BOOKMARK, ERROR, IDLE or FLUSH.

        IDLE (no object) comes after a quiet second: the HTTP layer uses it to notice a client
        that went away, and never sends it. FLUSH (no object) comes after each batch of events
        (the initial list, then what each wake-up found): the HTTP layer writes what it has
        buffered in one send, and never sends the marker itself.
        """
        deadline = time.monotonic() + timeout

        def selected(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        with self.cond:
            if resource_version in (None, "", "0"):
                position = self.rv
                initial, _ = self.list(rtype, namespace, labels, fields)
            else:
                try:
                    position = int(resource_version)
                except ValueError:
                    raise bad_request(
                        f"invalid resourceVersion {resource_version!r}: must be an integer"
                    ) from None
                initial = []
        for obj in initial:
            yield "ADDED", obj
        if initial:
            yield "FLUSH", {}
        next_bookmark = time.monotonic() + bookmark_every if bookmark_every else None
        while not self.closed:
            with self.cond:
                if position < self.compacted:
                    yield "ERROR", _expired(position, self.compacted)
                    return
                events = self._after(position)
                if not events:
                    now = time.monotonic()
                    wait = deadline - now
                    if next_bookmark is not None:
                        wait = min(wait, next_bookmark - now)
                    # Wake at least once a second so the server can notice a gone client.
                    wait = min(wait, IDLE_EVERY)
                    if wait > 0:
                        self._type_cond(rtype.key).wait(wait)
                    events = self._after(position)
                    if position < self.compacted:
                        yield "ERROR", _expired(position, self.compacted)
                        return
                current = self.rv
            for event in events:
                position = event.rv
                if event.key != rtype.key:
                    continue
                now_in, was_in = selected(event.obj), selected(event.prev)
                if event.type == "MODIFIED":
                    if now_in and not was_in:
                        yield "ADDED", event.obj
                    elif was_in and not now_in and event.prev is not None:
                        # The watch cache's DELETED for an object that left the selection:
                        # its previous content (the one that matched), at the event's version.
                        version = event.obj["metadata"]["resourceVersion"]
                        meta = {**event.prev["metadata"], "resourceVersion": version}
                        yield "DELETED", {**event.prev, "metadata": meta}
                    elif now_in:
                        yield "MODIFIED", event.obj
                elif now_in or (event.type == "DELETED" and was_in):
                    yield event.type, event.obj
            if events:
                yield "FLUSH", {}
            else:
                position = max(position, current)
                yield "IDLE", {}
            now = time.monotonic()
            if next_bookmark is not None and bookmark_every is not None and now >= next_bookmark:
                next_bookmark = now + bookmark_every
                yield "BOOKMARK", _bookmark(rtype, position)
            if now >= deadline:
                return

    def _after(self, position: int) -> builtins.list[Event]:
        start = bisect.bisect_right(self.log_rvs, position)
        return self.log[start:]

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.cond.notify_all()
            for cond in self._type_conds.values():
                cond.notify_all()


def _nonzero_version(value: Any) -> bool:
    try:
        return int(str(value)) != 0
    except ValueError:
        return False  # not a version the storage layer can read: ignored, as it ignores it


def _check_finalizers(rtype: ResourceType, old: Obj, new: Obj) -> None:
    """ValidateObjectMetaUpdate: no finalizer may be added to an object being deleted."""
    if not old["metadata"].get("deletionTimestamp"):
        return
    before = set(old["metadata"].get("finalizers") or [])
    added = [f for f in new["metadata"].get("finalizers") or [] if f not in before]
    if added:
        listed = ", ".join(f'"{f}"' for f in added)
        raise invalid(
            rtype.group,
            rtype.kind,
            old["metadata"]["name"],
            [
                (
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{listed}}}",
                )
            ],
        )


def _set_condition(obj: Obj, type_: str, reason: str, message: str) -> None:
    status = obj.setdefault("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    conditions.append(
        {
            "type": type_,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
        }
    )
    status["conditions"] = conditions


def _owner_uids(obj: Obj) -> set[str]:
    """The uids an object's ``ownerReferences`` name (malformed entries ignored)."""
    refs = obj["metadata"].get("ownerReferences")
    if not isinstance(refs, builtins.list):
        return set()
    return {r["uid"] for r in refs if isinstance(r, dict) and isinstance(r.get("uid"), str)}


def _expired(position: int, compacted: int) -> Obj:
    return ApiError(
        410,
        "Expired",
        f"too old resource version: {position} ({compacted + 1})",
    ).body()


def _bookmark(rtype: ResourceType, position: int) -> Obj:
    return {
        "kind": rtype.kind,
        "apiVersion": rtype.api_version(rtype.preferred),
        "metadata": {"resourceVersion": str(position)},
    }
