"""``rollout sandbox traffic``: the simulated mesh as a separate process, a client of the API.

The cluster here is a ``rollout sandbox up --rps 0`` process (no traffic of its own); the mesh
reads it only through the Kubernetes API from the kubeconfig, as it would read a real control
plane (``mesh_kubeconfig`` is the one fixture to point elsewhere). Objects go in through the
official client; the assertions read the exported ``istio_requests_total`` (and, in one test,
a real Prometheus answering PromQL).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout.sandbox.prometheus import INSTALL_HINT, free_port
from tests.integration.mesh_helpers import ROLLOUT, MeshProcess, promql, requests_by
from tests.integration.sandbox_helpers import apps_v1, core_v1, custom_objects

pytestmark = pytest.mark.integration

HASH = "rollout.dev/pod-template-hash"
ERROR_RATE = "sandbox.rollout.dev/error-rate"
DEADLINE = 40.0
WINDOW = 1000  # requests per measured window: a 20 % share has a 1.3 % standard deviation
RPS = 300.0


@pytest.fixture
def mesh_kubeconfig(sandbox_kubeconfig: Path) -> Path:
    """The cluster the mesh reads: any kubeconfig works (today the sandbox's)."""
    return sandbox_kubeconfig


# -- objects -----------------------------------------------------------------------------------


def replicaset(revision: str, replicas: int = 2, error_rate: str | None = None) -> dict[str, Any]:
    labels = {
        "app": "web",
        HASH: revision,
        "service.istio.io/canonical-name": "web",
        "service.istio.io/canonical-revision": revision,
    }
    annotations = {"sandbox.rollout.dev/ready-after": "0"}
    if error_rate is not None:
        annotations[ERROR_RATE] = error_rate
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"web-{revision}", "labels": {HASH: revision}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", HASH: revision}},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "containers": [{"name": "app", "image": "example.com/web:1"}],
                    # kwok's fake nodes are tainted so that only pods meant for them land there
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                },
            },
        },
    }


def route(stable: int, canary: int) -> dict[str, Any]:
    return {
        "name": "primary",
        "route": [
            {"destination": {"host": "web", "subset": "stable"}, "weight": stable},
            {"destination": {"host": "web", "subset": "canary"}, "weight": canary},
        ],
    }


def virtual_service(http: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {"hosts": ["web"], "http": http},
    }


def create_app(
    api: client.ApiClient,
    namespace: str,
    *,
    stable_replicas: int = 2,
    canary_replicas: int = 2,
    canary_error_rate: str = "0.5",
    http: list[dict[str, Any]] | None = None,
) -> None:
    """Service ``web``, ReplicaSets ``web-stable`` and ``web-canary`` (5xx at
    ``canary_error_rate``), a DestinationRule with their subsets, a VirtualService (80/20)."""
    core_v1(api).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]},
        },
    )
    apps = apps_v1(api)
    apps.create_namespaced_replica_set(namespace, replicaset("stable", stable_replicas))
    apps.create_namespaced_replica_set(
        namespace, replicaset("canary", canary_replicas, canary_error_rate)
    )
    objects = custom_objects(api)
    objects.create_namespaced_custom_object(
        "networking.istio.io",
        "v1beta1",
        namespace,
        "destinationrules",
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "web"},
            "spec": {
                "host": "web",
                "subsets": [
                    {"name": "stable", "labels": {HASH: "stable"}},
                    {"name": "canary", "labels": {HASH: "canary"}},
                ],
            },
        },
    )
    objects.create_namespaced_custom_object(
        "networking.istio.io",
        "v1beta1",
        namespace,
        "virtualservices",
        virtual_service(http if http is not None else [route(80, 20)]),
    )


def set_weights(api: client.ApiClient, namespace: str, stable: int, canary: int) -> None:
    custom_objects(api).patch_namespaced_custom_object(
        "networking.istio.io",
        "v1beta1",
        namespace,
        "virtualservices",
        "web",
        {"spec": {"http": [route(stable, canary)]}},
    )


# -- measuring ---------------------------------------------------------------------------------


def window(
    mesh: MeshProcess, namespace: str, size: int = WINDOW
) -> tuple[Counter[str], Counter[str]]:
    """(requests, 5xx) by destination_workload over the next ``size`` requests or more."""
    before, errors_before = requests_by(mesh.metrics_url, namespace)
    deadline = time.monotonic() + DEADLINE
    while True:
        now, errors_now = requests_by(mesh.metrics_url, namespace)
        if sum((now - before).values()) >= size:
            return now - before, errors_now - errors_before
        assert time.monotonic() < deadline, f"no traffic: {dict(now)} (mesh said {mesh.lines})"
        time.sleep(0.2)


def share(counts: Counter[str], workload: str) -> float:
    return counts[workload] / sum(counts.values())


def until_window(
    mesh: MeshProcess,
    namespace: str,
    holds: Callable[[Counter[str], Counter[str]], bool],
    what: str,
) -> tuple[Counter[str], Counter[str]]:
    """The first window in which ``holds`` (the mesh follows a change within the deadline)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        counts, errors = window(mesh, namespace)
        if holds(counts, errors):
            return counts, errors
        assert time.monotonic() < deadline, f"{what}: last window {dict(counts)}"


# -- traffic -----------------------------------------------------------------------------------


def test_shares_follow_the_weights_and_the_bad_revision_fails_its_share(
    mesh_kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    with MeshProcess(mesh_kubeconfig, rps=RPS) as mesh:
        create_app(api_client, namespace)  # after the start: seen through the watch
        counts, errors = until_window(
            mesh, namespace, lambda c, _: set(c) == {"web-stable", "web-canary"}, "both serve"
        )
        counts, errors = window(mesh, namespace)
        assert share(counts, "web-canary") == pytest.approx(0.2, abs=0.05), counts
        assert errors["web-stable"] == 0, errors
        assert errors["web-canary"] / counts["web-canary"] == pytest.approx(0.5, abs=0.05)

        set_weights(api_client, namespace, 50, 50)
        until_window(
            mesh,
            namespace,
            lambda c, _: abs(share(c, "web-canary") - 0.5) <= 0.06,
            "50/50 not followed",
        )
        set_weights(api_client, namespace, 100, 0)
        counts, errors = until_window(
            mesh, namespace, lambda c, _: c["web-canary"] == 0, "100/0 not followed"
        )
        assert errors["web-stable"] == 0


def test_objects_present_at_start_are_routed_by_serving_replicas(
    mesh_kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    """No subsets: the Service's pods share the host by serving replicas (3:1), and a
    revision scaled to 0 gets nothing. The objects exist before the mesh starts (its list)."""
    create_app(
        api_client,
        namespace,
        stable_replicas=3,
        canary_replicas=1,
        canary_error_rate="0.25",
        http=[{"route": [{"destination": {"host": "web"}}]}],
    )
    with MeshProcess(mesh_kubeconfig, rps=RPS) as mesh:
        counts, errors = until_window(
            mesh,
            namespace,
            lambda c, _: abs(share(c, "web-canary") - 0.25) <= 0.05,
            "3:1 by replicas",
        )
        assert errors["web-canary"] / counts["web-canary"] == pytest.approx(0.25, abs=0.05)
        apps_v1(api_client).patch_namespaced_replica_set(
            "web-canary", namespace, {"spec": {"replicas": 0}}
        )
        until_window(mesh, namespace, lambda c, _: c["web-canary"] == 0, "scaled to 0")


def test_a_deleted_virtual_service_gets_no_more_traffic(
    mesh_kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    create_app(api_client, namespace)
    with MeshProcess(mesh_kubeconfig, rps=RPS) as mesh:
        window(mesh, namespace)
        custom_objects(api_client).delete_namespaced_custom_object(
            "networking.istio.io", "v1beta1", namespace, "virtualservices", "web"
        )
        deadline = time.monotonic() + DEADLINE
        while True:
            before, _ = requests_by(mesh.metrics_url, namespace)
            time.sleep(1.0)  # a quiet second: no request at all while 300/s would be due
            after, _ = requests_by(mesh.metrics_url, namespace)
            if after == before:
                break
            assert time.monotonic() < deadline, "traffic went on after the delete"


def test_a_real_prometheus_answers_promql_on_the_meshs_metrics(
    mesh_kubeconfig: Path, api_client: client.ApiClient, namespace: str
) -> None:
    if shutil.which("prometheus") is None:
        pytest.fail(INSTALL_HINT)
    create_app(api_client, namespace)
    mesh = MeshProcess(mesh_kubeconfig, rps=RPS, prometheus=True).start()
    try:
        assert mesh.prometheus_url is not None
        selector = f'destination_workload_namespace="{namespace}",reporter="destination"'
        deadline = time.monotonic() + DEADLINE
        while True:
            totals = {
                r["metric"]["destination_workload"]: float(r["value"][1])
                for r in promql(
                    mesh.prometheus_url,
                    f"sum by (destination_workload) (istio_requests_total{{{selector}}})",
                )
            }
            if set(totals) == {"web-stable", "web-canary"} and sum(totals.values()) >= WINDOW:
                break
            assert time.monotonic() < deadline, f"not enough traffic in Prometheus: {totals}"
            time.sleep(0.5)
        assert totals["web-canary"] / sum(totals.values()) == pytest.approx(0.2, abs=0.05)
        ratio = promql(
            mesh.prometheus_url,
            f'sum(istio_requests_total{{{selector},destination_workload="web-canary",'
            f'response_code=~"5.."}}) / sum(istio_requests_total{{{selector},'
            'destination_workload="web-canary"})',
        )
        assert float(ratio[0]["value"][1]) == pytest.approx(0.5, abs=0.05)
    finally:
        mesh.stop()
    with pytest.raises(OSError):  # Prometheus went with it
        promql(mesh.prometheus_url, "up")


# -- bad input: one line, exit 1 ---------------------------------------------------------------


def run_traffic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLOUT, "sandbox", "traffic", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def assert_one_line_failure(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rollout sandbox traffic: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "simulated Istio metrics" not in done.stdout


def test_a_missing_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    done = run_traffic("--kubeconfig", str(missing), "--no-prometheus")
    assert_one_line_failure(done, str(missing))


def test_a_malformed_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    for text in ("clusters: [\n", "apiVersion: v1\nkind: Config\n", "just a string\n"):
        broken = tmp_path / "kubeconfig"
        broken.write_text(text)
        assert_one_line_failure(run_traffic("--kubeconfig", str(broken), "--no-prometheus"))


def test_an_unreachable_api_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    started = time.monotonic()
    done = run_traffic("--kubeconfig", str(kubeconfig), "--no-prometheus")
    assert_one_line_failure(done, f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30


def test_without_prometheus_binary_traffic_says_how_to_install_it(mesh_kubeconfig: Path) -> None:
    done = run_traffic("--kubeconfig", str(mesh_kubeconfig), env={"PATH": "/nonexistent"})
    assert_one_line_failure(done, INSTALL_HINT)


def test_a_metrics_port_in_use_is_one_line_and_exit_1(mesh_kubeconfig: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_traffic(
            "--kubeconfig", str(mesh_kubeconfig), "--no-prometheus", "--metrics-port", str(port)
        )
    assert_one_line_failure(done, f"127.0.0.1:{port}")
