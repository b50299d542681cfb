"""``rollout get NAME --watch`` as an operator watches it: the installed command in a real
pseudo-terminal (``tests/integration/terminal.py``), against the sandbox (or ``--backend kube``)
with a controller whose gate reads a real Prometheus scraping simulated Istio metrics.

What is checked is the screen a person sees (a VT100 emulator applies the redraws): the status
with its reason, ``Step: i/n`` with the step's action, the desired and actual weights, the
images per role, the revisions' ReplicaSets (and Pods where the cluster has them), each check's
last value with unit and threshold and the reason of its verdict, the Events; and that it is
redrawn when the rollout changes (``rollout promote``), without being asked again.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollout.cli import app
from rollout.sandbox.istio_metrics import IstioMetrics, Traffic, Workload
from rollout.sandbox.prometheus import PrometheusServer
from tests.integration.conftest import ROLLOUT
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.prometheus_fixtures import start_prometheus, wait_for_data
from tests.integration.sandbox_helpers import on_kube, slow
from tests.integration.terminal import Terminal

pytestmark = pytest.mark.integration

GATE: dict[str, Any] = {
    "interval": "3s",
    "prometheus": {"scrapeInterval": "1s", "timeout": "2s"},
    "checks": [
        {"name": "error-rate", "errorRate": {"max": 0.05, "minRequests": 10}},
        {"name": "latency", "latencyP99": {"maxMs": 250, "minRequests": 10}},
    ],
}
STEPS: list[Any] = [{"setWeight": 20}, {"analysis": {"count": 2}}, {"pause": {}}]
LONG_ANALYSIS = {"analysis": {"count": 20}}


class GateWorld:
    def __init__(self, traffic: Traffic, prometheus: PrometheusServer) -> None:
        self.traffic = traffic
        self.prometheus = prometheus


@pytest.fixture(scope="module")
def gate_world() -> Iterator[GateWorld]:
    metrics = IstioMetrics()
    exporter = f"127.0.0.1:{metrics.serve(0)}"
    traffic = Traffic(metrics, tick=0.05)
    traffic.run(until=time.monotonic() + 600)  # stops by itself after the module at the latest
    server = start_prometheus([exporter])
    try:
        warm_up = Workload("warm-up", "warm-up", "w1", rps=50)
        traffic.set(warm_up)
        wait_for_data(server.url, [warm_up], namespace="warm-up")
        yield GateWorld(traffic, server)
    finally:
        server.stop()
        traffic.stop()
        metrics.close()


@pytest.fixture
def gated_controller(
    sandbox_kubeconfig: Path, namespace: str, gate_world: GateWorld
) -> Iterator[ControllerHandle]:
    handle = ControllerHandle(
        sandbox_kubeconfig, namespace, prometheus_url=gate_world.prometheus.url
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


def deploy_v1(cluster: Cluster, world: GateWorld, namespace: str, steps: list[Any]) -> str:
    """v1 healthy, with traffic; its revision."""
    manifest = rollout_manifest(steps=steps, replicas=2)
    manifest["spec"]["analysis"] = GATE
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_rollout(manifest)
    healthy = cluster.wait_status(lambda s: s.get("phase") == "Healthy", timeout=slow())
    stable = str(healthy["stableRevision"])
    world.traffic.set(Workload(namespace, "reviews", stable, rps=100, latency_p99_ms=60))
    return stable


def update_to_v2(cluster: Cluster, world: GateWorld, namespace: str, stable: str) -> str:
    """v2 (p99 ~80 ms, no errors, with traffic) on its way through the steps; its revision."""
    template = cluster.rollout()["spec"]["template"]
    template["spec"]["containers"][0]["image"] = "example.com/reviews:2"
    cluster.set_template(template)
    status = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, stable))
    canary = str(status["canaryRevision"])
    world.traffic.set(Workload(namespace, "reviews", canary, rps=100, latency_p99_ms=80))
    return canary


def watch_piped(kubeconfig: Path, namespace: str, timeout: str) -> subprocess.Popen[bytes]:
    """``rollout get reviews --watch`` with its output to a pipe, in an ASCII-only encoding."""
    return subprocess.Popen(
        [ROLLOUT, "get", "reviews", "--watch", "--timeout", timeout, "-n", namespace]
        + ["--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: a line read first is not kept from communicate()
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )


def rollout_age(screen: str) -> str:
    found = re.search(r"⟳ reviews\s+Rollout\s+॥ Paused\s+(\S+)", screen)
    assert found, screen
    return found.group(1)


def has(screen: str, *cells: str) -> None:
    """Fail, showing the screen, unless a line of it holds ``cells`` (``row``)."""
    assert row(screen, *cells), f"no line with {cells} on the screen:\n{screen}"


def row(screen: str, *cells: str) -> bool:
    """Whether a line of ``screen`` holds ``cells`` in this order, separated by blanks."""
    pattern = r"\s+".join(cells)
    return any(re.search(pattern, line) for line in screen.splitlines())


def test_get_watch_on_a_terminal_shows_the_canary_and_redraws_on_promote(
    cluster: Cluster,
    gate_world: GateWorld,
    namespace: str,
    gated_controller: ControllerHandle,
    sandbox_kubeconfig: Path,
) -> None:
    stable = deploy_v1(cluster, gate_world, namespace, STEPS)
    canary = update_to_v2(cluster, gate_world, namespace, stable)

    def paused_and_measured(s: dict[str, Any]) -> bool:
        # at the pause, the canary's background run has measured every check
        checks = (s.get("analysis") or {}).get("checks") or []
        paused = s.get("phase") == "Paused" and s.get("currentStepIndex") == 2
        return paused and len(checks) == 2 and all(c.get("successful") for c in checks)

    cluster.wait_status(paused_and_measured, timeout=60)
    command = [ROLLOUT, "get", "reviews", "--watch", "-n", namespace]
    terminal = Terminal([*command, "--kubeconfig", str(sandbox_kubeconfig)])
    try:
        screen = terminal.wait_for(
            lambda s: "Events" in s, timeout=20, what="the first frame, down to the Events"
        )
        has(screen, "Status:", "॥ Paused", re.escape("(CanaryPauseStep)"))
        has(screen, "Strategy:", "Canary")
        has(screen, "Step:", "3/3", re.escape("(pause until promoted)"))
        has(screen, "SetWeight:", "20")
        has(screen, "ActualWeight:", "20", re.escape("(stable 80)"))
        has(screen, "Images:", re.escape("example.com/reviews:1 (stable)"))
        has(screen, re.escape("example.com/reviews:2 (canary)"))
        has(screen, "Desired:", "2")
        # the tree: the Rollout, then each revision's ReplicaSet with its role and counts
        has(screen, "⟳ reviews", "Rollout", "॥ Paused")
        has(screen, f"reviews-{canary}", "ReplicaSet", "✔ Healthy", r"\S+", "canary,")
        has(screen, f"reviews-{stable}", "ReplicaSet", "✔ Healthy", r"\S+", "stable,")
        has(screen, "desired:2 ready:2 available:2")
        if on_kube():  # kwok's Pods, under their ReplicaSet
            has(screen, f"reviews-{canary}-\\w+", "Pod", "✔ Running", r"\S+", "ready:1/1")
        # the checks: last value with unit and threshold, counts, the reason of the verdict
        has(screen, "Checks:", "gate ◌ Running", re.escape("(background analysis)"))
        has(screen, "error-rate", "◌ Running", r"0 \(max 0\.05\)", "[1-9]", "0", "0", "0")
        has(screen, "latency", "◌ Running", r"\d+(\.\d+)? ms \(max 250\)", "[1-9]", "0")
        has(screen, r"└ Successful: p99 \d+(\.\d+)? ms \(maxMs 250(\.0)?\)")
        has(screen, "└ Successful: error rate 0.0000", re.escape("(max 0.05)"))
        has(screen, "Normal", "RolloutStarted", "new revision")
        # Nothing changes while paused, yet the ages move on: redrawn from the watch caches.
        first_age = rollout_age(screen)
        terminal.wait_for(lambda s: rollout_age(s) != first_age, timeout=5, what="ages ticking")

        # The operator promotes: the same screen is redrawn, the canary becomes stable.
        promoted = CliRunner().invoke(
            app, ["promote", "reviews", "-n", namespace, "--kubeconfig", str(sandbox_kubeconfig)]
        )
        assert promoted.exit_code == 0, promoted.output
        screen = terminal.wait_for(
            lambda s: (
                row(s, "Status:", "✔ Healthy")
                and row(s, re.escape("example.com/reviews:2 (stable)"))
            ),
            timeout=slow(),
            what="the promoted rollout",
        )
        has(screen, "Step:", "3/3", re.escape("(complete)"))
        assert not row(screen, re.escape("example.com/reviews:1 ("))
        has(screen, f"reviews-{canary}", "ReplicaSet", "✔ Healthy", r"\S+", "stable,")
        assert screen.count("Name:") == 1  # redrawn in place, not appended
        # Ctrl-C ends it quietly, the cursor shown again.
        assert terminal.interrupt() == 130
        assert terminal.raw.rstrip().endswith(b"\x1b[?25h")
        assert b"Traceback" not in terminal.raw
    finally:
        terminal.close()


def test_get_watch_without_a_terminal_prints_a_frame_per_change_in_ascii(
    cluster: Cluster,
    gate_world: GateWorld,
    namespace: str,
    gated_controller: ControllerHandle,
    sandbox_kubeconfig: Path,
) -> None:
    """Piped, with an output encoding that has no room for the icons: whole frames in ASCII,
    separated by ``---``, one per change (ages ticking print none); an abort mid-analysis
    shows the checks that were measuring as Stopped, never Running."""
    stable = deploy_v1(cluster, gate_world, namespace, [*STEPS[:1], LONG_ANALYSIS])
    # Nothing changes while the rollout is healthy: 3 s of watching is one frame.
    at_rest = watch_piped(sandbox_kubeconfig, namespace, "3s")
    out, err = at_rest.communicate(timeout=30)
    assert at_rest.returncode == 0, err.decode()
    (frame,) = out.decode("ascii").split("\n---\n")
    assert "Status:          OK Healthy" in frame
    assert "Images:          example.com/reviews:1 (stable)" in frame
    assert "Checks:  none running (error-rate, latency)" in frame

    canary = update_to_v2(cluster, gate_world, namespace, stable)

    def measuring(s: dict[str, Any]) -> bool:
        checks = (s.get("analysis") or {}).get("checks") or []
        return len(checks) == 2 and all(
            c.get("successful") and c["phase"] == "Running" for c in checks
        )

    cluster.wait_status(measuring, timeout=60)
    process = watch_piped(sandbox_kubeconfig, namespace, "8s")
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "no first frame within 30 s"
        first = process.stdout.readline()  # the first frame is written at once: it is all here
        assert first.startswith(b"Name:"), first
        aborted = CliRunner().invoke(
            app, ["abort", "reviews", "-n", namespace, "--kubeconfig", str(sandbox_kubeconfig)]
        )
        assert aborted.exit_code == 0, aborted.output
        cluster.wait_status(lambda s: s.get("phase") == "Degraded", timeout=slow())
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    frames = (first + out).decode("ascii").split("\n---\n")
    assert len(frames) >= 2
    assert re.search(r"error-rate\s+\.\. Running\s+0 \(max 0\.05\)", frames[0]), frames[0]
    last = frames[-1]
    assert "Status:          XX Degraded (RolloutAborted)" in last
    assert "Step:          2/2 (analysis x20, aborted)" in last
    assert "SetWeight:     0" in last
    checks = last.split("Checks:")[1].split("Events")[0]  # (Pods may be Running, on kube)
    assert not re.search(r"\bRunning\b", checks), last
    assert re.search(r"error-rate\s+-- Stopped\s+0 \(max 0\.05\)", last), last
    assert f"`--+ reviews-{canary}" in last and f"`--+ reviews-{stable}" in last
    assert re.search(r"Warning\s+RolloutAborted\s+rollback to stable", last), last


@pytest.mark.parametrize(
    ("locale", "unicode"),
    [
        ({"LANG": "C"}, False),
        ({"LC_ALL": "POSIX"}, False),
        ({}, False),
        ({"LANG": "C.UTF-8"}, True),
    ],
)
def test_get_in_the_c_locale_draws_in_ascii(
    cluster: Cluster,
    namespace: str,
    sandbox_kubeconfig: Path,
    locale: dict[str, str],
    unicode: bool,
) -> None:
    """A C or POSIX locale (or none) says the terminal may not show UTF-8: Python writes UTF-8
    there anyway (PEP 538/540), so the screen's icons are chosen from the locale too."""
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LC_")
        and k not in ("LANG", "LANGUAGE", "PYTHONUTF8", "PYTHONIOENCODING")
    }
    done = subprocess.run(
        [ROLLOUT, "get", "reviews", "-n", namespace, "--kubeconfig", str(sandbox_kubeconfig)],
        capture_output=True,
        env={**environment, **locale},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    screen = done.stdout.decode("utf-8")
    assert screen.isascii() is not unicode, screen
    if unicode:
        has(screen, "⟳ reviews", "Rollout")
    else:
        has(screen, "@ reviews", "Rollout", re.escape("?? Unknown"))
