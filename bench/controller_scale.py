"""Benchmark of the controller under load, run by hand (never as a test). One command:

    .venv/bin/python bench/controller_scale.py                          # 200 then 1000 rollouts
    .venv/bin/python bench/controller_scale.py --small 50 --big 200     # a quick look
    .venv/bin/python bench/controller_scale.py --kubeconfig DIR/kubeconfig   # a real cluster

It runs two sizes one after the other, each in a fresh namespace with a fresh
``rollout controller --workers 4 --no-leader-elect --namespace NS`` process (as a user would),
and, unless ``--kubeconfig`` names an existing cluster (e.g. ``scripts/kube-up DIR``), a fresh
``rollout sandbox up --rps 0 --no-prometheus --verbose`` (no simulated traffic: nothing here
reads Prometheus, and the sandbox must not be the bottleneck; its request log counts the
controller's HTTP requests). Per size, N Rollouts each walk three weights with 1 s pauses
(25, 50, 75, then promotion) and ``--aborts`` more stop at 25 % (an indefinite pause). It prints,
for both sizes and their ratio:

1. wall time from the template change of all Rollouts to the last of the N promoted (seen by a
   Rollout watch); target: big ≤ 5 × small;
2. reconcile p50/p99 and queue wait p99 (the controller's histograms on /metrics: bucket upper
   bounds, so "≤"); targets: reconcile p99 ≤ 250 ms, queue wait p99 ≤ 1 s;
3. the controller's peak RSS (VmHWM);
4. API writes per step (status, ReplicaSets, routing; Events apart), the controller's HTTP
   requests per step by verb (sandbox only), and the writes of reconciles with nothing to do
   (a label touched on every Rollout; target 0);
5. abort → canary weight 0: from ``status.abort: true`` to a VirtualService watch seeing weight
   0, for the ``--aborts`` Rollouts, aborted one by one (0.3 s apart) WHILE the N are
   progressing; p50/p99 (target ≤ 200 ms at the big size).

A failed gate → weight 0 is not measured here (it needs Prometheus, traffic and a gate
interval; the abort path after the verdict is the same write).

Every wait is bounded (``--timeout`` per phase); the processes started are stopped at the end.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    ROLLOUT,
    STEPS,
    cpu_seconds,
    create_app,
    free_port,
    rss_peak_mib,
    set_image,
    stop,
    wait_for,
)

from rollout.cluster.access import (
    NAMESPACES,
    ROLLOUTS,
    VIRTUAL_SERVICES,
    ClusterError,
    Obj,
    Resource,
)
from rollout.cluster.kube import KubeAccess, load_api_client

# The abort subjects stay at 25 % until aborted.
HELD: list[Obj] = [{"setWeight": 25}, {"pause": {}}]
Metrics = dict[str, list[tuple[dict[str, str], float]]]


def scrape(port: int) -> Metrics:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: Metrics = {}
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


def counter(found: Metrics, name: str) -> float:
    return sum(v for _, v in found.get(name, []))


def bucket_quantile(after: Metrics, before: Metrics, name: str, q: float) -> float:
    """The upper bound of the histogram bucket holding quantile ``q`` of what was observed
    between the two scrapes."""

    def points(found: Metrics) -> dict[float, float]:
        return {float(lb["le"]): v for lb, v in found.get(f"{name}_bucket", [])}

    start = points(before)
    delta = sorted((le, v - start.get(le, 0.0)) for le, v in points(after).items())
    total = delta[-1][1] if delta else 0.0
    for bound, count in delta:
        if total and count >= q * total:
            return bound
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Watcher:
    """One watch of a resource in a namespace (resumed when the server ends it), calling
    ``on_event(object, monotonic time of arrival)`` from its own thread."""

    def __init__(self, access: KubeAccess, res: Resource, ns: str, on_event: Any) -> None:
        self.access, self.res, self.ns, self.on_event = access, res, ns, on_event
        self.stopped = threading.Event()
        items, self.version = access.list(res, ns)
        for obj in items:
            on_event(obj, time.monotonic())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                for event in self.access.watch(self.res, self.ns, self.version, timeout_seconds=60):
                    arrived = time.monotonic()
                    if event.resource_version:
                        self.version = event.resource_version
                    if self.stopped.is_set():
                        return
                    if event.type in ("ADDED", "MODIFIED"):
                        self.on_event(event.object, arrived)
            except ClusterError:
                if self.stopped.is_set():
                    return
                time.sleep(0.2)


@dataclass
class Weights:
    """The canary weight of every VirtualService, as the watch saw it, and when."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)
    weight: dict[str, tuple[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def seen(self, vs: Obj, arrived: float) -> None:
        try:
            weight = int(vs["spec"]["http"][0]["route"][1].get("weight", 0))
        except (KeyError, IndexError, TypeError, ValueError):
            return
        with self.changed:
            self.weight[vs["metadata"]["name"]] = (weight, arrived)
            self.changed.notify_all()

    def wait(self, name: str, test: Any, timeout: float) -> float | None:
        """When the watch saw ``test(weight)`` hold for ``name``; None on timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.weight.get(name)
                if found is not None and test(found[0]):
                    return found[1]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


@dataclass
class Promotions:
    """Which of the walking Rollouts are promoted on the new template, and when the last was."""

    names: set[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: dict[str, float] = field(default_factory=dict)
    armed: bool = False

    def seen(self, rollout: Obj, arrived: float) -> None:
        name = rollout["metadata"]["name"]
        if name not in self.names:
            return
        status = rollout.get("status") or {}
        promoted = (
            status.get("phase") == "Healthy"
            and status.get("currentStepIndex") == len(STEPS)
            and rollout["metadata"].get("generation") == status.get("observedGeneration")
            and rollout["metadata"].get("generation", 0) > 1
        )
        with self.lock:
            if promoted and self.armed:
                self.done.setdefault(name, arrived)

    def all_done(self) -> bool:
        with self.lock:
            return len(self.done) == len(self.names)


def request_counts(log: Path, start: int, end: int, ns: str) -> collections.Counter[str]:
    """The controller's requests in the sandbox's request log between two byte offsets: named
    GETs of routing objects, and writes, by verb and kind (the bench's own requests are
    Rollout spec patches, abort status patches, lists and watches; they are left out)."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode(errors="replace")
    counts: collections.Counter[str] = collections.Counter()
    pattern = re.compile(r'"(GET|PATCH|POST|PUT|DELETE) (/[^ ?"]*)')
    for verb, path in pattern.findall(text):
        parts = path.strip("/").split("/")
        if f"namespaces/{ns}/" not in path:
            continue
        tail = parts[parts.index("namespaces") + 2 :]
        kind = tail[0] if tail else "?"
        named = len(tail) >= 2
        if verb == "GET" and not named:
            continue  # lists and watches (caches, the bench)
        if kind == "rollouts" and verb == "PATCH" and not path.endswith("/status"):
            continue  # the bench's template changes
        counts[f"{verb} {kind}{'/status' if path.endswith('/status') else ''}"] += 1
    return counts


@dataclass
class Result:
    n: int
    wall: float
    reconcile_p50: float
    reconcile_p99: float
    queue_wait_p99: float
    rss_mib: float
    writes_per_step: float
    events_per_step: float
    idle_reconciles: float
    idle_writes: float
    aborts: list[float]
    aborts_missed: int
    requests_per_step: dict[str, float]
    cpu: dict[str, float]


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> Result:
    ns = f"bench-{n}-{int(time.time())}"
    sandbox = controller = None
    log = workdir / f"sandbox-{n}.log"
    try:
        if args.kubeconfig:
            kubeconfig = Path(args.kubeconfig)
        else:
            kubeconfig = workdir / f"kubeconfig-{n}"
            sandbox = subprocess.Popen(
                [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig), "--rps", "0"]
                + ["--no-prometheus", "--verbose"],
                stdout=subprocess.DEVNULL,
                stderr=log.open("wb"),
            )
            wait_for(kubeconfig.exists, 60, "the sandbox")
        access = KubeAccess(load_api_client(str(kubeconfig)))
        access.create(NAMESPACES, None, {"metadata": {"name": ns}})
        walkers = [f"app-{i}" for i in range(n)]
        held = [f"abort-{i}" for i in range(args.aborts)]
        with ThreadPoolExecutor(4) as pool:
            jobs = [pool.submit(create_app, access, ns, w, STEPS) for w in walkers]
            jobs += [pool.submit(create_app, access, ns, h, HELD) for h in held]
            for job in jobs:
                job.result()
        port = free_port()
        controller = subprocess.Popen(
            [ROLLOUT, "controller", "--kubeconfig", str(kubeconfig), "--namespace", ns]
            + ["--workers", str(args.workers), "--no-leader-elect", "--metrics-port", str(port)]
            + ["--health-port", "0", "--log-level", "warning"]
        )
        everyone = set(walkers) | set(held)
        healthy: dict[str, bool] = {}

        def first_revision(rollout: Obj, arrived: float) -> None:
            status = rollout.get("status") or {}
            healthy[rollout["metadata"]["name"]] = status.get("phase") == "Healthy"

        promotions = Promotions(set(walkers))
        weights = Weights()

        def on_rollout(rollout: Obj, arrived: float) -> None:
            first_revision(rollout, arrived)
            promotions.seen(rollout, arrived)

        rollouts = Watcher(access, ROLLOUTS, ns, on_rollout)
        vss = Watcher(access, VIRTUAL_SERVICES, ns, weights.seen)
        wait_for(
            lambda: sum(healthy.get(name, False) for name in everyone) == len(everyone),
            args.timeout,
            f"{len(everyone)} first revisions",
            every=0.5,
        )
        wait_for(lambda: _reachable(port), 30, "the controller's metrics")
        before_idle = scrape(port)
        for name in sorted(everyone):  # reconciles with nothing to do: a label, not the spec
            access.patch(ROLLOUTS, ns, name, {"metadata": {"labels": {"touch": "1"}}})
        time.sleep(3)
        after_idle = scrape(port)
        offset = log.stat().st_size if sandbox is not None else 0

        with promotions.lock:
            promotions.armed = True
        cpu = {"controller": cpu_seconds(controller.pid)}
        if sandbox is not None:
            cpu["sandbox"] = cpu_seconds(sandbox.pid)
        started = time.monotonic()
        for name in held:  # the abort subjects first: they must be mid-canary while N walk
            set_image(access, ns, name, "v2")
        for name in walkers:
            set_image(access, ns, name, "v2")
        aborts: list[float] = []
        missed = 0
        for name in held:
            if promotions.all_done():
                missed += 1
                continue
            if weights.wait(name, lambda w: w > 0, args.timeout) is None:
                missed += 1
                continue
            sent = time.monotonic()
            access.patch_status(ROLLOUTS, ns, name, {"status": {"abort": True}})
            seen = weights.wait(name, lambda w: w == 0, 10)
            if seen is None:
                missed += 1
            else:
                aborts.append(seen - sent)
            time.sleep(0.3)
        wait_for(promotions.all_done, args.timeout, f"{n} rollouts to be promoted", every=0.2)
        wall = max(promotions.done.values()) - started
        time.sleep(1)  # the last status writes' Events
        found = scrape(port)
        rss = rss_peak_mib(controller.pid)
        cpu["controller"] = cpu_seconds(controller.pid) - cpu["controller"]
        if sandbox is not None:
            cpu["sandbox"] = cpu_seconds(sandbox.pid) - cpu["sandbox"]
        rollouts.stopped.set()
        vss.stopped.set()
        steps = n * (len(STEPS) + 1) + len(held) * 2  # walkers' steps and promotion; aborts
        writes = counter(found, "rollout_api_writes_total") - counter(
            after_idle, "rollout_api_writes_total"
        )
        events = counter(found, "rollout_events_total") - counter(
            after_idle, "rollout_events_total"
        )
        requests: dict[str, float] = {}
        if sandbox is not None:
            counts = request_counts(log, offset, log.stat().st_size, ns)
            counts["PATCH rollouts/status"] -= len(aborts) + missed  # the bench's aborts
            requests = {k: v / steps for k, v in sorted(counts.items())}
        return Result(
            n=n,
            wall=wall,
            reconcile_p50=bucket_quantile(
                found, after_idle, "rollout_reconcile_duration_seconds", 0.5
            ),
            reconcile_p99=bucket_quantile(
                found, after_idle, "rollout_reconcile_duration_seconds", 0.99
            ),
            queue_wait_p99=bucket_quantile(found, after_idle, "rollout_queue_wait_seconds", 0.99),
            rss_mib=rss,
            writes_per_step=(writes - events) / steps,
            events_per_step=events / steps,
            idle_reconciles=counter(after_idle, "rollout_reconcile_duration_seconds_count")
            - counter(before_idle, "rollout_reconcile_duration_seconds_count"),
            idle_writes=counter(after_idle, "rollout_api_writes_total")
            - counter(before_idle, "rollout_api_writes_total"),
            aborts=aborts,
            aborts_missed=missed,
            requests_per_step=requests,
            cpu=cpu,
        )
    finally:
        stop(controller)
        if args.kubeconfig and sandbox is None:
            try:
                KubeAccess(load_api_client(args.kubeconfig)).delete(NAMESPACES, None, ns)
            except ClusterError:
                pass
        stop(sandbox)


def _reachable(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


def report(small: Result, big: Result, args: argparse.Namespace) -> None:
    where = f"cluster {args.kubeconfig}" if args.kubeconfig else "sandbox (no traffic)"
    print(
        f"controller_scale: {len(STEPS)} steps (3 weights, 1 s pauses), {args.workers} workers, "
        f"+{args.aborts} abort subjects per size, {where}"
    )

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms"

    rows = [
        ("wall time to all promoted", f"{small.wall:.1f} s", f"{big.wall:.1f} s",
         f"{big.wall / small.wall:.2f}x", f"big <= 5x small ({big.n / small.n:.0f}x rollouts)"),
        ("reconcile p50 (bucket bound)", f"<= {ms(small.reconcile_p50)}",
         f"<= {ms(big.reconcile_p50)}", "", ""),
        ("reconcile p99 (bucket bound)", f"<= {ms(small.reconcile_p99)}",
         f"<= {ms(big.reconcile_p99)}", "", "<= 250 ms"),
        ("queue wait p99 (bucket bound)", f"<= {ms(small.queue_wait_p99)}",
         f"<= {ms(big.queue_wait_p99)}", "", "<= 1000 ms"),
        ("controller peak RSS", f"{small.rss_mib:.0f} MiB", f"{big.rss_mib:.0f} MiB",
         f"{big.rss_mib / small.rss_mib:.2f}x", ""),
        ("API writes per step (+Events)",
         f"{small.writes_per_step:.2f} (+{small.events_per_step:.2f})",
         f"{big.writes_per_step:.2f} (+{big.events_per_step:.2f})", "", ""),
        ("writes on idle reconciles",
         f"{small.idle_writes:.0f} of {small.idle_reconciles:.0f}",
         f"{big.idle_writes:.0f} of {big.idle_reconciles:.0f}", "", "0"),
        ("abort -> weight 0 p50 (VS watch)", ms(percentile(small.aborts, 0.5)),
         ms(percentile(big.aborts, 0.5)), "", ""),
        ("abort -> weight 0 p99 (VS watch)", ms(percentile(small.aborts, 0.99)),
         ms(percentile(big.aborts, 0.99)), "", "<= 200 ms (big, while progressing)"),
    ]  # fmt: skip
    header = ("", f"{small.n} rollouts", f"{big.n} rollouts", "big/small", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    for result in (small, big):
        used = ", ".join(f"{k} {v:.0f} s" for k, v in result.cpu.items())
        print(f"  {result.n}: CPU from the template change to the last promotion: {used}")
        if result.aborts_missed:
            print(f"  {result.n}: {result.aborts_missed} abort(s) not measured (see --timeout)")
        if result.requests_per_step:
            per = ", ".join(f"{k} {v:.2f}" for k, v in result.requests_per_step.items())
            print(f"  {result.n}: controller HTTP requests per step: {per}")


def main() -> None:
    # The whole docstring: its first line ends in "One command:", the commands follow.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=200, help="rollouts of the small size")
    parser.add_argument("--big", type=int, default=1000, help="rollouts of the big size")
    parser.add_argument("--aborts", type=int, default=20, help="abort subjects per size")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900, help="bound of each wait, s")
    parser.add_argument(
        "--kubeconfig", help="an existing cluster (e.g. scripts/kube-up) instead of a sandbox"
    )
    args = parser.parse_args()
    if args.small < 1 or args.big < 1 or args.aborts < 1:
        parser.error("--small, --big and --aborts must be at least 1")
    with tempfile.TemporaryDirectory() as workdir:
        small = run_size(args.small, args, Path(workdir))
        big = run_size(args.big, args, Path(workdir))
    report(small, big, args)


if __name__ == "__main__":
    main()
