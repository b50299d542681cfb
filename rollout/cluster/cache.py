"""A watch cache (informer) per resource type, so that a reconcile reads from memory.

List, then watch from the list's resourceVersion (with bookmarks, so a quiet type still
advances); when a watch ends, resume from the last version seen; on 410 Gone, or after the API
was unreachable, list again and report the differences as events, so no change is ever missed.
Handlers run on the informer's thread and must be quick (they enqueue keys).

Indexes answer the questions a reconcile or a handler would otherwise answer by scanning every
object: the objects of one namespace (built in), and any ``add_index(name, fn)`` (the
ReplicaSets a Rollout controls, the Rollouts naming a VirtualService). They are kept in step
with the objects under the same lock (on every watch event and relist), and updated before
the handlers are told, so a handler's lookup already sees the event it handles.

With a ``label_selector`` the list and the watch carry it, so the API sends only the objects it
selects and the cache holds nothing else; an object whose labels stop matching comes from the
watch as DELETED (its last matching content) and leaves the cache like a deleted one.

What the cache keeps of an object is ``trimmed``: everything but ``metadata.managedFields``,
which a real apiserver sends with every object (often the biggest part of it: a field tree of
every field each writer set) and which nothing in the controller reads; the sandbox does not
keep them. A reader of the cache that ever needs them must read the object from the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable

from rollout.cluster.access import (
    ClusterAccess,
    ClusterError,
    Gone,
    Obj,
    Resource,
)

log = logging.getLogger(__name__)

Handler = Callable[[str, Obj], None]  # (ADDED | MODIFIED | DELETED, object)
Key = tuple[str, str]  # (namespace, name)
# The values an object is filed under in an index (none: not in the index). Must be a pure
# function of the object.
IndexFunc = Callable[[Obj], Iterable[Hashable]]


def trimmed(obj: Obj) -> Obj:
    """``obj`` without ``metadata.managedFields`` (removed in place: the object is the cache's
    own, fresh from a list or a watch event); returns it."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata", {})
    return (meta.get("namespace") or "", meta.get("name", ""))


class Informer:
    def __init__(
        self,
        access: ClusterAccess,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        watch_timeout: int = 300,
        max_backoff: float = 5.0,
    ) -> None:
        self.access = access
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector or None
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.handlers: list[Handler] = []
        self.synced = threading.Event()
        self._objects: dict[Key, Obj] = {}
        # index name -> its function, value -> keys filed under it (a dict: ordered, O(1)
        # removal), and key -> the values it is filed under (to unfile it on change)
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[Hashable, dict[Key, None]]] = {}
        self._filed: dict[str, dict[Key, tuple[Hashable, ...]]] = {}
        self._by_namespace: dict[str, dict[Key, None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{resource.plural}", daemon=True
        )
        self.resource_version = ""

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """File every object (present and future) under the values ``fn(obj)`` returns, so that
        ``by_index(name, value)`` answers without a scan. ``fn`` must be quick and pure; one
        that raises files that object under nothing (and logs why)."""
        with self._lock:
            self._index_funcs[name] = fn
            self._indexes[name] = {}
            self._filed[name] = {}
            for key, obj in self._objects.items():
                self._file(name, key, obj)

    def by_index(self, name: str, value: Hashable) -> list[Obj]:
        """The objects filed under ``value`` in index ``name`` (``KeyError``: no such index);
        what ``[o for o in list() if value in fn(o)]`` would answer, in no set order."""
        with self._lock:
            keys = self._indexes[name].get(value, {})
            return [self._objects[key] for key in keys]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        """Every object, or those of ``namespace`` (from the namespace index)."""
        with self._lock:
            if namespace is None:
                return list(self._objects.values())
            keys = self._by_namespace.get(namespace, {})
            return [self._objects[key] for key in keys]

    # -- the store and its indexes (callers hold the lock) ----------------------------------

    def _file(self, name: str, key: Key, obj: Obj) -> None:
        try:
            values = tuple(dict.fromkeys(self._index_funcs[name](obj)))
        except Exception:  # a malformed object must not break the cache
            log.exception("%s: index %s failed on %s/%s", self.resource.plural, name, *key)
            values = ()
        index = self._indexes[name]
        for value in values:
            index.setdefault(value, {})[key] = None
        if values:
            self._filed[name][key] = values
        else:
            self._filed[name].pop(key, None)

    def _unfile(self, name: str, key: Key) -> None:
        index = self._indexes[name]
        for value in self._filed[name].pop(key, ()):
            keys = index.get(value)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del index[value]

    def _store(self, key: Key, obj: Obj) -> None:
        if key not in self._objects:
            self._by_namespace.setdefault(key[0], {})[key] = None
        self._objects[key] = obj
        for name in self._index_funcs:
            self._unfile(name, key)
            self._file(name, key, obj)

    def _drop(self, key: Key) -> None:
        if self._objects.pop(key, None) is None:
            return
        keys = self._by_namespace.get(key[0])
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_namespace[key[0]]
        for name in self._index_funcs:
            self._unfile(name, key)

    def _replace_all(self, fresh: dict[Key, Obj]) -> None:
        self._objects = {}
        self._by_namespace = {}
        for name in self._index_funcs:
            self._indexes[name] = {}
            self._filed[name] = {}
        for key, obj in fresh.items():
            self._store(key, obj)

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._relist()
                backoff = 0.1
                while not self._stop.is_set():
                    self._watch_once()
            except Gone:
                log.info("%s: watch expired, listing again", self.resource.plural)
            except ClusterError as error:
                log.warning("%s: %s; retrying in %.1fs", self.resource.plural, error, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a malformed reply: never let the cache die silently
                log.exception(
                    "%s: unexpected failure; listing again in %.1fs", self.resource.plural, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _relist(self) -> None:
        items, version = self.access.list(self.resource, self.namespace, self.label_selector)
        fresh = {key_of(o): trimmed(o) for o in items}
        with self._lock:
            old = self._objects
            self._replace_all(fresh)
            self.resource_version = version
        for key, obj in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._notify("ADDED", obj)
            elif previous.get("metadata", {}).get("resourceVersion") != obj["metadata"].get(
                "resourceVersion"
            ):
                self._notify("MODIFIED", obj)
        for key, obj in old.items():
            if key not in fresh:
                self._notify("DELETED", obj)
        self.synced.set()

    def _watch_once(self) -> None:
        events = self.access.watch(
            self.resource,
            self.namespace,
            self.resource_version,
            timeout_seconds=self.watch_timeout,
            label_selector=self.label_selector,
        )
        for event in events:
            if self._stop.is_set():
                return
            if event.type == "BOOKMARK":
                if event.resource_version:
                    self.resource_version = event.resource_version
                continue
            key = key_of(trimmed(event.object))
            with self._lock:  # the version moves with the object (and its indexes)
                if event.type == "DELETED":
                    self._drop(key)
                else:
                    self._store(key, event.object)
                if event.resource_version:
                    self.resource_version = event.resource_version
            self._notify(event.type, event.object)

    def _notify(self, type_: str, obj: Obj) -> None:
        for handler in self.handlers:
            try:
                handler(type_, obj)
            except Exception:  # a handler's bug must not stop the cache
                log.exception("%s handler failed", self.resource.plural)
