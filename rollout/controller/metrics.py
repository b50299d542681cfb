"""The controller's own metrics, in Prometheus' format (``prometheus_client``, one registry).

Per-reconcile updates are O(1) in the number of Rollouts (phase counts are kept as a tally and
moved by one on a change, never recounted).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("Healthy", "Progressing", "Paused", "Degraded")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reconcile_seconds = Histogram(
            "rollout_reconcile_duration_seconds",
            "Time to reconcile one Rollout.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.errors = Counter(
            "rollout_reconcile_errors_total", "Reconciles that failed.", registry=r
        )
        self.writes = Counter(
            "rollout_api_writes_total", "Writes made to the API, events included.", registry=r
        )
        self.events = Counter("rollout_events_total", "Kubernetes Events sent.", registry=r)
        self.phase = Gauge("rollout_rollouts", "Rollouts by phase.", ["phase"], registry=r)
        self.canary_weight = Gauge(
            "rollout_canary_weight",
            "Canary weight as read back from the router.",
            ["namespace", "rollout"],
            registry=r,
        )
        self.aborts = Counter(
            "rollout_aborts_total", "Rollouts aborted, by reason.", ["reason"], registry=r
        )
        self.queue_depth = Gauge("rollout_queue_depth", "Keys waiting in the queue.", registry=r)
        self.queue_wait_seconds = Histogram(
            "rollout_queue_wait_seconds",
            "Time a Rollout's key waited in the queue, from being added to a worker taking it.",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.shard = Gauge(
            "rollout_controller_shard_info",
            "Always 1: this controller's shard, the label selector of the Rollouts it owns "
            "(empty: all), and the Lease its replicas share.",
            ["selector", "lease"],
            registry=r,
        )
        for each in PHASES:
            self.phase.labels(each).set(0)
        self._phases: dict[str, str] = {}
        # Rollouts per phase, kept as phases change: a reconcile costs O(1), not O(Rollouts).
        self._counts: Tally[str] = Tally()
        self._lock = threading.Lock()

    def observe_rollout(self, key: str, phase: str | None, weight: int) -> None:
        namespace, _, name = key.partition("/")
        self.canary_weight.labels(namespace, name).set(weight)
        self._set_phase(key, phase)

    def _set_phase(self, key: str, phase: str | None) -> None:
        with self._lock:
            old = self._phases.pop(key, None) if phase is None else self._phases.get(key)
            if phase is not None:
                self._phases[key] = phase
            if old == phase:
                return
            if old is not None:
                self._counts[old] -= 1
            if phase is not None:
                self._counts[phase] += 1
            for each in (old, phase):
                if each in PHASES:
                    self.phase.labels(each).set(self._counts[each])

    def forget(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        self._set_phase(key, None)
        try:
            self.canary_weight.remove(namespace, name)
        except KeyError:
            pass

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        start_http_server(port, addr=address, registry=self.registry)
