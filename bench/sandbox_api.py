"""Benchmark of the sandbox API emulator, run by hand (never as a test).

    .venv/bin/python bench/sandbox_api.py            # full run: ~2 minutes
    .venv/bin/python bench/sandbox_api.py --quick    # smaller counts

It starts ``rollout sandbox up`` in its own process (as a user would) and measures, from one
client process on 127.0.0.1:

1. GET/s and PATCH/s through the official ``kubernetes`` client (one thread);
2. latency of 100,000 GETs over one keep-alive connection (``http.client``), reported per
   window of 10,000, to show that it stays flat as the server's history grows;
3. watch fan-out: 10 watchers on one collection while 1,000 objects are written; the time until
   every watcher has every event, and the delivery lag.
"""

from __future__ import annotations

import argparse
import http.client
import json
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


def start_sandbox(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = workdir / "kubeconfig"
    process = subprocess.Popen(
        [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.DEVNULL,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
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
