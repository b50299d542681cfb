"""``rollout demo --cluster-kubeconfig``: the demo on an existing cluster.

The existing cluster is the suite's on the kube backend (``tests.e2e.backend``), else a
``rollout sandbox up --no-prometheus --rps 0`` process this module starts (no mesh of its own:
the demo brings its own, as on a real control plane). The demo must work in a namespace of its
own, delete it on exit and leave every other namespace as it found it.
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from rollout import demo
from rollout.sandbox.prometheus import INSTALL_HINT, free_port
from tests.e2e import backend
from tests.integration.sandbox_helpers import client_from

pytestmark = pytest.mark.e2e

ROLLOUT = str(Path(sys.executable).parent / "rollout")
ISTIO = ("networking.istio.io", "v1beta1")


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The kubeconfig of an existing cluster."""
    if backend.on_kube():
        yield backend.kubeconfig()
        return
    kubeconfig = tmp_path_factory.mktemp("existing") / "kubeconfig"
    sandbox = subprocess.Popen(
        [ROLLOUT, "sandbox", "up", "--kubeconfig", str(kubeconfig), "--no-prometheus"]
        + ["--rps", "0"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not kubeconfig.exists():
            assert sandbox.poll() is None, "rollout sandbox up exited"
            assert time.monotonic() < deadline, "rollout sandbox up did not start"
            time.sleep(0.1)
        yield kubeconfig
    finally:
        sandbox.terminate()
        assert sandbox.wait(timeout=20) == 0


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    if shutil.which("prometheus") is None:
        pytest.fail(INSTALL_HINT)
    return subprocess.run(
        [ROLLOUT, "demo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def snapshot(api_client: client.ApiClient, namespace: str) -> dict[str, str]:
    """{kind/name: resourceVersion} of what a demo could touch in ``namespace``."""
    core: Any = client.CoreV1Api(api_client)
    apps: Any = client.AppsV1Api(api_client)
    custom: Any = client.CustomObjectsApi(api_client)
    found = {f"ns/{namespace}": core.read_namespace(namespace).metadata.resource_version}
    assert core.read_namespace(namespace).metadata.deletion_timestamp is None
    for svc in core.list_namespaced_service(namespace).items:
        found[f"svc/{svc.metadata.name}"] = svc.metadata.resource_version
    for rs in apps.list_namespaced_replica_set(namespace).items:
        found[f"rs/{rs.metadata.name}"] = rs.metadata.resource_version
    for plural in ("virtualservices", "destinationrules"):
        for obj in custom.list_namespaced_custom_object(*ISTIO, namespace, plural)["items"]:
            found[f"{plural}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    for obj in custom.list_namespaced_custom_object(
        "rollout.dev", "v1alpha1", namespace, "rollouts"
    )["items"]:
        found[f"rollouts/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
    return found


def test_the_demo_uses_a_namespace_of_its_own_and_leaves_the_cluster_clean(
    existing: Path,
) -> None:
    api_client = client_from(str(existing))
    core: Any = client.CoreV1Api(api_client)
    custom: Any = client.CustomObjectsApi(api_client)
    created: list[str] = []
    # `demo` is taken (someone's, or an earlier demo's still terminating): the demo must not
    # adopt it. Another namespace holds a mesh of its own with the same names as the demo's.
    try:
        core.create_namespace({"metadata": {"name": demo.NAMESPACE}})
        created.append(demo.NAMESPACE)
    except client.ApiException as error:
        assert error.status == 409, error
    other = backend.fresh_namespace("other")
    core.create_namespace({"metadata": {"name": other}})
    created.append(other)
    try:
        scenario = demo.SCENARIOS["bad-canary"]
        for svc in demo.services(scenario, other):
            core.create_namespaced_service(other, svc)
        custom.create_namespaced_custom_object(
            *ISTIO, other, "destinationrules", demo.destination_rule(other)
        )
        for vs in demo.virtual_services(scenario, other):
            custom.create_namespaced_custom_object(*ISTIO, other, "virtualservices", vs)
        if demo.NAMESPACE in created:
            core.create_namespaced_service(demo.NAMESPACE, demo.services(scenario)[0])
        before = {ns: snapshot(api_client, ns) for ns in (demo.NAMESPACE, other)}

        done = run_demo("--scenario", "bad-canary", "--cluster-kubeconfig", str(existing))

        assert done.returncode == 0, done.stdout + done.stderr
        assert "bad-canary: RolledBack" in done.stdout, done.stdout
        used = re.search(r"^namespace (\S+) created", done.stdout, re.MULTILINE)
        assert used, done.stdout
        assert re.fullmatch(r"demo-[a-z0-9]{5}", used[1]), used[1]
        backend.wait_gone(api_client, used[1])
        assert {ns: snapshot(api_client, ns) for ns in (demo.NAMESPACE, other)} == before
    finally:
        for ns in created:
            core.delete_namespace(ns)


def test_an_existing_namespace_given_is_refused_and_left_alone(existing: Path) -> None:
    api_client = client_from(str(existing))
    core: Any = client.CoreV1Api(api_client)
    taken = backend.fresh_namespace("taken")
    core.create_namespace({"metadata": {"name": taken}})
    try:
        core.create_namespaced_service(taken, demo.services(demo.SCENARIOS["bad-canary"], taken)[0])
        before = snapshot(api_client, taken)
        done = run_demo("--cluster-kubeconfig", str(existing), "--namespace", taken, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"rollout demo: namespace {taken} already exists; "
            "the demo only uses a namespace it creates"
        ]
        assert snapshot(api_client, taken) == before
    finally:
        core.delete_namespace(taken)


class NotKubernetes(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is not a Kubernetes API: 404 for everything."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"404 page not found")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def not_kubernetes() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotKubernetes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig_for(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not: [yaml", "kubeconfig"),
        ("apiVersion: v1\nkind: Config\n", "kubeconfig"),
        ("UNREACHABLE", "cannot list services"),
        ("NOT_KUBERNETES", "does not serve services"),
    ],
    ids=["missing", "not-yaml", "no-context", "unreachable", "not-kubernetes"],
)
def test_a_bad_cluster_kubeconfig_is_one_line_and_exit_1(
    tmp_path: Path, not_kubernetes: str, content: str | None, expected: str
) -> None:
    path = tmp_path / "kubeconfig"
    if content == "UNREACHABLE":
        content = kubeconfig_for(f"http://127.0.0.1:{free_port()}")
    elif content == "NOT_KUBERNETES":
        content = kubeconfig_for(not_kubernetes)
    if content is not None:
        path.write_text(content)
    started = time.monotonic()
    done = run_demo("--scenario", "good-canary", "--cluster-kubeconfig", str(path), timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rollout demo: "), done.stderr
    assert expected in lines[0], lines[0]
    assert "created" not in done.stdout, done.stdout
    assert time.monotonic() - started < 30


def test_the_sandbox_options_do_not_mix_with_an_existing_cluster(tmp_path: Path) -> None:
    done = run_demo(
        "--cluster-kubeconfig", str(tmp_path / "k"), "--kubeconfig", str(tmp_path / "w")
    )
    assert done.returncode == 4 and len(done.stderr.splitlines()) == 1, done.stderr
    assert not (tmp_path / "w").exists()
    done = run_demo("--namespace", "mine")
    assert done.returncode == 4, done.stderr
    assert done.stderr == "rollout demo: --namespace needs --cluster-kubeconfig\n"
