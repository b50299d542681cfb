"""Benchmark of the sandbox API emulator, run by hand (never as a test).

    .venv/bin/python bench/sandbox_api.py            # full run: ~2 minutes
    .venv/bin/python bench/sandbox_api.py --quick    # smaller counts
    .venv/bin/python bench/sandbox_api.py --scale 1000,10000 --baseline ca480c6
                                                     # at scale, this tree and a baseline

It starts ``rollout sandbox up`` in its own process (as a user would) and measures, from one
client process on 127.0.0.1:

1. GET/s and PATCH/s through the official ``kubernetes`` client (one thread);
2. latency of 100,000 GETs over one keep-alive connection (``http.client``), reported per
   window of 10,000, to show that it stays flat as the server's history grows;
3. watch fan-out: 10 watchers on one collection while 1,000 objects are written; the time until
   every watcher has every event, and the delivery lag.

With ``--scale N[,M...]`` it measures instead, for each size, a sandbox holding N Rollouts, N
VirtualServices, N DestinationRules and 2N ReplicaSets in one namespace (created over HTTP):
LIST latency of each kind, GET/s and status PATCH/s of Rollouts (CEL validation on every
patch), watch fan-out (10 Rollout watchers while 500 status patches are made) and the
sandbox's own CPU seconds for each phase, plus its CPU use per second while idle with the
traffic simulator on (50 requests/s per VirtualService host). ``--baseline REV`` runs the same
measurements against the sandbox of git revision REV (``git archive`` of it, run with this
venv) first, and prints both, side by side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client, config

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def core_api(kubeconfig: Path) -> Any:
    """CoreV1Api, untyped: the generated signatures want models; we send plain JSON dicts."""
    untyped_config: Any = config
    untyped_client: Any = client
    return untyped_client.CoreV1Api(
        untyped_config.new_client_from_config(config_file=str(kubeconfig))
    )


def start_sandbox(
    workdir: Path, source: Path | None = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], Path]:
    """``rollout sandbox up``, of this tree or of the sources extracted at ``source``."""
    kubeconfig = workdir / "kubeconfig"
    command = [ROLLOUT]
    env = None
    if source is not None:
        command = [
            sys.executable,
            "-c",
            "import sys; from rollout.cli import main; sys.exit(main())",
        ]
        env = {**os.environ, "PYTHONPATH": str(source)}
    process = subprocess.Popen(
        [*command, "sandbox", "up", "--kubeconfig", str(kubeconfig), *extra],
        stdout=subprocess.DEVNULL,
        cwd=source,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the sandbox did not start")
        time.sleep(0.05)
    return process, kubeconfig


def official_client(kubeconfig: Path, count: int) -> None:
    api = core_api(kubeconfig)
    api.create_namespaced_config_map("default", {"metadata": {"name": "bench"}, "data": {"n": "0"}})
    api.read_namespaced_config_map("bench", "default")  # warm the connection
    started = time.perf_counter()
    for _ in range(count):
        api.read_namespaced_config_map("bench", "default")
    gets = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(count // 2):
        api.patch_namespaced_config_map("bench", "default", {"data": {"n": str(i)}})
    patches = (count // 2) / (time.perf_counter() - started)
    print(f"official client, 1 thread: {gets:,.0f} GET/s, {patches:,.0f} PATCH/s")


def flat_latency(server: str, total: int, window: int) -> None:
    url = urlsplit(server)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)
    path = "/api/v1/namespaces/default/configmaps/bench"
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(total):
        t0 = time.perf_counter()
        connection.request("GET", path)
        reply = connection.getresponse()
        reply.read()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    print(f"http.client keep-alive: {total:,} GETs at {total / elapsed:,.0f}/s")
    print("  window        p50 ms   p99 ms")
    for start in range(0, total, window):
        chunk = sorted(latencies[start : start + window])
        p50 = chunk[len(chunk) // 2] * 1000
        p99 = chunk[int(len(chunk) * 0.99)] * 1000
        print(f"  {start + 1:>6}-{start + len(chunk):<7} {p50:6.3f}   {p99:6.3f}")


def fan_out(server: str, kubeconfig: Path, watchers: int, writes: int) -> None:
    url = urlsplit(server)
    api = core_api(kubeconfig)
    api.create_namespace({"metadata": {"name": "fanout"}})
    rv = api.list_namespaced_config_map("fanout").metadata.resource_version
    sent: dict[str, float] = {}
    lags: list[float] = []
    done = [0] * watchers
    lock = threading.Lock()

    def watch(index: int) -> None:
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
        connection.request(
            "GET", f"/api/v1/namespaces/fanout/configmaps?watch=true&resourceVersion={rv}"
        )
        reply = connection.getresponse()
        while done[index] < writes:
            line = reply.readline()
            if not line:
                break
            event = json.loads(line)
            name = event["object"]["metadata"]["name"]
            with lock:
                lags.append(time.perf_counter() - sent[name])
            done[index] += 1
        connection.close()

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(watchers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # let every watcher connect before the writes start
    started = time.perf_counter()
    for i in range(writes):
        name = f"cm-{i}"
        sent[name] = time.perf_counter()
        api.create_namespaced_config_map("fanout", {"metadata": {"name": name}})
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - started
    lags.sort()
    delivered = sum(done)
    print(
        f"watch fan-out: {watchers} watchers x {writes} writes = {delivered:,} events delivered "
        f"in {elapsed:.2f} s; lag p50 {statistics.median(lags) * 1000:.2f} ms, "
        f"p99 {lags[int(len(lags) * 0.99)] * 1000:.2f} ms"
    )


# -- at scale -----------------------------------------------------------------------------------

SCALE_NS = "bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Http:
    """One keep-alive connection, JSON in and out."""

    def __init__(self, server: str) -> None:
        url = urlsplit(server)
        self.connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port)

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        self.connection.request(method, path, data, headers)
        reply = self.connection.getresponse()
        return reply.status, reply.read()


def _scale_objects(i: int) -> list[tuple[str, dict[str, Any]]]:
    name = f"app-{i}"
    istio = f"/apis/networking.istio.io/v1beta1/namespaces/{SCALE_NS}"
    labels = {"app": name}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "v1"}]},
    }
    rollout = {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": template,
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
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]}},
        },
    }
    route = [
        {"destination": {"host": name, "subset": "stable"}, "weight": 100},
        {"destination": {"host": name, "subset": "canary"}, "weight": 0},
    ]
    found: list[tuple[str, dict[str, Any]]] = [
        (f"/apis/rollout.dev/v1alpha1/namespaces/{SCALE_NS}/rollouts", rollout),
        (
            f"{istio}/virtualservices",
            {
                "metadata": {"name": name},
                "spec": {"hosts": [name], "http": [{"name": "primary", "route": route}]},
            },
        ),
        (
            f"{istio}/destinationrules",
            {
                "metadata": {"name": name},
                "spec": {
                    "host": name,
                    "subsets": [
                        {"name": "stable", "labels": labels},
                        {"name": "canary", "labels": labels},
                    ],
                },
            },
        ),
    ]
    for revision in ("a", "b"):
        rs_labels = {**labels, "rollout.dev/pod-template-hash": revision}
        found.append(
            (
                f"/apis/apps/v1/namespaces/{SCALE_NS}/replicasets",
                {
                    "metadata": {"name": f"{name}-{revision}", "labels": rs_labels},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": rs_labels},
                        "template": {**template, "metadata": {"labels": rs_labels}},
                    },
                },
            )
        )
    return found


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def scale_figures(server: str, pid: int, n: int, start: int) -> dict[str, float]:
    """Grow the sandbox to ``n`` of each kind (from ``start``), then measure."""
    api = Http(server)
    if start == 0:
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": SCALE_NS}})
    figures: dict[str, float] = {}
    cpu = cpu_seconds(pid)
    t0 = time.perf_counter()
    for i in range(start, n):
        for path, body in _scale_objects(i):
            status, data = api.call("POST", path, body)
            if status != 201:
                raise SystemExit(f"create at {path} answered {status}: {data[:300]!r}")
    figures["create objects/s"] = (n - start) * 5 / (time.perf_counter() - t0)
    figures["sandbox CPU s, creates"] = cpu_seconds(pid) - cpu
    istio = f"/apis/networking.istio.io/v1beta1/namespaces/{SCALE_NS}"
    kinds = {
        "rollouts": f"/apis/rollout.dev/v1alpha1/namespaces/{SCALE_NS}/rollouts",
        "replicasets": f"/apis/apps/v1/namespaces/{SCALE_NS}/replicasets",
        "virtualservices": f"{istio}/virtualservices",
        "destinationrules": f"{istio}/destinationrules",
    }
    for kind, path in kinds.items():
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            status, data = api.call("GET", path)
            samples.append(time.perf_counter() - t0)
            assert status == 200
        figures[f"LIST {kind} ms"] = _median_ms(samples)
    t0 = time.perf_counter()
    selected = api.call("GET", kinds["replicasets"] + "?labelSelector=app%3Dapp-1")
    figures["LIST replicasets app=app-1 ms"] = (time.perf_counter() - t0) * 1000
    assert selected[0] == 200
    count = 1000
    rollout = kinds["rollouts"] + "/app-{}"
    t0 = time.perf_counter()
    for i in range(count):
        api.call("GET", rollout.format(i % n))
    figures["GET rollout /s"] = count / (time.perf_counter() - t0)
    cpu = cpu_seconds(pid)
    t0 = time.perf_counter()
    for i in range(count):
        status, data = api.call(
            "PATCH",
            rollout.format(i % n) + "/status",
            {"status": {"phase": "Progressing", "message": f"step {i}"}},
            "application/merge-patch+json",
        )
        assert status == 200, data[:300]
    figures["PATCH rollout status /s"] = count / (time.perf_counter() - t0)
    figures["sandbox CPU ms per status PATCH"] = (cpu_seconds(pid) - cpu) / count * 1000
    figures.update(_rollout_fan_out(server, pid, n, watchers=10, writes=500))
    cpu = cpu_seconds(pid)
    time.sleep(5)
    figures["sandbox CPU s/s idle, traffic on"] = (cpu_seconds(pid) - cpu) / 5
    return figures


def _rollout_fan_out(server: str, pid: int, n: int, watchers: int, writes: int) -> dict[str, float]:
    url = urlsplit(server)
    api = Http(server)
    path = f"/apis/rollout.dev/v1alpha1/namespaces/{SCALE_NS}/rollouts"
    status, data = api.call("GET", path + "?labelSelector=none%3Dnone")
    rv = json.loads(data)["metadata"]["resourceVersion"]
    done = [0] * watchers

    def watch(index: int) -> None:
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=120)
        connection.request("GET", f"{path}?watch=true&resourceVersion={rv}")
        reply = connection.getresponse()
        while done[index] < writes:
            line = reply.readline()
            if not line:
                break
            if json.loads(line)["type"] == "MODIFIED":
                done[index] += 1
        connection.close()

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(watchers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    cpu = cpu_seconds(pid)
    t0 = time.perf_counter()
    for i in range(writes):
        api.call(
            "PATCH",
            f"{path}/app-{i % n}/status",
            {"status": {"message": f"fan-out {i}"}},
            "application/merge-patch+json",
        )
    for thread in threads:
        thread.join(timeout=120)
    return {
        f"watch fan-out {watchers}x{writes} s": time.perf_counter() - t0,
        "events delivered": float(sum(done)),
        "sandbox CPU ms per write, 10 watchers": (cpu_seconds(pid) - cpu) / writes * 1000,
    }


def run_scale(sizes: list[int], source: Path | None) -> dict[int, dict[str, float]]:
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        process, kubeconfig = start_sandbox(Path(workdir), source, ("--no-prometheus",))
        try:
            server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
            start = 0
            for n in sizes:
                results[n] = scale_figures(server, process.pid, n, start)
                results[n]["sandbox RSS MiB"] = _rss_mib(process.pid)
                start = n
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return results


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def extract(revision: str, workdir: Path) -> Path:
    """The sources of ``revision`` (rollout/, analysis/, crds/), extracted under ``workdir``."""
    target = workdir / "baseline"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", revision, "rollout", "analysis", "crds"],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def main_scale(sizes: list[int], baseline: str | None) -> None:
    runs: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        if baseline:
            runs[baseline] = run_scale(sizes, extract(baseline, Path(workdir)))
        runs["this tree"] = run_scale(sizes, None)
    for n in sizes:
        print(f"\n{n:,} Rollouts, VirtualServices, DestinationRules; {2 * n:,} ReplicaSets")
        names = list(next(iter(runs.values()))[n])
        print(f"  {'':42}" + "".join(f"{label:>14}" for label in runs))
        for name in names:
            print(f"  {name:42}" + "".join(f"{run[n][name]:14,.2f}" for run in runs.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--scale", help="sizes, e.g. 1000,10000: measure at scale instead")
    parser.add_argument("--baseline", help="a git revision to measure first (with --scale)")
    args = parser.parse_args()
    if args.scale:
        main_scale([int(x) for x in args.scale.split(",")], args.baseline)
        return
    count, total, writes = (1000, 20_000, 200) if args.quick else (5000, 100_000, 1000)
    with tempfile.TemporaryDirectory() as workdir:
        process, kubeconfig = start_sandbox(Path(workdir))
        try:
            server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
            official_client(kubeconfig, count)
            flat_latency(server, total, total // 10)
            fan_out(server, kubeconfig, 10, writes)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
