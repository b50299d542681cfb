"""Start-up speed of the operator CLI, run by hand (never as a test).

    .venv/bin/python bench/cli_speed.py            # 10 runs of each command
    .venv/bin/python bench/cli_speed.py --runs 20

Median wall time of the installed console script, each run a fresh process:

1. ``rollout --help`` (target < 0.3 s): imports neither ``kubernetes`` nor
   ``prometheus_api_client``;
2. ``rollout status NAME`` on a Healthy rollout (target < 0.8 s), against a ``rollout sandbox
   up`` that this script starts; the Rollout's status is written directly (no controller).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLLOUT = str(Path(sys.executable).parent / "rollout")

ROLLOUT_MANIFEST = {
    "apiVersion": "rollout.dev/v1alpha1",
    "kind": "Rollout",
    "metadata": {"name": "reviews"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "reviews"}},
        "template": {
            "metadata": {"labels": {"app": "reviews"}},
            "spec": {"containers": [{"name": "app", "image": "example.com/reviews:1"}]},
        },
        "trafficRouting": {
            "istio": {
                "virtualServices": [{"name": "reviews"}],
                "stableService": "reviews-stable",
                "canaryService": "reviews-canary",
            }
        },
        "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    },
}


def median_seconds(command: list[str], runs: int, env: dict[str, str]) -> tuple[float, int]:
    times = []
    code = 0
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        code = done.returncode
    return statistics.median(times), code


def healthy_rollout(kubeconfig: Path) -> None:
    from rollout.cluster.access import ROLLOUTS
    from rollout.cluster.kube import KubeAccess, load_api_client

    access = KubeAccess(load_api_client(str(kubeconfig)))
    created = access.create(ROLLOUTS, "default", ROLLOUT_MANIFEST)
    generation = created["metadata"].get("generation", 1)
    access.patch_status(
        ROLLOUTS,
        "default",
        "reviews",
        {"status": {"phase": "Healthy", "observedGeneration": generation, "message": "bench"}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}

    help_time, code = median_seconds([ROLLOUT, "--help"], args.runs, env)
    verdict = "ok" if help_time < 0.3 else "SLOW"
    print(f"rollout --help:          median {help_time:.3f} s (target < 0.3 s) {verdict}")

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        sandbox = subprocess.Popen(
            [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not kubeconfig.exists():
                if time.monotonic() > deadline or sandbox.poll() is not None:
                    raise SystemExit("rollout sandbox up did not start")
                time.sleep(0.05)
            healthy_rollout(kubeconfig)
            command = [ROLLOUT, "status", "reviews", "--kubeconfig", str(kubeconfig)]
            status_time, code = median_seconds(command, args.runs, env)
            verdict = "ok" if status_time < 0.8 and code == 0 else "SLOW"
            print(
                f"rollout status (Healthy): median {status_time:.3f} s (target < 0.8 s, "
                f"exit {code}) {verdict}"
            )
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=10)


if __name__ == "__main__":
    main()
