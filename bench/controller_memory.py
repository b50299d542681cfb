"""Memory and initial sync of one controller managing many settled, idle Rollouts (issue 14).

    .venv/bin/python bench/controller_memory.py                       # 1k, 5k, 10k (~10 min)
    .venv/bin/python bench/controller_memory.py --sizes 500,2000      # a quick look
    .venv/bin/python bench/controller_memory.py --kubeconfig DIR/kubeconfig --sizes 300,1000
        # the real control plane (scripts/kube-up DIR); kwok pods, replicas 1

It starts ``rollout sandbox up`` (unless ``--kubeconfig`` names a cluster) and, per size, a
fresh ``rollout controller --no-leader-elect`` as separate processes, as a user would.

How the settled world is made, fast: one prototype Rollout (``zzproto``, with its VirtualService
and DestinationRule) is brought to Healthy by a controller; its objects (Rollout spec and
status, ReplicaSet, VirtualService, DestinationRule) are then cloned from 8 threads with the
name and the pod-template hash substituted — exactly what the controller would have written,
without waiting for it to write 10,000 times. The ReplicaSets' pods are made ready by the
sandbox's workload simulator (or kube-controller-manager and kwok). The bench waits until
every ReplicaSet reports all its replicas available, then for each size (cumulative: the
Rollouts of the smaller size stay) starts a fresh controller and measures:

1. initial sync: from the process start to caches synced (``/readyz``) and to every Rollout
   reconciled once (``rollout_reconcile_duration_seconds_count`` on /metrics >= the number of
   Rollouts, queue empty);
2. RSS after sync (``VmRSS``) and the peak (``VmHWM``), from ``/proc/PID/status``, after a
   quiet ``--idle`` seconds; the slope between sizes in KB per Rollout (target <= 50);
3. API writes during the sync and during the idle window: the controller's own
   ``rollout_api_writes_total``, and, independently, every object of the bench namespace whose
   resourceVersion moved plus the Events created (target 0 for all).

The controller is stopped (SIGTERM) before the next size is created.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import ROLLOUT, app_objects, free_port, memory_kib, stop, wait_for

from rollout.api.manifest import parse_rollout
from rollout.cluster.access import (
    DESTINATION_RULES,
    EVENTS,
    NAMESPACES,
    REPLICA_SETS,
    ROLLOUTS,
    VIRTUAL_SERVICES,
    Conflict,
    Obj,
)
from rollout.cluster.kube import KubeAccess, load_api_client
from rollout.domain.revision import pod_template_hash

NS = "bench-memory"
PROTO = "zzproto"
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def app(name: str, replicas: int) -> tuple[Obj, Obj, Obj]:
    """``(VirtualService, DestinationRule, Rollout)`` of one idle app: a 20 % step and a 30 s
    pause, never reached while the Rollout stays at its first revision."""
    steps: list[Obj] = [{"setWeight": 20}, {"pause": {"duration": "30s"}}]
    return app_objects(
        name,
        steps,
        replicas=replicas,
        labels={"bench": "memory"},
        image="registry.example/app:v1",
        scale_down_delay=30,
    )


def revision_of(body: Obj) -> str:
    return pod_template_hash(parse_rollout(body).spec.template.wire())


def scrape(port: int) -> dict[str, float]:
    """Sums of each metric's samples (labels summed over)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.partition("{")[0]
        found[name] = found.get(name, 0.0) + float(value)
    return found


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class World:
    """The bench namespace: the prototype, its clones, and what the API says of them."""

    def __init__(self, kubeconfig: str, replicas: int, threads: int) -> None:
        self.kubeconfig = kubeconfig
        self.replicas = replicas
        self.threads = threads
        self.access = KubeAccess(load_api_client(kubeconfig), request_timeout=120)
        self._local = threading.local()
        self.created = 0  # clones app-0 .. app-(created-1)
        self.proto: dict[str, Any] = {}

    def _thread_access(self) -> KubeAccess:
        access = getattr(self._local, "access", None)
        if access is None:
            access = KubeAccess(load_api_client(self.kubeconfig), request_timeout=120)
            self._local.access = access
        return access

    def prototype(self, port_for: Callable[[], subprocess.Popen[bytes]]) -> None:
        """Create the prototype, let a controller settle it, and keep its settled objects."""
        access = self.access
        try:
            access.create(
                NAMESPACES,
                None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            )
        except Conflict:
            pass
        vs, dr, body = app(PROTO, self.replicas)
        access.create(VIRTUAL_SERVICES, NS, vs)
        access.create(DESTINATION_RULES, NS, dr)
        access.create(ROLLOUTS, NS, body)
        controller = port_for()
        try:

            def settled() -> bool:
                status = access.get(ROLLOUTS, NS, PROTO).get("status") or {}
                return status.get("phase") == "Healthy" and status.get("observedGeneration") == 1

            wait_for(settled, 120, "the prototype to be Healthy")
            time.sleep(2)  # any last write (conditions) lands
        finally:
            stop(controller)
        rollout = access.get(ROLLOUTS, NS, PROTO)
        owned = [
            rs
            for rs in access.list(REPLICA_SETS, NS)[0]
            if any(
                r.get("uid") == rollout["metadata"]["uid"]
                for r in rs["metadata"].get("ownerReferences") or []
            )
        ]
        if len(owned) != 1:
            raise SystemExit(f"the prototype has {len(owned)} ReplicaSets, not 1")
        rs = owned[0]
        for field in SERVER_FIELDS:
            rs["metadata"].pop(field, None)
        rs.pop("status", None)
        self.proto = {
            "revision": revision_of(rollout),
            "status": json.dumps(rollout["status"]),
            "rs": json.dumps(rs),
            "vs": json.dumps(access.get(VIRTUAL_SERVICES, NS, PROTO)["spec"]),
            "dr": json.dumps(access.get(DESTINATION_RULES, NS, PROTO)["spec"]),
        }

    def _clone(self, i: int) -> None:
        access = self._thread_access()
        name = f"app-{i}"
        vs, dr, body = app(name, self.replicas)
        revision = revision_of(body)

        def renamed(text: str) -> Any:
            return json.loads(text.replace(PROTO, name).replace(self.proto["revision"], revision))

        access.create(VIRTUAL_SERVICES, NS, {**vs, "spec": renamed(self.proto["vs"])})
        access.create(DESTINATION_RULES, NS, {**dr, "spec": renamed(self.proto["dr"])})
        created = access.create(ROLLOUTS, NS, body)
        rs = renamed(self.proto["rs"])
        rs["metadata"]["ownerReferences"][0]["uid"] = created["metadata"]["uid"]
        access.create(REPLICA_SETS, NS, rs)
        patch = {
            "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
            "status": renamed(self.proto["status"]),
        }
        access.patch_status(ROLLOUTS, NS, name, patch)

    def grow(self, total: int) -> float:
        """Clone up to ``total`` Rollouts; seconds taken."""
        started = time.perf_counter()
        with ThreadPoolExecutor(self.threads) as pool:
            list(pool.map(self._clone, range(self.created, total)))
        self.created = max(self.created, total)
        return time.perf_counter() - started

    def replica_sets_ready(self) -> bool:
        items, _ = self.access.list(REPLICA_SETS, NS)
        return len(items) >= self.created + 1 and all(
            (rs.get("status") or {}).get("availableReplicas", 0) == rs["spec"]["replicas"]
            for rs in items
        )

    def versions(self) -> dict[tuple[str, str], str]:
        """(plural, name) -> resourceVersion of every object the controller could write."""
        found = {}
        for res in (ROLLOUTS, REPLICA_SETS, VIRTUAL_SERVICES, DESTINATION_RULES):
            for obj in self.access.list(res, NS)[0]:
                meta = obj["metadata"]
                found[(res.plural, meta["name"])] = meta["resourceVersion"]
        return found

    def events(self) -> int:
        """Events the controller sent (not kube-controller-manager's, on a real cluster)."""
        return sum(
            1
            for e in self.access.list(EVENTS, NS)[0]
            if (e.get("source") or {}).get("component") == "rollout-controller"
            or e.get("reportingComponent") == "rollout-controller"
        )


def start_controller(kubeconfig: str, port: int, health: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                ROLLOUT,
                "controller",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                NS,
                "--workers",
                "4",
                "--no-leader-elect",
                "--metrics-port",
                str(port),
                "--health-port",
                str(health),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=out,
        )


def changed(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]) -> int:
    return sum(1 for key, rv in after.items() if before.get(key) != rv) + sum(
        1 for key in before if key not in after
    )


def measure(world: World, idle: float, log: Path) -> dict[str, float]:
    """Start a fresh controller on the settled world; its figures."""
    rollouts = world.created + 1
    before = world.versions()
    events_before = world.events()
    port, health = free_port(), free_port()
    started = time.monotonic()
    controller = start_controller(world.kubeconfig, port, health, log)
    try:
        wait_for(lambda: ready(health) or controller.poll() is not None, 300, "caches", 0.05)
        if controller.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise SystemExit(
                f"the controller exited ({controller.returncode}):\n" + "\n".join(tail)
            )
        caches = time.monotonic() - started

        def all_reconciled() -> bool:
            found = scrape(port)
            return (
                found.get("rollout_reconcile_duration_seconds_count", 0) >= rollouts
                and found.get("rollout_queue_depth", 1) == 0
            )

        wait_for(all_reconciled, 600, "every Rollout reconciled once", 0.1)
        synced = time.monotonic() - started
        at_sync = scrape(port)
        time.sleep(idle)
        after = scrape(port)
        memory = memory_kib(controller.pid)
    finally:
        stop(controller)
    return {
        "rollouts": rollouts,
        "caches_s": caches,
        "sync_s": synced,
        "rss_kb": memory["VmRSS"],
        "hwm_kb": memory["VmHWM"],
        "reconciles": after.get("rollout_reconcile_duration_seconds_count", 0),
        "writes_sync": at_sync.get("rollout_api_writes_total", 0),
        "writes_idle": after.get("rollout_api_writes_total", 0)
        - at_sync.get("rollout_api_writes_total", 0),
        "objects_changed": changed(before, world.versions()),
        "events": world.events() - events_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="Rollouts, comma-separated")
    parser.add_argument("--kubeconfig", help="an existing cluster (default: start a sandbox)")
    parser.add_argument("--replicas", type=int, help="per Rollout (default 2, 1 with a cluster)")
    parser.add_argument("--threads", type=int, default=8, help="for creating the objects")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds watched after sync")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    replicas = args.replicas or (1 if args.kubeconfig else 2)
    with tempfile.TemporaryDirectory() as workdir:
        log = Path(workdir) / "controller.log"
        sandbox = None
        try:
            if args.kubeconfig:
                kubeconfig = args.kubeconfig
            else:
                kubeconfig = str(Path(workdir) / "kubeconfig")
                sandbox = subprocess.Popen(
                    [ROLLOUT, "sandbox", "up", "--kubeconfig", kubeconfig],
                    stdout=subprocess.DEVNULL,
                )
                wait_for(Path(kubeconfig).exists, 30, "the sandbox")
            world = World(kubeconfig, replicas, args.threads)
            world.prototype(lambda: start_controller(kubeconfig, free_port(), free_port(), log))
            rows = []
            for size in sizes:
                took = world.grow(size - 1)  # with the prototype: ``size`` Rollouts
                wait_for(world.replica_sets_ready, 600, "every ReplicaSet ready", 1.0)
                print(f"created {size} Rollouts (+ RS, VS, DR) in {took:.0f} s", flush=True)
                row = measure(world, args.idle, log)
                rows.append(row)
                print(
                    f"  {row['rollouts']:.0f} rollouts: caches synced {row['caches_s']:.1f} s, "
                    f"all reconciled {row['sync_s']:.1f} s ({row['reconciles']:.0f} reconciles); "
                    f"RSS {row['rss_kb'] / 1024:.0f} MiB, peak {row['hwm_kb'] / 1024:.0f} MiB; "
                    f"writes: {row['writes_sync']:.0f} during sync, {row['writes_idle']:.0f} "
                    f"idle ({args.idle:.0f} s), objects changed {row['objects_changed']}, "
                    f"events {row['events']}",
                    flush=True,
                )
            where = f"cluster {kubeconfig}" if args.kubeconfig else "sandbox"
            print(f"\nreplicas {replicas}; {where}")
            print("rollouts  sync s  RSS MiB  peak MiB  writes  slope KB/rollout (RSS, peak)")
            for i, row in enumerate(rows):
                slope = ""
                if i:
                    prev = rows[i - 1]
                    n = row["rollouts"] - prev["rollouts"]
                    slope = (
                        f"{(row['rss_kb'] - prev['rss_kb']) / n:.1f}, "
                        f"{(row['hwm_kb'] - prev['hwm_kb']) / n:.1f}"
                    )
                writes = row["writes_sync"] + row["writes_idle"] + row["objects_changed"]
                print(
                    f"{row['rollouts']:8.0f}  {row['sync_s']:6.1f}  {row['rss_kb'] / 1024:7.0f}  "
                    f"{row['hwm_kb'] / 1024:8.0f}  {writes + row['events']:6.0f}  {slope}"
                )
        finally:
            stop(sandbox)
            if sandbox is None and args.kubeconfig:
                try:
                    KubeAccess(load_api_client(args.kubeconfig)).delete(NAMESPACES, None, NS)
                except Exception as error:  # noqa: BLE001 - best effort cleanup
                    print(f"could not delete namespace {NS}: {error}", file=sys.stderr)


if __name__ == "__main__":
    main()
