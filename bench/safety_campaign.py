"""The safety campaign: kill -9 the controller mid-rollout, and feed its gate broken answers.

    .venv/bin/python bench/safety_campaign.py [--kills 36] [--part crash|faults|both]

Everything runs as a user runs it: ``rollout sandbox up`` (API, simulated Istio traffic at
100 requests/s, a real Prometheus scraping every second) and ``rollout controller`` as
separate processes. The controller reaches Prometheus through a fault proxy in this process.
Every run deploys the demo's Rollout (steps 20% -> gate -> 50% -> gate -> 80% -> pause, gate
interval 2 s, error rate max 5%) in a fresh namespace, waits until v1 is Healthy, updates it to
v2 and records every version of the VirtualService, DestinationRule, ReplicaSets and Rollout
(``tests.integration.controller_helpers.Recorder``), then checks them with the test suite's
invariant oracle (``tests.oracle``, the five invariants) and with these checks of its own:

- every managed route's weights are integers in 0..100 summing to 100;
- a v2 with 30% errors is never promoted, and its weight never rises after a Failed verdict;
- the run ends as expected (a good v2 Promoted, a bad v2 RolledBack).

Part 1, crash points: runs alternating a good and a bad v2; in each run the controller is
killed with SIGKILL at a random moment 0.3-3 s after each (re)start, ``--kills-per-run`` times,
and restarted at once; then it is left to finish. Part 2, Prometheus faults: the proxy rewrites
every gate answer (NaN, +Inf, -Inf, negative values, an empty result, non-JSON garbage, a
non-numeric value, a slow answer past the timeout, HTTP 500) for a GOOD v2, which must never be
promoted on broken data; the report says how each run ended and how far v2's weight got.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client  # noqa: E402

from rollout import demo  # noqa: E402
from tests.integration.controller_helpers import Recorder  # noqa: E402
from tests.integration.sandbox_helpers import client_from, core_v1, custom_objects  # noqa: E402
from tests.oracle_watch import OracleWatch, WriteLog  # noqa: E402

ROLLOUT = str(Path(sys.executable).parent / "rollout")
GOOD: dict[str, str] = {}
BAD = {demo.ERROR_RATE: "0.3"}
Obj = dict[str, Any]
WRITES = WriteLog()

STEPS: list[Obj] = [
    {"setWeight": 20},
    {"analysis": {"count": 2}},
    {"setWeight": 50},
    {"analysis": {"count": 1}},
    {"setWeight": 80},
    {"pause": {"duration": "2s"}},
]
# inconclusiveLimit 2: with a 2 s window over 1 s scrapes, a measurement that a restart moves
# to just after the weight change can see no canary sample yet (Inconclusive, too few
# requests); with the default 0 that one pauses the rollout for an operator, which then ends
# at the progress deadline: safe, but not what this campaign measures.
GATE: Obj = {
    "interval": "2s",
    "inconclusiveLimit": 2,
    "prometheus": {"scrapeInterval": "1s", "timeout": "2s"},
    "checks": [
        {"name": "error-rate", "errorRate": {"max": 0.05, "minRequests": 5}},
        {"name": "latency", "latencyP99": {"maxMs": 250, "minRequests": 5}},
    ],
}


# -- the fault proxy in front of Prometheus -----------------------------------------------------


class Faults:
    """What the proxy does to each answer: ``None`` forwards it untouched."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: str | None = None
        self.queries = 0


def _rewrite(body: bytes, value: str | None) -> bytes:
    answer = json.loads(body)
    result = answer.get("data", {}).get("result")
    if isinstance(result, list):
        if value is None:
            answer["data"]["result"] = []
        else:
            for series in result:
                series["value"][1] = value
    return json.dumps(answer).encode()


REWRITES: dict[str, str | None] = {
    "nan": "NaN",
    "+inf": "+Inf",
    "-inf": "-Inf",
    "negative": "-5",
    "empty": None,
    "not-a-number": "abc",
}
FAULTS = [*REWRITES, "garbage", "slow", "http-500"]


def fault_proxy(faults: Faults) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self._forward(None)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            self._forward(self.rfile.read(length))

        def _forward(self, data: bytes | None) -> None:
            mode = faults.mode
            faults.queries += 1
            if mode == "slow":
                time.sleep(5)
            if mode == "http-500":
                return self._answer(500, b'{"status":"error","error":"injected"}')
            if mode == "garbage":
                return self._answer(200, b"<html>502 Bad Gateway</html>")
            request = urllib.request.Request(
                faults.upstream + self.path,
                data=data,
                headers={"Content-Type": self.headers.get("Content-Type", "")},
                method=self.command,
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    status, body = reply.status, reply.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            if mode in REWRITES and status == 200 and "/api/v1/query" in self.path:
                body = _rewrite(body, REWRITES[mode])
            self._answer(status, body)

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- processes ---------------------------------------------------------------------------------


class Sandbox:
    def __init__(self, workdir: Path) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self.process = subprocess.Popen(
            [ROLLOUT, "sandbox", "up", "--kubeconfig", str(self.kubeconfig)]
            + ["--rps", "100", "--prometheus-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.prometheus = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("rollout sandbox up exited")
            if line.startswith("prometheus at "):
                self.prometheus = line.split()[-1]
                break
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        while not self.kubeconfig.exists():
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Controller:
    def __init__(self, kubeconfig: Path, prometheus: str, log: Path) -> None:
        self.args = [ROLLOUT, "controller", "--kubeconfig", str(kubeconfig), "--no-leader-elect"]
        self.args += ["--metrics-port", "0", "--health-port", "0", "--prometheus-url", prometheus]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    part: str
    label: str
    expected: str
    outcome: str = "Timeout"
    seconds: float = 0.0
    max_weight: int = 0
    kills: int = 0
    violations: list[str] = field(default_factory=list)


def _in(namespace: str, obj: Obj) -> Obj:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    return obj


def deploy(api: client.ApiClient, namespace: str) -> None:
    core = core_v1(api)
    custom = custom_objects(api)
    core.create_namespace({"metadata": {"name": namespace}})
    scenario = demo.SCENARIOS["good-canary"]
    for svc in demo.services(scenario):
        core.create_namespaced_service(namespace, _in(namespace, svc))
    istio = ("networking.istio.io", "v1beta1", namespace)
    custom.create_namespaced_custom_object(
        *istio, "destinationrules", _in(namespace, demo.destination_rule())
    )
    for vs in demo.virtual_services(scenario):
        custom.create_namespaced_custom_object(*istio, "virtualservices", _in(namespace, vs))
    rollout = _in(namespace, demo.rollout(scenario))
    rollout["spec"]["analysis"] = copy.deepcopy(GATE)
    rollout["spec"]["progressDeadlineSeconds"] = 40
    rollout["spec"]["strategy"]["canary"]["steps"] = copy.deepcopy(STEPS)
    custom.create_namespaced_custom_object(
        "rollout.dev", "v1alpha1", namespace, "rollouts", rollout
    )


def status_of(api: client.ApiClient, namespace: str) -> Obj:
    custom = custom_objects(api)
    obj: Obj = custom.get_namespaced_custom_object(
        "rollout.dev", "v1alpha1", namespace, "rollouts", demo.APP
    )
    return dict(obj.get("status") or {})


def update_to_v2(api: client.ApiClient, namespace: str, annotations: dict[str, str]) -> None:
    template = demo.template(2, annotations)
    custom_objects(api).patch_namespaced_custom_object(
        "rollout.dev", "v1alpha1", namespace, "rollouts", demo.APP, {"spec": {"template": template}}
    )


def wait(predicate: Any, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return None


def outcome_of(status: Obj, v1: str) -> str | None:
    """Promoted (v2 stable and Healthy) or RolledBack (Degraded on v1, no canary traffic)."""
    weights = status.get("weights") or {}
    stable = status.get("stableRevision")
    if stable and stable != v1 and status.get("phase") == "Healthy":
        return "Promoted"
    if (
        status.get("phase") == "Degraded"
        and stable == v1
        and status.get("abort")
        and int(weights.get("canary", 0)) == 0
    ):
        return "RolledBack"
    return None


def canary_weight(vs: Obj) -> int:
    for route in vs.get("spec", {}).get("http", []):
        if route.get("name") != "primary":
            continue
        for dest in route.get("route", []):
            if dest.get("destination", {}).get("subset") == "canary":
                return int(dest.get("weight") or 0)
    return 0


def own_checks(recorder: Recorder, bad: bool, v1: str) -> tuple[list[str], int]:
    """The campaign's own invariant checks over the recorded history; (violations, max weight)."""
    violations: list[str] = []
    top = 0
    failed_seen = False
    last_weight = 0
    for seen in recorder.timeline():
        obj = seen.obj
        if seen.kind == "Rollout":
            status = obj.get("status") or {}
            if status.get("abortReason") == "AnalysisFailed":
                failed_seen = True
            stable = status.get("stableRevision")
            if bad and stable and stable == status.get("canaryRevision") != v1:
                violations.append(f"rv {seen.rv}: the bad v2 was promoted")
        if seen.kind != "VirtualService":
            continue
        for route in obj.get("spec", {}).get("http", []):
            if route.get("name") != "primary":
                continue
            weights = [d.get("weight", 0) for d in route.get("route", [])]
            if not all(isinstance(w, int) and 0 <= w <= 100 for w in weights) or (
                len(weights) > 1 and sum(weights) != 100
            ):
                violations.append(f"rv {seen.rv}: weights {weights}")
        weight = canary_weight(obj)
        if failed_seen and weight > last_weight:
            violations.append(
                f"rv {seen.rv}: canary weight rose {last_weight} -> {weight} after a Failed verdict"
            )
        last_weight = weight
        top = max(top, weight)
    return violations, top


def one_run(
    api: client.ApiClient,
    controller: Controller,
    faults: Faults,
    run: Run,
    *,
    bad: bool,
    fault: str | None,
    kills: int,
    timeout: float,
) -> Run:
    namespace = f"c-{uuid.uuid4().hex[:8]}"
    watch = OracleWatch(api, [namespace], WRITES).start()
    recorder = watch.recorder
    faults.mode = None
    deploy(api, namespace)
    healthy = wait(lambda: status_of(api, namespace).get("phase") == "Healthy", 60)
    if not healthy:
        run.outcome = "v1 never Healthy"
        watch.stop()
        return run
    v1 = status_of(api, namespace)["stableRevision"]
    time.sleep(3)  # v1's traffic reaches Prometheus (scraped every second)
    faults.mode = fault
    started = time.monotonic()
    update_to_v2(api, namespace, BAD if bad else GOOD)
    deadline = started + timeout
    killed = 0
    while time.monotonic() < deadline:
        if killed < kills:
            time.sleep(random.uniform(0.3, 3.0))
            controller.kill()
            killed += 1
            controller.start()
        else:
            time.sleep(0.2)
        outcome = outcome_of(status_of(api, namespace), v1)
        if outcome is not None:
            run.outcome = outcome
            break
    run.seconds = time.monotonic() - started
    run.kills = killed
    faults.mode = None
    time.sleep(1)
    recorder.catch_up()
    violations, run.max_weight = own_checks(recorder, bad, v1)
    oracle = watch.verify(f"campaign {run.part} {run.label}")
    run.violations = violations + [str(o) for o in oracle]
    core_v1(api).delete_namespace(namespace)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["crash", "faults", "both"], default="both")
    parser.add_argument("--kills", type=int, default=36, help="SIGKILLs in the crash part")
    parser.add_argument("--kills-per-run", type=int, default=6)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the runs here")
    args = parser.parse_args()
    random.seed(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="safety-campaign-"))
    sandbox = Sandbox(workdir)
    faults = Faults(sandbox.prometheus)
    proxy = fault_proxy(faults)
    address = f"http://127.0.0.1:{proxy.server_address[1]}"
    controller = Controller(sandbox.kubeconfig, address, workdir / "controller.log")
    controller.start()
    api = client_from(str(sandbox.kubeconfig))
    WRITES.tap(api)  # the oracle tells the campaign's own writes from the controller's
    runs: list[Run] = []
    try:
        if args.part in ("crash", "both"):
            total = 0
            index = 0
            while total < args.kills:
                bad = index % 2 == 1
                expected = "RolledBack" if bad else "Promoted"
                run = Run("crash", "bad v2" if bad else "good v2", expected)
                one_run(
                    api,
                    controller,
                    faults,
                    run,
                    bad=bad,
                    fault=None,
                    kills=min(args.kills_per_run, args.kills - total),
                    timeout=120,
                )
                total += run.kills
                index += 1
                runs.append(run)
                print(_line(run), flush=True)
        if args.part in ("faults", "both"):
            for fault in FAULTS:
                run = Run("faults", f"good v2, {fault}", "not Promoted")
                one_run(api, controller, faults, run, bad=False, fault=fault, kills=0, timeout=60)
                runs.append(run)
                print(_line(run), flush=True)
    finally:
        controller.stop()
        sandbox.stop()
        proxy.shutdown()
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in runs], indent=2))
    bad_runs = [r for r in runs if not _ok(r)]
    kills = sum(r.kills for r in runs)
    violations = sum(len(r.violations) for r in runs)
    print(
        f"{len(runs)} runs, {kills} kill -9s, {violations} invariant violations, "
        f"{len(bad_runs)} unexpected outcomes (controller log: {controller.log})"
    )
    return 1 if bad_runs or violations else 0


def _ok(run: Run) -> bool:
    if run.violations:
        return False
    if run.expected == "not Promoted":
        return run.outcome != "Promoted"
    return run.outcome == run.expected


def _line(run: Run) -> str:
    verdict = "OK" if _ok(run) else "UNEXPECTED"
    return (
        f"[{run.part}] {run.label:22} {run.outcome:10} after {run.seconds:5.1f}s, "
        f"max canary weight {run.max_weight:3}%, kills {run.kills}, "
        f"violations {len(run.violations)}: {verdict}"
        + "".join(f"\n    {v}" for v in run.violations[:5])
    )


if __name__ == "__main__":
    sys.exit(main())
