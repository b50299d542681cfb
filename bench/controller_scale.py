"""Benchmark of the controller on the sandbox, run by hand (never as a test).

    .venv/bin/python bench/controller_scale.py                 # 500 rollouts, ~2-3 minutes
    .venv/bin/python bench/controller_scale.py --rollouts 50   # a quick look

It starts ``rollout sandbox up`` and ``rollout controller --workers 4 --no-leader-elect`` as
separate processes (as a user would), creates N Rollouts that each walk three steps with 1 s
pauses, and measures:

1. wall time from the template change to all N promoted;
2. reconcile p50/p99 (from the controller's own histogram on /metrics) and its peak RSS;
3. API writes per step, and for reconciles with nothing to do (target 0);
4. abort latency: from ``status.abort: true`` to canary weight 0, as a VirtualService watcher
   sees it (p50/p99 over 20 rollouts).
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from rollout.cluster.access import (
    DESTINATION_RULES,
    NAMESPACES,
    ROLLOUTS,
    VIRTUAL_SERVICES,
)
from rollout.cluster.kube import KubeAccess, load_api_client

ROLLOUT = str(Path(sys.executable).parent / "rollout")
NS = "bench"
STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "1s"}},
    {"setWeight": 50},
    {"pause": {"duration": "1s"}},
    {"setWeight": 75},
    {"pause": {"duration": "1s"}},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def objects(access: KubeAccess, i: int) -> None:
    name = f"app-{i}"
    access.create(
        VIRTUAL_SERVICES,
        NS,
        {
            "metadata": {"name": name},
            "spec": {
                "hosts": [name],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": name, "subset": "stable"}, "weight": 100},
                            {"destination": {"host": name, "subset": "canary"}, "weight": 0},
                        ],
                    }
                ],
            },
        },
    )
    access.create(
        DESTINATION_RULES,
        NS,
        {
            "metadata": {"name": name},
            "spec": {
                "host": name,
                "subsets": [
                    {"name": "stable", "labels": {"app": name}},
                    {"name": "canary", "labels": {"app": name}},
                ],
            },
        },
    )
    access.create(
        ROLLOUTS,
        NS,
        {
            "apiVersion": "rollout.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {
                        "labels": {"app": name},
                        "annotations": {"sandbox.rollout.dev/ready-after": "0.05"},
                    },
                    "spec": {"containers": [{"name": "app", "image": "v1"}]},
                },
                "trafficRouting": {
                    "istio": {
                        "virtualServices": [{"name": name, "routes": ["primary"]}],
                        "destinationRule": {
                            "name": name,
                            "stableSubset": "stable",
                            "canarySubset": "canary",
                        },
                    }
                },
                "strategy": {"canary": {"steps": STEPS, "scaleDownDelaySeconds": 1}},
            },
        },
    )


def set_image(access: KubeAccess, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    access.patch(ROLLOUTS, NS, name, patch)


def metrics(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name, _, labels_text = name_labels.partition("{")
        labels = {}
        for part in labels_text.rstrip("}").split(","):
            if "=" in part:
                k, _, v = part.partition("=")
                labels[k] = v.strip('"')
        found.setdefault(name, []).append((labels, float(value)))
    return found


def quantile(buckets: list[tuple[dict[str, str], float]], q: float) -> float:
    """The upper bound of the histogram bucket holding quantile ``q``."""
    points = sorted((float(lb["le"]), count) for lb, count in buckets)
    total = points[-1][1]
    for bound, count in points:
        if count >= q * total:
            return bound
    return float("inf")


def counter(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in found.get(name, []))


def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def weight_watch(access: KubeAccess, name: str, rv: str, seen_zero: threading.Event) -> None:
    for event in access.watch(VIRTUAL_SERVICES, NS, rv, timeout_seconds=30):
        if event.object.get("metadata", {}).get("name") != name:
            continue
        route = event.object["spec"]["http"][0]["route"]
        if route[1].get("weight") == 0:
            seen_zero.set()
            return


def abort_latency(access: KubeAccess, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        name = f"app-{i}"
        set_image(access, name, "v3")
        wait_for(
            lambda name=name: (
                access.get(VIRTUAL_SERVICES, NS, name)["spec"]["http"][0]["route"][1].get(
                    "weight", 0
                )
                > 0
            ),
            30,
            f"{name} to take canary traffic",
        )
        _, rv = access.list(VIRTUAL_SERVICES, NS)
        seen_zero = threading.Event()
        watcher = threading.Thread(target=weight_watch, args=(access, name, rv, seen_zero))
        watcher.start()
        time.sleep(0.05)  # the watcher is connected
        started = time.perf_counter()
        access.patch_status(ROLLOUTS, NS, name, {"status": {"abort": True}})
        seen_zero.wait(10)
        latencies.append(time.perf_counter() - started)
        watcher.join(timeout=35)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=500)
    args = parser.parse_args()
    n = args.rollouts
    with tempfile.TemporaryDirectory() as workdir:
        kubeconfig = Path(workdir) / "kubeconfig"
        sandbox = subprocess.Popen(
            [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig)], stdout=subprocess.DEVNULL
        )
        controller = None
        try:
            wait_for(kubeconfig.exists, 30, "the sandbox")
            access = KubeAccess(load_api_client(str(kubeconfig)))
            access.create(NAMESPACES, None, {"metadata": {"name": NS}})
            for i in range(n):
                objects(access, i)
            port = free_port()
            controller = subprocess.Popen(
                [
                    ROLLOUT,
                    "controller",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--namespace",
                    NS,
                    "--workers",
                    "4",
                    "--no-leader-elect",
                    "--metrics-port",
                    str(port),
                    "--health-port",
                    "0",
                    "--log-level",
                    "warning",
                ]
            )

            def healthy_count() -> int:
                items, _ = access.list(ROLLOUTS, NS)
                return sum(1 for r in items if (r.get("status") or {}).get("phase") == "Healthy")

            wait_for(lambda: healthy_count() == n, 300, "the first revisions")
            before = metrics(port)
            idle_writes = counter(before, "rollout_api_writes_total")
            # Reconciles with nothing to do: touch a label on every Rollout (not spec).
            for i in range(n):
                access.patch(ROLLOUTS, NS, f"app-{i}", {"metadata": {"labels": {"touch": "1"}}})
            time.sleep(3)
            after_idle = metrics(port)
            idle_reconciles = counter(after_idle, "rollout_reconcile_duration_seconds_count") - (
                counter(before, "rollout_reconcile_duration_seconds_count")
            )
            idle_delta = counter(after_idle, "rollout_api_writes_total") - idle_writes

            started = time.perf_counter()
            for i in range(n):
                set_image(access, f"app-{i}", "v2")

            def promoted() -> bool:
                items, _ = access.list(ROLLOUTS, NS)
                return all(
                    (r.get("status") or {}).get("phase") == "Healthy"
                    and (r.get("status") or {}).get("currentStepIndex") == len(STEPS)
                    and r["metadata"].get("generation") == r["status"].get("observedGeneration")
                    for r in items
                )

            wait_for(promoted, 900, "every rollout to be promoted")
            wall = time.perf_counter() - started
            found = metrics(port)
            writes = counter(found, "rollout_api_writes_total") - counter(
                after_idle, "rollout_api_writes_total"
            )
            steps = n * (len(STEPS) + 1)  # the steps and the promotion
            buckets = found["rollout_reconcile_duration_seconds_bucket"]
            print(f"{n} rollouts x {len(STEPS)} steps (3 weights, 1 s pauses), 4 workers:")
            print(f"  wall time to all promoted: {wall:.1f} s")
            print(
                f"  reconcile p50 <= {quantile(buckets, 0.5) * 1000:.1f} ms, "
                f"p99 <= {quantile(buckets, 0.99) * 1000:.1f} ms (histogram bucket bounds)"
            )
            print(f"  controller peak RSS: {rss_peak_mb(controller.pid):.0f} MiB")
            events = counter(found, "rollout_events_total") - counter(
                after_idle, "rollout_events_total"
            )
            print(
                f"  API writes per step: {(writes - events) / steps:.2f} "
                f"(+ {events / steps:.2f} Events)"
            )
            idle = f"{idle_reconciles:.0f} reconciles with nothing to do"
            print(f"  API writes for {idle}: {idle_delta:.0f}")
            latencies = sorted(abort_latency(access, min(20, n)))
            p50 = latencies[len(latencies) // 2] * 1000
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
            print(
                f"  abort -> canary weight 0 seen by a watcher: p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            )
        finally:
            for process in (controller, sandbox):
                if process is not None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        process.kill()


if __name__ == "__main__":
    main()
