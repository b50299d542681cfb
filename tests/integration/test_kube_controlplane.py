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


def running_in(workdir: Path) -> list[int]:
    """PIDs of processes whose command line names ``workdir`` (supervisor and components)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and alive(int(proc.name)):
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(workdir).encode() in cmdline:
                found.append(int(proc.name))
    return found


def test_kube_up_twice_on_one_dir_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """Once, a second kube-up on a running DIR waited 120 s for an etcd that could not lock its
    data, deleted the first one's kubeconfig and supervisor.pid, and kube-down then said
    "stopped" while the first control plane ran on, orphaned."""
    workdir = tmp_path / "a dir"
    up = [str(REPO / "scripts" / "kube-up"), str(workdir)]
    assert subprocess.run(up, capture_output=True, text=True).returncode == 0
    pids = components(workdir)
    config = (workdir / "kubeconfig").read_text()
    try:
        started = time.monotonic()
        again = subprocess.run(up, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert time.monotonic() - started < 10
        assert "already runs" in again.stderr and "Traceback" not in again.stderr
        assert (workdir / "kubeconfig").read_text() == config
        assert components(workdir) == pids
        assert all(alive(pid) for pid in pids.values())
    finally:
        down = subprocess.run(
            [str(REPO / "scripts" / "kube-down"), str(workdir)], capture_output=True, text=True
        )
    assert down.returncode == 0, down.stderr
    wait_gone(list(pids.values()))
    assert running_in(workdir) == []


def test_ctrl_c_of_kube_up_while_it_starts_stops_what_it_started(tmp_path: Path) -> None:
    """Once, Ctrl-C printed a KeyboardInterrupt traceback and the control plane went on
    starting in the background, unannounced."""
    workdir = tmp_path / "kube"
    up = subprocess.Popen(
        [str(REPO / "scripts" / "kube-up"), str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while not (workdir / "logs" / "kube-apiserver.log").exists():
            assert time.monotonic() < deadline, "kube-up never started kube-apiserver"
            time.sleep(0.1)
        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        _, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
        controlplane.stop_background(workdir)
    assert up.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    wait_gone(running_in(workdir))
    assert not (workdir / "kubeconfig").exists()


def test_a_killed_test_session_leaves_no_temporary_folder(tmp_path: Path) -> None:
    """The suite's control plane lives in a temporary folder (63 MB of etcd data): the
    supervisor removes it when the session it serves died without stopping it."""
    workdir = tmp_path / "kube"
    session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        controlplane.start_background(workdir, parent_pid=session.pid, remove_dir=True)
        pids = components(workdir)
        session.kill()
        session.wait()
        wait_gone(list(pids.values()))
        deadline = time.monotonic() + 30
        while workdir.exists():
            assert time.monotonic() < deadline, sorted(p.name for p in workdir.iterdir())
            time.sleep(0.1)
    finally:
        if session.poll() is None:
            session.kill()
        controlplane.stop_background(workdir)


def test_a_component_dying_mid_run_is_reported_with_its_name(tmp_path: Path) -> None:
    """The reason the suite's tests then fail with (tests/conftest.py) names the component."""
    workdir = tmp_path / "kube"
    config = controlplane.start_background(workdir)
    pids = components(workdir)
    try:
        assert controlplane.failure(config) is None
        os.kill(pids["kube-apiserver"], signal.SIGKILL)
        wait_gone(list(pids.values()))
        reason = controlplane.failure(config)
        assert reason is not None and "kube-apiserver exited" in reason
    finally:
        controlplane.stop_background(workdir)


def test_prometheus_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """``rollout sandbox traffic``/``demo`` or a test session killed with SIGKILL (or SIGTERM)
    once left its Prometheus running for good."""
    pid_file = tmp_path / "prometheus.pid"
    script = (
        "import sys, time\n"
        "from rollout.sandbox.prometheus import PrometheusServer\n"
        "server = PrometheusServer(['127.0.0.1:1'], port=0)\n"
        "server.start()\n"
        f"open({str(pid_file)!r}, 'w').write(str(server.process.pid))\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert owner.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        prometheus = int(pid_file.read_text())
        assert alive(prometheus)
        owner.kill()
        owner.wait()
        wait_gone([prometheus], timeout=30)
    finally:
        if owner.poll() is None:
            owner.kill()
