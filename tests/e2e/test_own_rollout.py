"""A user's own Rollout on `rollout sandbox up`, with `rollout controller` running beside it.

Both run as the separate processes a user starts; the test applies its objects and reads the
outcome only through the API (the official client), as `kubectl` would. On the kube backend
(``tests.e2e.backend``) the cluster is the suite's, the mesh a `rollout sandbox traffic`
process, and the test works in a fresh namespace that it deletes at the end.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from rollout import demo
from rollout.sandbox.prometheus import INSTALL_HINT
from tests.e2e import backend
from tests.integration.mesh_helpers import MeshProcess
from tests.integration.sandbox_helpers import client_from
from tests.oracle_watch import OracleWatch, WriteLog

pytestmark = pytest.mark.e2e

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


Cluster = tuple[Path, str, client.ApiClient, str]


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """`rollout sandbox up` with traffic and Prometheus (on the kube backend: the suite's
    cluster and `rollout sandbox traffic`), and `rollout controller` on it; the test's client
    (its writes are the user's), the safety oracle on the test's namespace, and that
    namespace."""
    if shutil.which("prometheus") is None:
        pytest.fail(INSTALL_HINT)
    sandbox: subprocess.Popen[bytes] | None = None
    mesh: MeshProcess | None = None
    controller = None
    try:
        if backend.on_kube():
            kubeconfig = backend.kubeconfig()
            namespace = backend.fresh_namespace("demo-own")
            mesh = MeshProcess(kubeconfig, rps=100, prometheus=True).start()
            assert mesh.prometheus_url is not None
            prometheus = mesh.prometheus_url
        else:
            kubeconfig = tmp_path / "kubeconfig"
            namespace = demo.NAMESPACE
            prometheus = f"http://127.0.0.1:{free_port()}"
            sandbox = subprocess.Popen(
                [
                    ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig),
                    "--prometheus-port", prometheus.rsplit(":", 1)[1], "--rps", "100",
                ],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while not kubeconfig.exists():  # written once the API and Prometheus answer
                assert sandbox.poll() is None, "rollout sandbox up exited"
                assert time.monotonic() < deadline, "rollout sandbox up did not start"
                time.sleep(0.1)
        controller = subprocess.Popen(
            [
                ROLLOUT, "controller", "--kubeconfig", str(kubeconfig), "--no-leader-elect",
                "--metrics-port", "0", "--health-port", "0", "--prometheus-url", prometheus,
                "--namespace", namespace,
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        writes = WriteLog()
        api_client = client_from(str(kubeconfig))
        writes.tap(api_client)
        watch = OracleWatch(api_client, [namespace], writes).start()
        try:
            yield kubeconfig, prometheus, api_client, namespace
            violations = watch.verify(request.node.nodeid)
            assert not violations, OracleWatch.failure(request.node.nodeid, violations)
        finally:
            if backend.on_kube():
                watch.stop()
                core: Any = client.CoreV1Api(api_client)
                try:
                    core.delete_namespace(namespace)
                except client.ApiException as error:
                    assert error.status == 404, error
                backend.wait_gone(api_client, namespace)
    finally:
        if controller is not None:
            assert stop(controller) == 0
        if mesh is not None:
            mesh.stop()
        if sandbox is not None:
            assert stop(sandbox) == 0


def status_of(api: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    obj: Any = api.get_namespaced_custom_object(
        "rollout.dev", "v1alpha1", namespace, "rollouts", demo.APP
    )
    status: dict[str, Any] = obj.get("status") or {}
    return status


def wait_status(
    api: client.CustomObjectsApi, namespace: str, check: Any, timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(api, namespace)
        if check(status):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.25)  # polling the API with a deadline


def test_a_users_bad_canary_is_rolled_back_by_the_controller_process(
    cluster: Cluster,
) -> None:
    _, _, api_client, ns = cluster
    # The client's typed methods take models; plain dicts are what a manifest is.
    core: Any = client.CoreV1Api(api_client)
    custom: Any = client.CustomObjectsApi(api_client)
    scenario = demo.SCENARIOS["bad-canary"]
    core.create_namespace({"metadata": {"name": ns}})
    for service in demo.services(scenario, ns):
        core.create_namespaced_service(ns, service)
    istio = ("networking.istio.io", "v1beta1", ns)
    custom.create_namespaced_custom_object(*istio, "destinationrules", demo.destination_rule(ns))
    for vs in demo.virtual_services(scenario, ns):
        custom.create_namespaced_custom_object(*istio, "virtualservices", vs)
    # The user's manifest, as it would sit in Git.
    manifest = yaml.safe_load(yaml.safe_dump(demo.rollout(scenario, ns)))
    custom.create_namespaced_custom_object("rollout.dev", "v1alpha1", ns, "rollouts", manifest)
    v1 = wait_status(custom, ns, lambda s: s.get("phase") == "Healthy", 60)["stableRevision"]
    time.sleep(2)  # v1 serves a little traffic first, so the gate compares with data
    manifest["spec"]["template"] = demo.template(2, dict(demo.BAD))
    custom.patch_namespaced_custom_object(
        "rollout.dev", "v1alpha1", ns, "rollouts", demo.APP,
        {"spec": {"template": manifest["spec"]["template"]}},
    )  # fmt: skip
    status = wait_status(custom, ns, lambda s: s.get("phase") == "Degraded", 90)
    assert status["abortReason"] == "AnalysisFailed"
    assert status["stableRevision"] == v1
    live: Any = custom.get_namespaced_custom_object(*istio, "virtualservices", demo.APP)
    weights = {d["destination"]["subset"]: d["weight"] for d in live["spec"]["http"][0]["route"]}
    assert weights == {"stable": 100, "canary": 0}
    failed = [c for c in status["analysis"]["checks"] if c["phase"] == "Failed"]
    assert failed and failed[0]["measurements"][-1]["value"] > demo.MAX_ERROR_RATE
