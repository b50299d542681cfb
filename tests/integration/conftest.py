"""Integration fixtures: a real ``rollout sandbox up`` process and the official client.

The sandbox runs as the command a user runs, in its own process; tests talk to it only over
HTTP through the official ``kubernetes`` client, configured from the kubeconfig it writes.
"""

from __future__ import annotations

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
from tests.integration.sandbox_helpers import client_from, core_v1

STARTUP_TIMEOUT = 30.0
# The console script installed beside this interpreter: the command a user runs.
ROLLOUT = str(Path(sys.executable).parent / "rollout")


@pytest.fixture(scope="session")
def sandbox_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
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
def api_client(sandbox_kubeconfig: Path) -> client.ApiClient:
    return client_from(str(sandbox_kubeconfig))


@pytest.fixture
def namespace(api_client: client.ApiClient) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core_v1(api_client).create_namespace({"metadata": {"name": name}})
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
