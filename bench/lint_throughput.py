"""Throughput of ``rollout lint``: manifests per second, in-process and as a command.

Generates ``--count`` varied valid Rollouts (canary, blue-green and mirror; subset- and
host-level splits; built-in and templateRef checks) plus one AnalysisTemplate per five Rollouts,
in one file per Rollout spread over nested directories, some files holding a template and an
Istio VirtualService as well. Then lints the directory with ``run_lint`` in this process and once
with the ``rollout lint`` command, and prints manifests/second and wall time for each.

    .venv/bin/python bench/lint_throughput.py --count 300
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from rollout.lint import run_lint

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_EVERY = 5
ENTRY_POINT = "from rollout.cli import main; main()"


def template(index: int, namespace: str) -> dict[str, Any]:
    query = (
        'sum(rate(istio_requests_total{destination_service_name="{{args.service}}",'
        'destination_canonical_revision="{{canary.revision}}",response_code=~"5.."}'
        "[{{interval}}]))"
    )
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"errors-{index}", "namespace": namespace},
        "spec": {
            "args": [{"name": "service"}, {"name": "window", "value": "1m"}],
            "query": query,
            "max": 0.5 + index % 3,
        },
    }


def strategy(index: int) -> dict[str, Any]:
    kind = index % 3
    if kind == 0:
        steps: list[dict[str, Any]] = [{"setWeight": w} for w in (5, 10, 25, 50)[: 2 + index % 3]]
        steps += [
            {"pause": {"duration": f"{1 + index % 5}m"}},
            {"analysis": {"count": 1 + index % 4}},
            {
                "setHeaderRoute": {
                    "name": "testers",
                    "match": [{"headers": {"x-t": {"exact": "1"}}}],
                }
            },
            {"setMirror": {"percent": 10 * (1 + index % 9)}},
            {"pause": {}},
        ]
        return {"canary": {"steps": steps}}
    if kind == 1:
        return {
            "blueGreen": {
                "previewReplicaCount": 1 + index % 3,
                "prePromotionAnalysis": {"count": 2},
                "postPromotionAnalysis": {},
            }
        }
    return {"mirror": {"percent": 50 + index % 50, "duration": "5m"}}


def traffic(name: str, index: int) -> dict[str, Any]:
    istio: dict[str, Any] = {"virtualServices": [{"name": name, "routes": ["primary"]}]}
    if index % 2:
        istio["destinationRule"] = {
            "name": name,
            "stableSubset": "stable",
            "canarySubset": "canary",
        }
    else:
        istio["stableService"] = f"{name}-stable"
        istio["canaryService"] = f"{name}-canary"
    return {"istio": istio}


def rollout(index: int, namespace: str) -> dict[str, Any]:
    name = f"svc-{index}"
    checks: list[dict[str, Any]] = [
        {"name": "error-rate", "errorRate": {"max": 0.01, "maxIncreaseOverStable": 0.005}},
        {"name": "latency", "latencyP99": {"maxMs": 200 + index}},
    ]
    ref = {"name": f"errors-{index // TEMPLATE_EVERY}", "args": {"service": name}}
    checks.append({"name": "custom", "templateRef": ref})
    container = {"name": "app", "image": f"example.com/{name}:1.{index}.0"}
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1 + index % 5,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
            "trafficRouting": traffic(name, index),
            "analysis": {
                "interval": "30s",
                "prometheus": {"address": "http://prometheus.istio-system:9090"},
                "checks": checks,
            },
            "strategy": strategy(index),
        },
    }


def virtual_service(index: int, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": f"svc-{index}", "namespace": namespace},
        "spec": {"hosts": [f"svc-{index}"], "http": [{"name": "primary", "route": []}]},
    }


def generate(root: Path, count: int) -> int:
    """Write ``count`` Rollouts and their templates under ``root``; return the manifest count."""
    manifests = 0
    for index in range(count):
        namespace = f"team-{index // (TEMPLATE_EVERY * 4)}"
        docs: list[dict[str, Any]] = [rollout(index, namespace)]
        if index % TEMPLATE_EVERY == 0:
            docs.append(template(index // TEMPLATE_EVERY, namespace))
            docs.append(virtual_service(index, namespace))
        manifests += sum(d["apiVersion"].startswith("rollout.dev/") for d in docs)
        path = root / namespace / f"svc-{index}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return manifests


def in_process(root: Path) -> float:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_lint([root])
    elapsed = time.perf_counter() - start
    if code != 0:
        sys.exit(f"in-process lint failed ({code}):\n{out.getvalue()}{err.getvalue()}")
    return elapsed


def as_command(root: Path) -> float:
    script = Path(sys.executable).with_name("rollout")
    # The installed script; without one, the same entry point run by this Python.
    command = [str(script)] if script.exists() else [sys.executable, "-c", ENTRY_POINT]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "lint", str(root)], capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"rollout lint failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=300, help="Rollouts to generate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lint-bench-") as tmp:
        root = Path(tmp)
        manifests = generate(root, args.count)
        print(f"{manifests} manifests ({args.count} Rollouts) in {root}")
        for label, measure in (("in-process run_lint", in_process), ("rollout lint", as_command)):
            seconds = measure(root)
            print(f"{label:>20}: {manifests / seconds:8.0f} manifests/s, {seconds:.3f} s wall")


if __name__ == "__main__":
    main()
