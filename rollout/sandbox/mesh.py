"""``rollout sandbox traffic``: the simulated Istio mesh as a client of any Kubernetes API server.

``ApiSource`` keeps a watch cache (``rollout.cluster.cache.Informer``: list, then watch; list
again on 410 Gone; back off and retry when the API fails) of VirtualServices, DestinationRules,
Services and ReplicaSets in every namespace, and of Pods when the server serves them and lets us
list them, so each tick of the simulator reads memory, not the API. The routing is
``rollout.sandbox.traffic``'s, the same as inside ``rollout sandbox up``.

A ReplicaSet serves with the Ready pods it owns when the cluster has Pods (on a real control
plane: kwok's pods, made Ready by kwok), else with its ``status.availableReplicas`` (the
sandbox has no Pods; on a real cluster the ReplicaSet controller computes that count from the same
Ready pods, so both give the same answer once the controller has caught up).

The kubernetes client is reached through ``rollout.cluster.kube`` only (imported when the
command runs); everything here talks to the ``ClusterAccess`` seam.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from rollout.cluster.access import (
    DESTINATION_RULES,
    REPLICA_SETS,
    SERVICES,
    VIRTUAL_SERVICES,
    ClusterAccess,
    ClusterError,
    Forbidden,
    NotFound,
    Obj,
    Resource,
)
from rollout.cluster.cache import Informer
from rollout.sandbox.istio_metrics import IstioMetrics
from rollout.sandbox.prometheus import INSTALL_HINT, PrometheusServer
from rollout.sandbox.traffic import Snapshot, TrafficSimulator

PODS = Resource("", "v1", "pods", "Pod")
KINDS = (SERVICES, DESTINATION_RULES, REPLICA_SETS, VIRTUAL_SERVICES)
SYNC_TIMEOUT = 30.0

log = logging.getLogger(__name__)


def _name(res: Resource) -> str:
    return f"{res.plural}.{res.group}" if res.group else res.plural


class ApiSource:
    """The cluster through the API, cached: a ``SnapshotSource`` for ``TrafficSimulator``.

    ``check()`` lists each kind once and raises ``ClusterError`` with a readable message when
    the API cannot be used (unreachable, refused, a kind not served: Istio's CRDs missing);
    ``start()`` then runs one informer per kind; ``wait_synced`` waits for their first lists.
    ``namespace``: read only that namespace (``rollout demo`` on an existing cluster); default
    every namespace.
    """

    def __init__(
        self, access: ClusterAccess, *, max_backoff: float = 5.0, namespace: str | None = None
    ) -> None:
        self.access = access
        self.max_backoff = max_backoff
        self.namespace = namespace
        self.informers: dict[str, Informer] = {}
        self.pods: Informer | None = None
        self._closed = threading.Event()

    def check(self) -> None:
        """One list of every kind; decide whether Pods are read (served and allowed)."""
        for res in KINDS:
            try:
                self.access.list(res, self.namespace)
            except NotFound as error:
                raise ClusterError(
                    f"the API server does not serve {_name(res)} "
                    f"({res.api_version}): {error.detail or error}"
                ) from error
            except ClusterError as error:
                raise ClusterError(f"cannot list {_name(res)}: {error}") from error
        try:
            self.access.list(PODS, self.namespace)
            self.pods = Informer(self.access, PODS, self.namespace, max_backoff=self.max_backoff)
        except (NotFound, Forbidden):
            self.pods = None  # no Pods here: availableReplicas it is

    def start(self) -> None:
        for res in KINDS:
            informer = Informer(self.access, res, self.namespace, max_backoff=self.max_backoff)
            self.informers[res.plural] = informer
            informer.start()
        if self.pods is not None:
            self.pods.start()

    def wait_synced(self, timeout: float = SYNC_TIMEOUT) -> bool:
        """True once every informer has listed once, False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        everyone = [*self.informers.values(), *([self.pods] if self.pods else [])]
        for informer in everyone:
            if not informer.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def stop(self) -> None:
        self._closed.set()
        for informer in [*self.informers.values(), *([self.pods] if self.pods else [])]:
            informer.stop()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _list(self, res: Resource) -> list[Obj]:
        informer = self.informers.get(res.plural)
        return informer.list() if informer is not None else []

    def read(self) -> tuple[Snapshot, list[Obj]]:
        return (
            Snapshot.of(
                self._list(SERVICES),
                self._list(DESTINATION_RULES),
                self._list(REPLICA_SETS),
                self.pods.list() if self.pods is not None else None,
            ),
            self._list(VIRTUAL_SERVICES),
        )


def _line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _fail(message: str) -> int:
    print(f"rollout sandbox traffic: {message}", file=sys.stderr, flush=True)
    return 1


def run_traffic(
    kubeconfig: str | None,
    *,
    context: str | None = None,
    rps: float = 50.0,
    prometheus_port: int = 19090,
    prometheus: bool = True,
    metrics_port: int = 0,
) -> int:
    """Run the simulated mesh against the cluster of ``kubeconfig`` until SIGTERM or Ctrl-C.

    Serves Istio's metrics on 127.0.0.1:``metrics_port`` (0: any free port) and, unless
    ``prometheus`` is False, a real Prometheus scraping them every second on
    ``prometheus_port``. Exit 0 when stopped, 1 (with one line on stderr) when the kubeconfig,
    the API, a port or Prometheus cannot be used.
    """
    from rollout.cluster.kube import connect_cli

    if prometheus and shutil.which("prometheus") is None:
        return _fail(f"{INSTALL_HINT} (or pass --no-prometheus)")
    if kubeconfig is not None and not Path(kubeconfig).is_file():
        return _fail(f"cannot read kubeconfig {kubeconfig}: no such file")
    try:
        access, _ = connect_cli(kubeconfig, context)
    except ClusterError as error:
        return _fail(_line(error))
    host = access.api.configuration.host
    source = ApiSource(access)
    try:
        source.check()
    except ClusterError as error:
        return _fail(f"the API at {host}: {_line(error)}")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    metrics = IstioMetrics()
    traffic: TrafficSimulator | None = None
    server: PrometheusServer | None = None
    source.start()
    try:
        if not source.wait_synced():
            return _fail(f"the API did not answer the first lists within {SYNC_TIMEOUT:g}s")
        try:
            exporter = metrics.serve(metrics_port)
        except OSError as error:
            return _fail(f"cannot listen on 127.0.0.1:{metrics_port}: {error.strerror}")
        if rps > 0:
            traffic = TrafficSimulator(source, metrics, rps=rps)
            traffic.start()
        if prometheus:
            server = PrometheusServer([f"127.0.0.1:{exporter}"], port=prometheus_port)
            try:
                server.start()
            except RuntimeError as error:
                server = None
                return _fail(str(error).splitlines()[0])
        print(f"simulated mesh reading the API at {host}", flush=True)
        if traffic is not None:
            print(f"simulated traffic: {rps:g} requests/s per VirtualService host", flush=True)
        print(f"simulated Istio metrics at http://127.0.0.1:{exporter}/metrics", flush=True)
        if server is not None:
            print(f"prometheus at {server.url}", flush=True)
        stop.wait()
        return 0
    finally:
        if traffic is not None:
            traffic.stop()
        source.stop()
        if server is not None:
            server.stop()
        metrics.close()
        print("simulated mesh stopped", flush=True)
