"""``rollout sandbox up`` with traffic and a real Prometheus: the split shows in Istio's metrics.

Objects go in through the official client; the simulator inside the sandbox routes requests as
the VirtualService says and the sandbox's Prometheus scrapes the counts every second.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout.sandbox.prometheus import INSTALL_HINT, free_port
from tests.integration.sandbox_helpers import apps_v1, client_from, core_v1, custom_objects

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sandbox_only(reason="tests `rollout sandbox up` itself (its own process)"),
]

ROLLOUT = str(Path(sys.executable).parent / "rollout")
HASH = "rollout.dev/pod-template-hash"
NS = "traffic"
DEADLINE = 25.0


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if shutil.which("prometheus") is None:
        pytest.fail(INSTALL_HINT)
    kubeconfig = tmp_path / "kubeconfig"
    port = free_port()
    process = subprocess.Popen(
        [
            ROLLOUT,
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-port",
            str(port),
            "--rps",
            "200",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not kubeconfig.exists():
        if process.poll() is not None:
            raise RuntimeError(f"rollout sandbox up exited: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("rollout sandbox up did not write its kubeconfig in time")
        time.sleep(0.05)
    try:
        yield kubeconfig, f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=15)
        assert process.returncode == 0
        assert f"prometheus at http://127.0.0.1:{port}" in out
    with pytest.raises(OSError):  # Prometheus went with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)


def replicaset(revision: str, annotations: dict[str, str]) -> dict[str, Any]:
    labels = {"app": "web", HASH: revision}
    return {
        "metadata": {"name": f"web-{revision}", "labels": {HASH: revision}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web", HASH: revision}},
            "template": {
                "metadata": {
                    "labels": {
                        **labels,
                        "service.istio.io/canonical-name": "web",
                        "service.istio.io/canonical-revision": revision,
                    },
                    "annotations": {"sandbox.rollout.dev/ready-after": "0", **annotations},
                },
                "spec": {"containers": [{"name": "app", "image": "example.com/web:1"}]},
            },
        },
    }


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        result: list[dict[str, Any]] = json.load(reply)["data"]["result"]
        return result


def test_weights_and_error_rate_show_in_istio_requests_total(
    sandbox: tuple[Path, str],
) -> None:
    kubeconfig, prometheus = sandbox
    api = client_from(str(kubeconfig))
    core_v1(api).create_namespace({"metadata": {"name": NS}})
    core_v1(api).create_namespaced_service(
        NS,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]},
        },
    )
    apps_v1(api).create_namespaced_replica_set(NS, replicaset("good", {}))
    apps_v1(api).create_namespaced_replica_set(
        NS, replicaset("bad", {"sandbox.rollout.dev/error-rate": "0.5"})
    )
    objects = custom_objects(api)
    objects.create_namespaced_custom_object(
        "networking.istio.io",
        "v1beta1",
        NS,
        "destinationrules",
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "web"},
            "spec": {
                "host": "web",
                "subsets": [
                    {"name": "stable", "labels": {HASH: "good"}},
                    {"name": "canary", "labels": {HASH: "bad"}},
                ],
            },
        },
    )
    objects.create_namespaced_custom_object(
        "networking.istio.io",
        "v1beta1",
        NS,
        "virtualservices",
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {
                "hosts": ["web"],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {"destination": {"host": "web", "subset": "stable"}, "weight": 80},
                            {"destination": {"host": "web", "subset": "canary"}, "weight": 20},
                        ],
                    }
                ],
            },
        },
    )

    selector = f'destination_workload_namespace="{NS}",reporter="destination"'
    deadline = time.monotonic() + DEADLINE
    while True:
        totals = {
            r["metric"]["destination_canonical_revision"]: float(r["value"][1])
            for r in query(
                prometheus,
                f"sum by (destination_canonical_revision) (istio_requests_total{{{selector}}})",
            )
        }
        errors = {
            r["metric"]["destination_canonical_revision"]: float(r["value"][1])
            for r in query(
                prometheus,
                "sum by (destination_canonical_revision) "
                f'(istio_requests_total{{{selector},response_code=~"5.."}})',
            )
        }
        total = sum(totals.values())
        if set(totals) == {"good", "bad"} and total >= 1000:
            break
        assert time.monotonic() < deadline, f"not enough traffic in Prometheus: {totals}"
        time.sleep(0.5)
    assert totals["bad"] / total == pytest.approx(0.2, abs=0.05)
    assert errors.get("good", 0.0) == 0.0
    assert errors["bad"] / totals["bad"] == pytest.approx(0.5, abs=0.1)


def test_without_prometheus_binary_up_says_how_to_install_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    done = subprocess.run(
        [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": str(tmp_path)},  # no prometheus on it
    )
    assert done.returncode != 0
    assert INSTALL_HINT in done.stderr
    assert not kubeconfig.exists()
