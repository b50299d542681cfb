"""An operator's action on a busy controller: the worker kept for urgent keys takes it.

One ordinary worker (``--workers 1``) and many Rollouts walking timed pauses at once, so the
queue is long and the worker always busy: an abort must still take the canary's weight to 0
within a reconcile or two, not after the queue has been worked through, nor after the forty
new specs applied just before it (urgent keys too: an abort goes before them; served first
come, first served they kept it 340-560 ms, against 35-50 ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Recorder,
    Steps,
    canary_weight,
    destination_rule,
    pod_template,
    rollout_manifest,
    subset_routing,
    virtual_service,
)
from tests.integration.sandbox_helpers import Obj, eventually

pytestmark = pytest.mark.integration

BUSY = 40  # Rollouts progressing around the one aborted
WALK: Steps = [
    {"setWeight": 10},
    {"pause": {"duration": 1}},
    {"setWeight": 20},
    {"pause": {"duration": 1}},
    {"setWeight": 30},
    {"pause": {"duration": 1}},
]


def create(cluster: Cluster, name: str, steps: Steps) -> None:
    cluster.create_istio("destinationrules", destination_rule(name, host=name, app=name))
    cluster.create_istio("virtualservices", virtual_service(name, host=name))
    routing = subset_routing(vs=name, dr=name)
    cluster.create_rollout(rollout_manifest(name, steps=steps, routing=routing, replicas=2))


def test_an_abort_is_served_at_once_while_the_only_worker_is_busy(
    sandbox_kubeconfig: Path,
    namespace: str,
    cluster: Cluster,
    recorder: Callable[..., Recorder],
) -> None:
    handle = ControllerHandle(sandbox_kubeconfig, namespace, workers=1)
    controller = handle.start()
    try:
        create(cluster, "reviews", [{"setWeight": 40}, {"pause": {}}])
        names = [f"busy-{i}" for i in range(BUSY)]
        for name in names:
            create(cluster, name, WALK)
        stable = {
            name: cluster.wait_status(lambda s: s.get("phase") == "Healthy", name, timeout=60)[
                "stableRevision"
            ]
            for name in ["reviews", *names]
        }
        cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
        cluster.wait_status(
            lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 40, timeout=30
        )
        for name in names:  # every one progressing at once
            cluster.set_template(pod_template(name, "example.com/busy:2"), name)
        rec = recorder()

        def busy() -> None:
            assert len(controller.queue) >= BUSY // 4, len(controller.queue)

        eventually(busy, timeout=10, interval=0.005)
        aborted = time.monotonic()
        cluster.abort()

        def weight_zero() -> float:
            seen = rec.of("VirtualService", "reviews")
            zero = [s.at for s in seen if s.type != "DELETED" and canary_weight(s.obj) == 0]
            assert zero, [canary_weight(s.obj) for s in seen]
            return zero[0]

        zero_at = eventually(weight_zero, timeout=10, interval=0.01)
        latency = zero_at - aborted
        print(f"abort -> weight 0: {latency * 1000:.0f} ms")
        assert latency < 0.3, f"abort took {latency:.3f}s to reach weight 0 with a busy worker"
        # The busy Rollouts still get on: none is starved by the urgent worker.
        for name in names:

            def promoted(status: Obj, old: str = stable[name]) -> bool:
                return status.get("phase") == "Healthy" and status.get("stableRevision") != old

            cluster.wait_status(promoted, name, timeout=120)
    finally:
        handle.stop()


class Stalling(ThreadingHTTPServer):
    """A "Prometheus" that answers HTTP 503 at once, or once ``stall`` is set, holds every
    request until ``release`` is (a Prometheus that stopped answering)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Stall)
        self.stall = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.held = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Stall(BaseHTTPRequestHandler):
    server: Stalling

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self) -> None:
        with self.server.lock:
            self.server.requests += 1
        if self.server.stall.is_set():
            with self.server.lock:
                self.server.held += 1
            self.server.release.wait(60)
            with self.server.lock:
                self.server.held -= 1
        data = b'{"status":"error","errorType":"unavailable","error":"overloaded"}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


def test_an_abort_is_served_while_the_only_worker_waits_on_a_stalled_prometheus(
    sandbox_kubeconfig: Path,
    namespace: str,
    cluster: Cluster,
    recorder: Callable[..., Recorder],
) -> None:
    """The one ordinary worker is held in a reconcile (a gate's preflight waiting on a
    Prometheus that stopped answering, up to its 20 s timeout): an abort of another Rollout
    reaches weight 0 within 0.3 s all the same, the worker still held."""
    prometheus = Stalling()
    threading.Thread(target=prometheus.serve_forever, daemon=True).start()
    handle = ControllerHandle(
        sandbox_kubeconfig, namespace, workers=1, prometheus_url=prometheus.url
    )
    handle.start()
    try:
        create(cluster, "reviews", [{"setWeight": 40}, {"pause": {}}])
        cluster.wait_healthy()
        cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
        cluster.wait_status(
            lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 40, timeout=30
        )
        gated = rollout_manifest(
            "gated",
            steps=[{"setWeight": 20}, {"pause": {}}],
            routing=subset_routing(vs="gated", dr="gated"),
            replicas=2,
        )
        gated["spec"]["analysis"] = {
            "interval": "30s",
            "prometheus": {"scrapeInterval": "1s", "timeout": "20s"},
            "checks": [{"name": "error-rate", "errorRate": {"max": 0.02}}],
        }
        cluster.create_istio(
            "destinationrules", destination_rule("gated", host="gated", app="gated")
        )
        cluster.create_istio("virtualservices", virtual_service("gated", host="gated"))
        cluster.create_rollout(gated)
        cluster.wait_healthy(name="gated")
        cluster.set_template(pod_template("gated", "example.com/gated:2"), "gated")

        def asked() -> None:  # preflight failed at once (503): held, asked again later
            assert prometheus.requests >= 1, prometheus.requests

        eventually(asked, timeout=20)
        prometheus.stall.set()  # the retry (an ordinary key: a timer's) is held

        def held() -> None:
            assert prometheus.held >= 1, prometheus.requests

        eventually(held, timeout=20, interval=0.01)
        rec = recorder()
        aborted = time.monotonic()
        cluster.abort()

        def weight_zero() -> float:
            seen = rec.of("VirtualService", "reviews")
            zero = [s.at for s in seen if s.type != "DELETED" and canary_weight(s.obj) == 0]
            assert zero, [canary_weight(s.obj) for s in seen]
            return zero[0]

        zero_at = eventually(weight_zero, timeout=10, interval=0.01)
        assert prometheus.held >= 1  # the ordinary worker was held throughout
        latency = zero_at - aborted
        print(f"abort -> weight 0 (worker held): {latency * 1000:.0f} ms")
        assert latency < 0.3, f"abort took {latency:.3f}s to reach weight 0, the worker held"
    finally:
        prometheus.release.set()
        handle.stop()
        prometheus.shutdown()
        prometheus.server_close()
