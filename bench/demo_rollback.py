"""How fast a bad canary is rolled back, and how much memory ``rollout demo`` takes.

    .venv/bin/python bench/demo_rollback.py [--runs 10] [--skip-demo]

Part 1, rollback timing, with the parts a user runs: ``rollout sandbox up`` (API, simulated
traffic at 100 requests/s per host, a real Prometheus scraping every second) and ``rollout
controller``, as separate processes. The controller reaches Prometheus through a recording proxy
in this process, which timestamps every query it forwards and its answer. Each run deploys the
demo's bad-canary Rollout (gate interval 5 s, error rate max 5%) in a fresh namespace, waits until
v1's traffic is in Prometheus plus one gate window, updates to v2 (30% errors), and records:

- first request: when the simulated Istio metrics first count a request to v2 (polled every
  20 ms);
- failing measurement: when Prometheus answered the controller's first query of v2's error rate
  with a value above the max (and when that query was sent);
- weight 0: when a watch on the VirtualService sees the canary's weight back at 0.

It reports, median and p99 over the runs: the decision time (failing answer -> weight 0; target
<= 0.5 s), the measurement itself (query sent -> answered), and first request -> weight 0 (target
<= 2 intervals plus the scrape and rate warm-up), with the peak RSS of the two processes.

Part 2, memory: ``rollout demo --scenario bad-canary`` once, its processes (the Python one running
sandbox, traffic and controller, and its Prometheus) sampled from /proc every 0.1 s: the sum of
each process's peak RSS (VmHWM), and the highest total RSS seen at one sample.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from rollout import demo

# The kubernetes client is untyped; a missing field fails the bench loudly, which is enough.
kube_config: Any = config
kube_watch: Any = watch

ROLLOUT = str(Path(sys.executable).parent / "rollout")
MAX_ERROR_RATE = demo.MAX_ERROR_RATE


# -- the recording proxy in front of Prometheus -------------------------------------------------


@dataclass(frozen=True)
class Query:
    sent: float
    answered: float
    promql: str
    values: tuple[float, ...]


class Recorder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.queries: list[Query] = []
        self.lock = threading.Lock()


def proxy(recorder: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.forward()

        def do_POST(self) -> None:  # noqa: N802
            self.forward()

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            request = urllib.request.Request(
                recorder.upstream + self.path, data=body, headers=headers, method=self.command
            )
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    code, payload = reply.status, reply.read()
            except urllib.error.HTTPError as error:
                code, payload = error.code, error.read()
            answered = time.monotonic()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if body:
                params.update(urllib.parse.parse_qs(body.decode()))
            if "query" in params:
                query = Query(sent, answered, params["query"][0], values_of(payload))
                with recorder.lock:
                    recorder.queries.append(query)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def values_of(payload: bytes) -> tuple[float, ...]:
    try:
        result = json.loads(payload)["data"]["result"]
        return tuple(float(r["value"][1]) for r in result)
    except (ValueError, KeyError, TypeError):
        return ()


# -- processes and their memory ------------------------------------------------------------------


def tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB; zeros once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


@dataclass
class MemorySampler:
    roots: list[int]
    peaks: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM KiB
    names: dict[int, str] = field(default_factory=dict)
    highest_total: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> MemorySampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            for root in self.roots:
                for pid in tree(root):
                    rss, hwm = memory_kib(pid)
                    total += rss
                    if hwm:
                        self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                        if pid not in self.names:
                            self.names[pid] = _name(pid)
            self.highest_total = max(self.highest_total, total)

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> str:
        parts = ", ".join(
            f"{self.names.get(pid, pid)} {kib / 1024:.0f}" for pid, kib in self.peaks.items()
        )
        return (
            f"sum of per-process peaks {sum(self.peaks.values()) / 1024:.0f} MiB ({parts}); "
            f"highest total at one sample {self.highest_total / 1024:.0f} MiB"
        )


def _name(pid: int) -> str:
    """``rollout demo`` for our Python processes, the binary's name for the others."""
    try:
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return str(pid)
    if not argv:
        return str(pid)
    if Path(argv[0]).name.startswith("python") and len(argv) >= 3:
        return f"{Path(argv[1]).name} {argv[2]}"
    return Path(argv[0]).name


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- one rollback --------------------------------------------------------------------------------


@dataclass
class Run:
    first_request: float
    failing_sent: float
    failing_answered: float
    weight_zero: float

    @property
    def decision(self) -> float:
        return self.weight_zero - self.failing_answered

    @property
    def measurement(self) -> float:
        return self.failing_answered - self.failing_sent

    @property
    def request_to_rollback(self) -> float:
        return self.weight_zero - self.first_request


def in_namespace(obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    obj["metadata"]["namespace"] = namespace
    return obj


def canary_weight(vs: dict[str, Any]) -> int:
    for route in vs["spec"]["http"]:
        for destination in route.get("route") or []:
            if destination["destination"].get("subset") == "canary":
                return int(destination.get("weight") or 0)
    return 0


def revisions_counted(metrics_url: str, namespace: str) -> set[str]:
    with urllib.request.urlopen(metrics_url, timeout=2) as reply:
        text = reply.read().decode()
    found = set()
    for line in text.splitlines():
        if (
            line.startswith("istio_requests_total{")
            and 'reporter="destination"' in line
            and f'destination_workload_namespace="{namespace}"' in line
        ):
            match = re.search(r'destination_canonical_revision="([^"]*)"', line)
            if match:
                found.add(match.group(1))
    return found


def prometheus_has_traffic(prometheus: str, namespace: str) -> bool:
    promql = (
        f'sum(increase(istio_requests_total{{reporter="destination",'
        f'destination_workload_namespace="{namespace}"}}[5s]))'
    )
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=2) as reply:
        values = values_of(reply.read())
    return bool(values) and values[0] > 0


def poll(predicate: Any, what: str, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)


def one_rollback(
    api: client.ApiClient, namespace: str, metrics_url: str, prometheus: str, recorder: Recorder
) -> Run:
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    scenario = demo.SCENARIOS["bad-canary"]
    istio = ("networking.istio.io", "v1beta1", namespace)
    rollouts = ("rollout.dev", "v1alpha1", namespace, "rollouts")
    core.create_namespace({"metadata": {"name": namespace}})
    for service in demo.services(scenario):
        core.create_namespaced_service(namespace, in_namespace(service, namespace))
    custom.create_namespaced_custom_object(
        *istio, "destinationrules", in_namespace(demo.destination_rule(), namespace)
    )
    for vs in demo.virtual_services(scenario):
        custom.create_namespaced_custom_object(
            *istio, "virtualservices", in_namespace(vs, namespace)
        )
    custom.create_namespaced_custom_object(
        *rollouts, in_namespace(demo.rollout(scenario), namespace)
    )

    def status() -> dict[str, Any]:
        obj = custom.get_namespaced_custom_object(*rollouts, demo.APP)
        return dict(obj.get("status") or {})

    poll(lambda: status().get("phase") == "Healthy", "v1 Healthy", 60)
    poll(lambda: prometheus_has_traffic(prometheus, namespace), "v1 in Prometheus", 60, 0.25)
    time.sleep(demo.INTERVAL_S)  # one gate window of v1's traffic, as the demo does
    before = revisions_counted(metrics_url, namespace)

    weights: list[tuple[float, int]] = []
    watching = threading.Event()

    def watch_vs() -> None:
        stream = kube_watch.Watch()
        kwargs = {"field_selector": f"metadata.name={demo.APP}", "timeout_seconds": 90}
        for event in stream.stream(
            custom.list_namespaced_custom_object, *istio, "virtualservices", **kwargs
        ):
            weight = canary_weight(event["object"])
            weights.append((time.monotonic(), weight))
            watching.set()
            if weight == 0 and any(w > 0 for _, w in weights):
                stream.stop()

    watcher = threading.Thread(target=watch_vs, daemon=True)
    watcher.start()
    watching.wait(10)
    updated = time.monotonic()
    custom.patch_namespaced_custom_object(
        *rollouts, demo.APP, {"spec": {"template": demo.template(2, dict(demo.BAD))}}
    )
    first_request = poll(
        lambda: revisions_counted(metrics_url, namespace) - before and time.monotonic(),
        "v2's first request",
        30,
        0.02,
    )
    watcher.join(60)
    if watcher.is_alive():
        raise RuntimeError(f"no rollback within 60 s: {weights}")
    weight_zero = next(t for t, w in weights if t > updated and w == 0)
    with recorder.lock:
        failing = next(
            q
            for q in recorder.queries
            if q.sent > updated
            and f'"{namespace}"' in q.promql
            and "5.." in q.promql
            and any(v > MAX_ERROR_RATE for v in q.values)
        )
    core.delete_namespace(namespace)  # its traffic stops; nothing waits for it
    return Run(first_request, failing.sent, failing.answered, weight_zero)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.3f} s, p99 {percentile(values, 0.99):.3f} s"


def rollback_timing(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        sandbox = subprocess.Popen(
            [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig), "--port", "0",
             "--prometheus-port", "0", "--rps", str(demo.RPS)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        controller: subprocess.Popen[str] | None = None
        server: ThreadingHTTPServer | None = None
        try:
            urls: dict[str, str] = {}
            assert sandbox.stdout is not None
            for line in sandbox.stdout:
                if line.startswith("simulated Istio metrics at "):
                    urls["metrics"] = line.split(" at ", 1)[1].strip()
                if line.startswith("prometheus at "):
                    urls["prometheus"] = line.split(" at ", 1)[1].strip()
                    break
            recorder = Recorder(urls["prometheus"])
            server = proxy(recorder)
            controller = subprocess.Popen(
                [ROLLOUT, "controller", "--kubeconfig", str(kubeconfig), "--no-leader-elect",
                 "--metrics-port", "0", "--health-port", "0",
                 "--prometheus-url", f"http://127.0.0.1:{server.server_address[1]}"],
                stdout=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            memory = MemorySampler([sandbox.pid, controller.pid]).start()
            api = kube_config.new_client_from_config(config_file=str(kubeconfig))
            results: list[Run] = []
            for i in range(runs):
                run = one_rollback(api, f"bench-{i}", urls["metrics"], urls["prometheus"], recorder)
                results.append(run)
                print(
                    f"run {i + 1}: failing answer -> canary weight 0 {run.decision * 1000:.0f} ms "
                    f"(the query itself {run.measurement * 1000:.0f} ms); v2's first request -> "
                    f"weight 0 {run.request_to_rollback:.2f} s",
                    flush=True,
                )
            memory.stop()
        finally:
            if controller is not None:
                stop(controller)
            stop(sandbox)
            if server is not None:
                server.shutdown()
    print(f"bad canary, gate interval {demo.INTERVAL_S} s, {runs} runs:")
    print(
        "  "
        + summary("failing measurement answered -> canary weight 0", [r.decision for r in results])
    )
    print("  " + summary("the failing measurement's query", [r.measurement for r in results]))
    print(
        "  "
        + summary("v2's first request -> canary weight 0", [r.request_to_rollback for r in results])
    )
    print(f"  sandbox up + controller: {memory.report()}")


def demo_memory() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        process = subprocess.Popen(
            [ROLLOUT, "demo", "--scenario", "bad-canary", "--json", f"{tmp}/timeline.json"],
            stdout=subprocess.DEVNULL,
            text=True,
        )
        memory = MemorySampler([process.pid]).start()
        code = process.wait()
        memory.stop()
        wall = time.monotonic() - started
        outcome = json.loads(Path(f"{tmp}/timeline.json").read_text())["outcome"]
    print(f"rollout demo --scenario bad-canary: exit {code}, {outcome}, {wall:.1f} s")
    print(f"  {memory.report()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--skip-demo", action="store_true", help="skip the demo's memory run")
    args = parser.parse_args()
    rollback_timing(args.runs)
    if not args.skip_demo:
        demo_memory()


if __name__ == "__main__":
    main()
