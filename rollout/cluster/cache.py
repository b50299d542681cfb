"""A watch cache (informer) per resource type, so that a reconcile reads from memory.

List, then watch from the list's resourceVersion (with bookmarks, so a quiet type still
advances); when a watch ends, resume from the last version seen; on 410 Gone, or after the API
was unreachable, list again and report the differences as events, so no change is ever missed.
Handlers run on the informer's thread and must be quick (they enqueue keys).

What the cache keeps of an object is ``trimmed``: everything but ``metadata.managedFields``,
which a real apiserver sends with every object (often the biggest part of it: a field tree of
every field each writer set) and which nothing in the controller reads; the sandbox does not
keep them. A reader of the cache that ever needs them must read the object from the API.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
        watch_timeout: int = 300,
        max_backoff: float = 5.0,
    ) -> None:
        self.access = access
        self.resource = resource
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.handlers: list[Handler] = []
        self.synced = threading.Event()
        self._objects: dict[Key, Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{resource.plural}", daemon=True
        )
        self.resource_version = ""

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def get(self, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((namespace or "", name))

    def list(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [o for (ns, _), o in self._objects.items() if namespace in (None, ns)]

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
        items, version = self.access.list(self.resource, self.namespace)
        fresh = {key_of(o): trimmed(o) for o in items}
        with self._lock:
            old = self._objects
            self._objects = fresh
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
        )
        for event in events:
            if self._stop.is_set():
                return
            if event.resource_version:
                self.resource_version = event.resource_version
            if event.type == "BOOKMARK":
                continue
            key = key_of(trimmed(event.object))
            with self._lock:
                if event.type == "DELETED":
                    self._objects.pop(key, None)
                else:
                    self._objects[key] = event.object
            self._notify(event.type, event.object)

    def _notify(self, type_: str, obj: Obj) -> None:
        for handler in self.handlers:
            try:
                handler(type_, obj)
            except Exception:  # a handler's bug must not stop the cache
                log.exception("%s handler failed", self.resource.plural)
