"""What the controller benchmarks share (not a benchmark itself): the Rollout each of them
creates, waiting with a deadline, stopping the processes they start, and reading a process's
memory and CPU from /proc.

The scripts import it as ``harness`` (``python bench/x.py`` puts ``bench/`` on the path).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rollout.cluster.access import DESTINATION_RULES, ROLLOUTS, VIRTUAL_SERVICES, Obj
from rollout.cluster.kube import KubeAccess

# The ``rollout`` command of the Python running the benchmark (its virtualenv's).
ROLLOUT = str(Path(sys.executable).parent / "rollout")
# Three weights with 1 s pauses: the canary walk of the scale and shard benchmarks.
STEPS: list[Obj] = [
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "1s"}},
    {"setWeight": 75},
    {"pause": {"duration": "1s"}},
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, every: float = 0.2
) -> None:
    """Poll ``predicate`` every ``every`` s until it is truthy; exit the benchmark with a message
    naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def app_objects(
    name: str,
    steps: list[Obj],
    *,
    replicas: int = 2,
    labels: dict[str, str] | None = None,
    image: str = "v1",
    scale_down_delay: int = 1,
) -> tuple[Obj, Obj, Obj]:
    """``(VirtualService, DestinationRule, Rollout)`` of one benchmark app ``name``: a route
    ``primary`` with stable 100 / canary 0, subsets ``stable`` and ``canary``, and a Rollout of
    ``replicas`` pods (ready 0.05 s after they start, in the sandbox and in kwok) walking
    ``steps``, its metadata labelled ``labels``."""
    route = [
        {"destination": {"host": name, "subset": "stable"}, "weight": 100},
        {"destination": {"host": name, "subset": "canary"}, "weight": 0},
    ]
    vs = {
        "apiVersion": VIRTUAL_SERVICES.api_version,
        "kind": VIRTUAL_SERVICES.kind,
        "metadata": {"name": name},
        "spec": {"hosts": [name], "http": [{"name": "primary", "route": route}]},
    }
    subsets = [{"name": s, "labels": {"app": name}} for s in ("stable", "canary")]
    dr = {
        "apiVersion": DESTINATION_RULES.api_version,
        "kind": DESTINATION_RULES.kind,
        "metadata": {"name": name},
        "spec": {"host": name, "subsets": subsets},
    }
    template = {
        "metadata": {
            "labels": {"app": name},
            "annotations": {"sandbox.rollout.dev/ready-after": "0.05"},
        },
        "spec": {"containers": [{"name": "app", "image": image}]},
    }
    routing = {
        "istio": {
            "virtualServices": [{"name": name, "routes": ["primary"]}],
            "destinationRule": {"name": name, "stableSubset": "stable", "canarySubset": "canary"},
        }
    }
    metadata: Obj = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    rollout = {
        "apiVersion": ROLLOUTS.api_version,
        "kind": ROLLOUTS.kind,
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            "trafficRouting": routing,
            "strategy": {"canary": {"steps": steps, "scaleDownDelaySeconds": scale_down_delay}},
        },
    }
    return vs, dr, rollout


def create_app(
    access: KubeAccess,
    namespace: str,
    name: str,
    steps: list[Obj],
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """Create ``app_objects(name, steps, labels=labels)`` in ``namespace``, routing first."""
    vs, dr, rollout = app_objects(name, steps, labels=labels)
    access.create(VIRTUAL_SERVICES, namespace, vs)
    access.create(DESTINATION_RULES, namespace, dr)
    access.create(ROLLOUTS, namespace, rollout)


def set_image(access: KubeAccess, namespace: str, name: str, image: str) -> None:
    """A new revision of Rollout ``name``: its one container's image set to ``image``."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    access.patch(ROLLOUTS, namespace, name, patch)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    """SIGTERM ``process`` (if still running), SIGKILL after ``timeout`` s; reaped either way."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of process ``pid``, in KiB, from /proc."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def rss_peak_mib(pid: int) -> float:
    """Peak RSS (``VmHWM``) of process ``pid`` in MiB; NaN if /proc does not say."""
    peak = memory_kib(pid).get("VmHWM")
    return peak / 1024 if peak is not None else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
