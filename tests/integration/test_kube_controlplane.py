"""``scripts/kube-up`` / ``scripts/kube-down``: the real control plane as a user starts it.

Each test starts its own control plane (about 8 s once built) besides the session's, and checks
that every component it started is gone afterwards: on ``kube-down``, on SIGTERM to the
supervisor, and when the process it serves dies (the test session, killed with SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.sandbox_helpers import client_from, core_v1
from tests.kube import controlplane

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z"


def wait_gone(pids: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


def components(workdir: Path) -> dict[str, int]:
    pids: dict[str, int] = json.loads((workdir / "pids.json").read_text())
    assert COMPONENTS <= set(pids), pids
    return pids


def test_kube_up_serves_a_cluster_and_kube_down_stops_every_component(tmp_path: Path) -> None:
    workdir = tmp_path / "kube"
    up = subprocess.run(
        [str(REPO / "scripts" / "kube-up"), str(workdir)], capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={workdir / 'kubeconfig'}" in up.stdout
    pids = components(workdir)
    api = client_from(str(workdir / "kubeconfig"))
    nodes = core_v1(api).list_node().items
    assert len(nodes) == controlplane.NODES
    crds = subprocess.run(
        ["kubectl", "--kubeconfig", str(workdir / "kubeconfig"), "get", "crd", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in ("virtualservices.networking.istio.io", "rollouts.rollout.dev"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{name}" in crds

    down = subprocess.run(
        [str(REPO / "scripts" / "kube-down"), str(workdir)], capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    wait_gone(list(pids.values()))
    assert not (workdir / "kubeconfig").exists()
    again = subprocess.run(
        [str(REPO / "scripts" / "kube-down"), str(workdir)], capture_output=True, text=True
    )
    assert again.returncode == 1
    assert "no control plane runs" in again.stderr


def test_sigterm_to_the_supervisor_stops_every_component(tmp_path: Path) -> None:
    workdir = tmp_path / "kube"
    controlplane.start_background(workdir)
    pids = components(workdir)
    os.kill(pids["supervisor"], signal.SIGTERM)
    wait_gone(list(pids.values()))


def test_the_control_plane_ends_with_the_process_it_serves(tmp_path: Path) -> None:
    """A test session killed with SIGKILL leaves nothing running behind it."""
    workdir = tmp_path / "kube"
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        controlplane.start_background(workdir, parent_pid=session.pid)
        pids = components(workdir)
        session.kill()
        session.wait()
        wait_gone(list(pids.values()))
    finally:
        if session.poll() is None:
            session.kill()
        controlplane.stop_background(workdir)


def test_a_component_that_cannot_start_is_a_clear_failure(tmp_path: Path) -> None:
    """A port already taken by something else: the supervisor reports which component failed."""
    workdir = tmp_path / "kube"
    workdir.mkdir()
    (workdir / "etcd").mkdir(mode=0o700)
    (workdir / "etcd" / "member").write_text("not a directory etcd can use")
    with pytest.raises(RuntimeError, match="etcd"):
        controlplane.start_background(workdir, timeout=120)
    assert not (workdir / "pids.json").exists()
