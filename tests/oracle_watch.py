"""The oracle's eyes: a recorder of the test's namespaces and a log of the test's own writes.

Telling the test's writes from the controller's: the test's ``ApiClient`` is tapped at its
transport (``rest_client.request``, the official client's HTTP layer) so that every successful
write it makes (POST/PUT/PATCH/DELETE) is logged with the kind, namespace, name and
resourceVersion the API answered. Every other version of a routing object was written by
someone else: the controller (the sandbox's own simulators write only ReplicaSet/Pod status).
The tap only reads the answer; requests and responses go through unchanged.

``OracleWatch`` combines the two: start it before the test acts, ``verify()`` at teardown
returns the violations of ``tests.oracle`` minus those allowlisted in ``tests.oracle_known``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client

from tests import oracle, oracle_known
from tests.integration.controller_helpers import Recorder

WRITES = ("POST", "PUT", "PATCH", "DELETE")


class WriteLog:
    """The versions the test wrote: {(kind, namespace, name, rv)}, and deletions by key."""

    def __init__(self) -> None:
        self.versions: set[tuple[str, str, str, int]] = set()
        self.deleted: set[tuple[str, str, str]] = set()
        self.namespaces: list[str] = []  # namespaces the test created, in order
        self._lock = threading.Lock()
        self.listeners: list[Any] = []  # called with each namespace the test creates

    def tap(self, api_client: client.ApiClient) -> None:
        """Log every successful write ``api_client`` makes from now on (idempotent)."""
        rest: Any = api_client.rest_client
        if getattr(rest, "_oracle_tapped", None) is self:
            return
        original = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            response = original(method, url, *args, **kwargs)
            if method.upper() in WRITES and 200 <= int(getattr(response, "status", 0)) < 300:
                try:
                    self._log(method.upper(), response.read())
                except (ValueError, TypeError, KeyError, AttributeError):
                    pass  # not an object (a Status, a list): nothing to attribute
            return response

        rest.request = request
        rest._oracle_tapped = self

    def _log(self, method: str, raw: bytes | None) -> None:
        if not raw:
            return
        obj = json.loads(raw)
        meta = obj.get("metadata") or {}
        kind, name = obj.get("kind"), meta.get("name")
        if not isinstance(kind, str) or not isinstance(name, str) or kind == "Status":
            return
        namespace = str(meta.get("namespace", ""))
        with self._lock:
            if meta.get("resourceVersion"):
                self.versions.add((kind, namespace, name, int(meta["resourceVersion"])))
            if method == "DELETE":
                self.deleted.add((kind, namespace, name))
        if kind == "Namespace" and method == "POST":
            self.namespaces.append(name)
            for listener in self.listeners:
                listener(name)

    def wrote(self, v: oracle.Version) -> bool:
        with self._lock:
            if v.type == "DELETED":
                return (v.kind, v.namespace, v.name) in self.deleted
            return (v.kind, v.namespace, v.name, v.rv) in self.versions


class OracleWatch:
    """Records a test's namespaces and judges the history with ``tests.oracle``."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespaces: Iterable[str],
        writes: WriteLog | None = None,
    ) -> None:
        self.writes = writes
        self.recorder = Recorder(api_client, list(namespaces))
        self.started = False

    def start(self) -> OracleWatch:
        self.recorder.start()
        self.started = True
        if self.writes is not None:
            self.writes.listeners.append(self.recorder.watch)
        return self

    def stop(self) -> None:
        if self.writes is not None and self.recorder.watch in self.writes.listeners:
            self.writes.listeners.remove(self.recorder.watch)
        self.recorder.stop()

    def history(self) -> list[oracle.Version]:
        out = []
        for s in self.recorder.timeline():
            v = oracle.Version(s.rv, s.at, s.type, s.kind, s.namespace, s.name, s.obj)
            if self.writes is not None and self.writes.wrote(v):
                v = oracle.Version(s.rv, s.at, s.type, s.kind, s.namespace, s.name, s.obj, True)
            out.append(v)
        return out

    def verify(self, nodeid: str, *, catch_up: bool = True) -> list[oracle.Violation]:
        """The violations not allowlisted for ``nodeid``; stops the recorder."""
        end = time.monotonic()
        if catch_up:
            self.recorder.catch_up()
        self.stop()
        found = oracle.check(self.history(), end=end)
        return oracle_known.unexpected(nodeid, found)

    @staticmethod
    def failure(nodeid: str, violations: list[oracle.Violation]) -> str:
        return (
            f"the safety oracle found {len(violations)} violation(s) in {nodeid} "
            "(invariant, object @resourceVersion: what was seen):\n" + oracle.report(violations)
        )
