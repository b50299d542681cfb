"""Integration fixtures: a real ``rollout sandbox up`` process and the official client.

The sandbox runs as the command a user runs, in its own process; tests talk to it only over
HTTP through the official ``kubernetes`` client, configured from the kubeconfig it writes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.controller_helpers import Cluster, ControllerHandle, Recorder
from tests.integration.sandbox_helpers import (
    ROOT_CA,
    client_from,
    core_v1,
    eventually,
    on_kube,
    slow,
)
from tests.kube import KUBECONFIG_ENV
from tests.oracle_watch import OracleWatch, WriteLog

STARTUP_TIMEOUT = 30.0
# The console script installed beside this interpreter: the command a user runs.
ROLLOUT = str(Path(sys.executable).parent / "rollout")


@pytest.fixture(scope="session")
def sandbox_kubeconfig(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The API server's kubeconfig: a ``rollout sandbox up`` process, or on ``--backend kube``
    the real control plane the session started (``tests/conftest.py``)."""
    if request.config.getoption("--backend") == "kube":
        yield Path(os.environ[KUBECONFIG_ENV])
        return
    kubeconfig = tmp_path_factory.mktemp("sandbox") / "kubeconfig"
    process = subprocess.Popen(
        [
            ROLLOUT,
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--no-prometheus",
            "--rps",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not kubeconfig.exists():
        if process.poll() is not None:
            errors = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"rollout sandbox up exited: {errors}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("rollout sandbox up did not write its kubeconfig in time")
        time.sleep(0.05)
    try:
        yield kubeconfig
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def test_writes() -> WriteLog:
    """Every write the tests' own client makes (the safety oracle tells them from others')."""
    return WriteLog()


@pytest.fixture(scope="session")
def api_client(sandbox_kubeconfig: Path, test_writes: WriteLog) -> client.ApiClient:
    api = client_from(str(sandbox_kubeconfig))
    test_writes.tap(api)
    return api


@pytest.fixture
def namespace(api_client: client.ApiClient) -> str:
    """A fresh namespace for one test.

    On a real cluster it is returned once its controllers have filled it (the
    ``kube-root-ca.crt`` ConfigMap, the ``default`` ServiceAccount), so that a test sees a
    settled namespace: what it lists or watches then changes only by what the test does.
    """
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = core_v1(api_client)
    core.create_namespace({"metadata": {"name": name}})
    if on_kube():

        def settled() -> None:
            assert [c.metadata.name for c in core.list_namespaced_config_map(name).items] == [
                ROOT_CA
            ]
            assert "default" in {
                s.metadata.name for s in core.list_namespaced_service_account(name).items
            }

        eventually(settled, timeout=slow())
    return name


# -- the controller tests ----------------------------------------------------------------------


@pytest.fixture
def cluster(api_client: client.ApiClient, namespace: str) -> Cluster:
    """The test namespace's objects, through the official client."""
    return Cluster(api_client, namespace)


@pytest.fixture
def controller(sandbox_kubeconfig: Path, namespace: str) -> Iterator[ControllerHandle]:
    """A ``Controller`` running in-process on the test namespace (2 workers)."""
    handle = ControllerHandle(sandbox_kubeconfig, namespace)
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


# The fixtures that run a controller: a test using one is judged by the safety oracle.
CONTROLLERS = (
    "controller",
    "gated_controller",
    "replicas",
    "recording",
    "proxied_controller",
    "lease_breaker",
)
# Modules whose tests may start a controller in their body (``ControllerHandle``, a
# ``rollout controller`` process): every test of theirs on a namespace is judged too.
CONTROLLER_MODULES = ("test_controller_", "test_cli_operator", "test_kube_")
COMPONENT = "rollout-controller"


def _runs_a_controller(request: pytest.FixtureRequest) -> bool:
    if any(name in request.fixturenames for name in CONTROLLERS):
        return True
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    return "namespace" in request.fixturenames and module.startswith(CONTROLLER_MODULES)


def _controller_traces(api: client.ApiClient, namespace: str) -> list[str]:
    """What a controller left in ``namespace``: its Events, its Lease (by their names)."""
    core = core_v1(api)
    found = [
        f"Event {e.reason} on {e.involved_object.kind} {e.involved_object.name}"
        for e in core.list_namespaced_event(namespace).items
        if (e.source and e.source.component == COMPONENT) or e.reporting_component == COMPONENT
    ]
    leases = client.CoordinationV1Api(api).list_namespaced_lease(namespace).items
    names = [lease.metadata.name for lease in leases if lease.metadata is not None]
    # rollout-controller, or a shard's rollout-controller-<hash>
    found += [f"Lease {name}" for name in names if name and name.startswith(COMPONENT)]
    return found


@pytest.fixture(autouse=True)
def safety_oracle(request: pytest.FixtureRequest) -> Iterator[None]:
    """The safety oracle (tests/oracle.py) on every test that runs a controller.

    It watches the test's namespace (and every namespace the test creates) while the test
    runs, and fails the test at teardown on any violation of the five invariants, listed
    readably; ``tests/oracle_known.py`` is the only allowlist. A test that runs a controller
    is recognised by its fixtures (``CONTROLLERS``) or its module (``CONTROLLER_MODULES``); any
    other test on a namespace is checked at teardown for traces of a controller (its Events,
    a Lease), so that a controller started some new way cannot escape the oracle unnoticed.
    """
    if not _runs_a_controller(request):
        if "namespace" not in request.fixturenames:
            yield
            return
        api = request.getfixturevalue("api_client")
        namespace = request.getfixturevalue("namespace")
        yield
        traces = _controller_traces(api, namespace)
        if traces:
            pytest.fail(
                f"{request.node.nodeid} ran a controller without the safety oracle "
                f"({', '.join(traces[:3])}): add its fixture to CONTROLLERS in "
                "tests/integration/conftest.py",
                pytrace=False,
            )
        return
    api = request.getfixturevalue("api_client")
    namespace = request.getfixturevalue("namespace")
    for name in CONTROLLERS:  # set up first, so torn down after the verdict below
        if name in request.fixturenames:
            request.getfixturevalue(name)
    watch = OracleWatch(api, [namespace], request.getfixturevalue("test_writes")).start()
    yield
    violations = watch.verify(request.node.nodeid)
    if violations:
        pytest.fail(OracleWatch.failure(request.node.nodeid, violations), pytrace=False)


@pytest.fixture
def recorder(api_client: client.ApiClient, namespace: str) -> Iterator[Callable[..., Recorder]]:
    """Start a ``Recorder`` on the test namespace (and any others named); stopped at teardown."""
    started: list[Recorder] = []

    def start(*others: str) -> Recorder:
        rec = Recorder(api_client, [namespace, *others]).start()
        started.append(rec)
        return rec

    try:
        yield start
    finally:
        for rec in started:
            rec.stop()
