"""The workload simulator: ReplicaSets report pods that become ready, as a kubelet would.

A ReplicaSet's status (``replicas``, ``readyReplicas``, ``availableReplicas``,
``fullyLabeledReplicas``, ``observedGeneration``) follows ``spec.replicas`` after the pod
template's ``sandbox.rollout.dev/ready-after`` seconds (default 0.5). With
``sandbox.rollout.dev/crash: "true"`` the pods exist but never become ready. No Pod objects are
created: the controller only reads ReplicaSet status.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any

from rollout.sandbox.errors import ApiError
from rollout.sandbox.resources import Registry
from rollout.sandbox.selectors import field_selector, label_selector
from rollout.sandbox.store import Obj, Store

READY_AFTER = "sandbox.rollout.dev/ready-after"
CRASH = "sandbox.rollout.dev/crash"
DEFAULT_READY_AFTER = 0.5


# ReplicaSetStatus: ``replicas`` is always sent; the other counts are ``omitempty`` (absent at 0).
STATUS_FIELDS = (
    "replicas",
    "fullyLabeledReplicas",
    "readyReplicas",
    "availableReplicas",
    "observedGeneration",
)


def desired_status(rs: Obj) -> dict[str, Any]:
    spec = rs.get("spec") or {}
    template = spec.get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    replicas = int(spec.get("replicas", 1))
    ready = 0 if str(annotations.get(CRASH, "")).lower() == "true" else replicas
    status = {
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs["metadata"].get("generation", 1),
    }
    return {k: v for k, v in status.items() if v or k == "replicas"}


def reported(status: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """``status`` with the simulator's fields replaced by ``desired`` (others kept)."""
    kept = {k: v for k, v in (status or {}).items() if k not in STATUS_FIELDS}
    return {**kept, **desired}


def ready_after(rs: Obj) -> float:
    template = (rs.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    try:
        return max(0.0, float(annotations.get(READY_AFTER, DEFAULT_READY_AFTER)))
    except ValueError:
        return DEFAULT_READY_AFTER


def _same(status: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    current = status or {}
    return all(current.get(k) == desired.get(k) for k in STATUS_FIELDS)


class WorkloadSimulator:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.rtype = registry.lookup("apps", "v1", "replicasets")
        self._due: list[tuple[float, str, str, int]] = []  # (when, namespace, name, generation)
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._watch, name="sandbox-workloads-watch", daemon=True),
            threading.Thread(target=self._tick, name="sandbox-workloads", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _watch(self) -> None:
        events = self.store.watch(
            self.rtype,
            None,
            None,
            label_selector(None),
            field_selector(None),
            timeout=float("inf"),
            bookmark_every=None,
        )
        for type_, rs in events:
            if type_ in ("ADDED", "MODIFIED") and not _same(rs.get("status"), desired_status(rs)):
                meta = rs["metadata"]
                with self._lock:
                    when = time.monotonic() + ready_after(rs)
                    entry = (when, meta["namespace"], meta["name"], meta.get("generation", 1))
                    heapq.heappush(self._due, entry)

    def _tick(self) -> None:
        while not self.store.closed:
            with self._lock:
                due = []
                now = time.monotonic()
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due))
                wait = self._due[0][0] - now if self._due else 0.05
            for _, namespace, name, generation in due:
                self._report(namespace, name, generation)
            time.sleep(min(max(wait, 0.005), 0.05))

    def _report(self, namespace: str, name: str, generation: int) -> None:
        def update(rs: Obj) -> Obj:
            if rs["metadata"].get("generation", 1) != generation:
                return rs  # changed again since: its own entry reports it, after its delay
            return {**rs, "status": reported(rs.get("status"), desired_status(rs))}

        try:
            self.store.mutate(self.rtype, namespace, name, update, "status")
        except ApiError:
            pass  # deleted meanwhile
