"""``rollout sandbox up``: run the sandbox cluster in the foreground until SIGTERM or Ctrl-C.

Beside the API: simulated traffic through the VirtualServices (``--rps`` per host, 0: none),
counted by an Istio metrics exporter that a real Prometheus scrapes every second (on
``--prometheus-port``; ``--no-prometheus``: neither exporter nor Prometheus). The kubeconfig is
written once everything answers, so its existence means the sandbox is ready.
"""

from __future__ import annotations

import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rollout.sandbox.cluster import Sandbox
from rollout.sandbox.istio_metrics import IstioMetrics
from rollout.sandbox.prometheus import INSTALL_HINT, PrometheusServer
from rollout.sandbox.traffic import StoreSource, TrafficSimulator


def run_up(
    kubeconfig: Path,
    port: int,
    *,
    crds: Path | None = None,
    verbose: bool = False,
    rps: float = 50.0,
    prometheus_port: int = 19090,
    prometheus: bool = True,
) -> int:
    if prometheus and shutil.which("prometheus") is None:
        print(f"rollout sandbox: {INSTALL_HINT} (or pass --no-prometheus)", file=sys.stderr)
        return 1
    try:
        sandbox = Sandbox(port, crds=crds, quiet=not verbose)
    except OSError as error:
        print(
            f"rollout sandbox: cannot listen on 127.0.0.1:{port}: {error.strerror}", file=sys.stderr
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox.start()
    metrics = IstioMetrics()
    traffic: TrafficSimulator | None = None
    server: PrometheusServer | None = None
    try:
        if rps > 0:
            source = StoreSource(sandbox.store, sandbox.registry)
            traffic = TrafficSimulator(source, metrics, rps=rps)
            traffic.start()
        exporter = metrics.serve(0) if prometheus else None
        if exporter is not None:
            server = PrometheusServer([f"127.0.0.1:{exporter}"], port=prometheus_port)
            try:
                server.start()
            except RuntimeError as error:
                print(f"rollout sandbox: {error}", file=sys.stderr)
                return 1
        sandbox.write_kubeconfig(kubeconfig)
        print(f"sandbox API at {sandbox.url}", flush=True)
        print(f"kubeconfig written to {kubeconfig} (export KUBECONFIG={kubeconfig})", flush=True)
        if traffic is not None:
            print(f"simulated traffic: {rps:g} requests/s per VirtualService host", flush=True)
        if exporter is not None:
            print(f"simulated Istio metrics at http://127.0.0.1:{exporter}/metrics", flush=True)
        if server is not None:
            print(f"prometheus at {server.url}", flush=True)
        stop.wait()
        return 0
    finally:
        if traffic is not None:
            traffic.stop()
        if server is not None:
            server.stop()
        metrics.close()
        sandbox.stop()
        print("sandbox stopped", flush=True)
