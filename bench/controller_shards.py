"""Benchmark of controller sharding on the sandbox, run by hand (never as a test).

    .venv/bin/python bench/controller_shards.py                  # 1,000 rollouts
    .venv/bin/python bench/controller_shards.py --rollouts 200   # a quick look

It starts ``rollout sandbox up`` and creates N Rollouts (each with its VirtualService and
DestinationRule), half labelled ``shard=a`` and half ``shard=b``, each walking three weights
with 1 s pauses. Then, in one run on the same sandbox:

1. one controller (no selector) takes all N from a template change to promoted: wall time;
2. it stops, and two controller processes, ``--shard-selector shard=a`` and
   ``--shard-selector shard=b``, each with leader election on its own Lease, take all N through
   a second template change: wall time, and the ratio to (1).

Then it checks that no Rollout was reconciled by both shards, from what the API recorded and
what each process exposes: every Event a controller records names the process
(``reportingInstance``, the identity it holds its Lease with), so the Events of each Rollout
during (2) must all come from its own shard's leader; and each shard's ``/metrics`` has a
``rollout_canary_weight`` series for exactly the Rollouts it reconciled (disjoint, and together
all N). It prints each shard's reconcile count and peak RSS, and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from harness import ROLLOUT, STEPS, create_app, free_port, rss_peak_mib, stop, wait_for

from rollout.cluster.access import (
    EVENTS,
    LEASES,
    NAMESPACES,
    ROLLOUTS,
    NotFound,
)
from rollout.cluster.kube import KubeAccess, load_api_client
from rollout.cluster.selector import parse
from rollout.controller.leader import lease_name_for

NS = "bench"
SHARDS = {"a": "shard=a", "b": "shard=b"}


def shard_of(i: int) -> str:
    return "a" if i % 2 == 0 else "b"


def objects(access: KubeAccess, i: int) -> None:
    create_app(access, NS, f"app-{i}", STEPS, labels={"shard": shard_of(i)})


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def series(text: str, name: str) -> list[tuple[str, float]]:
    """(labels text, value) of every sample of ``name``."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            found.append((head[len(name) :], float(value)))
    return found


def reconciled(text: str) -> set[str]:
    return {
        labels.split('rollout="', 1)[1].split('"', 1)[0]
        for labels, _ in series(text, "rollout_canary_weight")
    }


def controller(kubeconfig: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            ROLLOUT,
            "controller",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NS,
            "--workers",
            "4",
            "--metrics-port",
            str(port),
            "--health-port",
            "0",
            "--log-level",
            "warning",
            *extra,
        ]
    )


def progress(access: KubeAccess, n: int, image: str) -> float:
    """Change every template to ``image``; seconds until all N are promoted."""
    started = time.perf_counter()
    for i in range(n):
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        access.patch(ROLLOUTS, NS, f"app-{i}", patch)

    def promoted() -> bool:
        items, _ = access.list(ROLLOUTS, NS)
        return len(items) == n and all(
            (r.get("status") or {}).get("phase") == "Healthy"
            and (r.get("status") or {}).get("currentStepIndex") == len(STEPS)
            and r["metadata"].get("generation") == r["status"].get("observedGeneration")
            for r in items
        )

    wait_for(promoted, 1800, f"every rollout to be promoted to {image}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    n = int(parser.parse_args().rollouts)
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as workdir:
        kubeconfig = Path(workdir) / "kubeconfig"
        sandbox = subprocess.Popen(
            [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig), "--no-prometheus"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(kubeconfig.exists, 30, "the sandbox")
            access = KubeAccess(load_api_client(str(kubeconfig)))
            access.create(NAMESPACES, None, {"metadata": {"name": NS}})
            for i in range(n):
                objects(access, i)

            # 1. One controller for all.
            single = controller(kubeconfig, free_port(), "--no-leader-elect")
            processes.append(single)

            def healthy() -> bool:
                items, _ = access.list(ROLLOUTS, NS)
                phases = [str((r.get("status") or {}).get("phase")) for r in items]
                return phases.count("Healthy") == n

            wait_for(healthy, 600, "the first revisions")
            one = progress(access, n, "v2")
            single_rss = rss_peak_mib(single.pid)
            stop(single)

            # 2. Two shards, each with its own Lease.
            ports = {name: free_port() for name in SHARDS}
            shards = {
                name: controller(
                    kubeconfig,
                    ports[name],
                    "--shard-selector",
                    selector,
                    "--leader-elect",
                    "--lease-namespace",
                    NS,
                )
                for name, selector in SHARDS.items()
            }
            processes += shards.values()
            leases = {name: lease_name_for(str(parse(s))) for name, s in SHARDS.items()}

            def holders() -> dict[str, str]:
                found = {}
                for name, lease in leases.items():
                    try:
                        spec = access.get(LEASES, NS, lease).get("spec") or {}
                    except NotFound:
                        continue
                    if spec.get("holderIdentity"):
                        found[name] = str(spec["holderIdentity"])
                return found

            wait_for(lambda: len(holders()) == len(SHARDS), 60, "both shards to lead")
            leaders = holders()
            _, since = access.list(EVENTS, NS)
            two = progress(access, n, "v3")

            # Who reconciled what.
            texts = {name: metrics(port) for name, port in ports.items()}
            by_rollout: dict[str, set[str]] = defaultdict(set)
            events = 0
            items, _ = access.list(EVENTS, NS)
            for event in items:
                involved = event.get("involvedObject") or {}
                if involved.get("kind") != "Rollout":
                    continue
                if int(event["metadata"]["resourceVersion"]) <= int(since):
                    continue
                by_rollout[str(involved.get("name"))].add(str(event.get("reportingInstance")))
                events += 1
            failures = []
            for i in range(n):
                name, expected = f"app-{i}", {leaders[shard_of(i)]}
                if by_rollout.get(name) != expected:
                    failures.append(f"{name}: Events from {sorted(by_rollout.get(name, ()))}")
            seen = {name: reconciled(text) for name, text in texts.items()}
            both = seen["a"] & seen["b"]
            if both:
                failures.append(f"in both shards' metrics: {sorted(both)[:5]}")
            if seen["a"] | seen["b"] != {f"app-{i}" for i in range(n)}:
                failures.append("the shards' metrics do not cover every Rollout")
            for name in SHARDS:
                mine = {f"app-{i}" for i in range(n) if shard_of(i) == name}
                if seen[name] != mine:
                    failures.append(f"shard {name} reconciled other Rollouts than its own")

            print(f"{n} rollouts x {len(STEPS)} steps (3 weights, 1 s pauses), 4 workers each:")
            print(f"  one controller:  {one:.1f} s to all promoted, peak RSS {single_rss:.0f} MiB")
            print(f"  two shards:      {two:.1f} s to all promoted ({two / one:.2f} x one)")
            for name, text in texts.items():
                count = sum(v for _, v in series(text, "rollout_reconcile_duration_seconds_count"))
                print(
                    f"  shard {SHARDS[name]}: {len(seen[name])} rollouts, {count:.0f} reconciles, "
                    f"peak RSS {rss_peak_mib(shards[name].pid):.0f} MiB"
                )
            print(
                f"  reconciled by both shards: {len(both)} "
                f"({events} Events of {len(by_rollout)} Rollouts each from its own shard's leader"
                f"{'' if not failures else ': NO'})"
            )
            for failure in failures[:20]:
                print(f"  FAILED: {failure}")
            return 1 if failures else 0
        finally:
            for process in processes:
                stop(process)
            stop(sandbox)


if __name__ == "__main__":
    sys.exit(main())
