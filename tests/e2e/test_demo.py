"""``rollout demo`` end to end, through the public command (sandbox, Prometheus, controller).

Each scenario runs the installed ``rollout`` in a subprocess and checks its exit status and the
timeline it writes with ``--json``. On the kube backend (``tests.e2e.backend``) the demo runs on
the suite's cluster with ``--cluster-kubeconfig`` in a fresh namespace, which must be gone after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rollout import demo as demo_module
from rollout.sandbox.prometheus import INSTALL_HINT
from tests.e2e import backend
from tests.integration.sandbox_helpers import client_from
from tests.oracle_watch import OracleWatch

pytestmark = pytest.mark.e2e

ROLLOUT = str(Path(sys.executable).parent / "rollout")


class Run:
    """One ``rollout demo`` process: on its own sandbox (``--kubeconfig``, written by the demo)
    or, on the kube backend, on the suite's cluster in a fresh namespace; the safety oracle
    watches the demo's namespace from before the demo writes anything."""

    def __init__(self, scenario: str, tmp_path: Path, *extra: str) -> None:
        if shutil.which("prometheus") is None:
            pytest.fail(INSTALL_HINT)
        args = [ROLLOUT, "demo", "--scenario", scenario, *extra]
        self.mark: backend.DeletionMark | None = None
        if backend.on_kube():
            self.kubeconfig = backend.kubeconfig()
            self.namespace = backend.fresh_namespace("demo-e2e")
            args += ["--cluster-kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
            self.mark = backend.DeletionMark(client_from(str(self.kubeconfig)), self.namespace)
            self.mark.start()
            self.watch = OracleWatch(client_from(str(self.kubeconfig)), [self.namespace]).start()
        else:
            self.kubeconfig = tmp_path / "kubeconfig"
            self.namespace = demo_module.NAMESPACE
            args += ["--kubeconfig", str(self.kubeconfig)]
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        if not backend.on_kube():
            self.watch = watch_demo(self.process, self.kubeconfig)

    def verify(self, nodeid: str) -> None:
        """The oracle on everything the run wrote, and, on an existing cluster, that the
        demo's namespace is gone (the versions of its deletion are not judged)."""
        if self.mark is None:  # the demo's sandbox is gone now
            violations = self.watch.verify(nodeid, catch_up=False)
        else:
            rv = self.mark.wait()
            backend.wait_gone(client_from(str(self.kubeconfig)), self.namespace)
            violations = backend.verify_before(self.watch, nodeid, rv)
        assert not violations, OracleWatch.failure(nodeid, violations)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def demo(scenario: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "timeline.json"
    run = Run(scenario, tmp_path, "--json", str(out), *extra)
    try:
        stdout, stderr = run.process.communicate(timeout=240)
    finally:
        run.kill()
    done = subprocess.CompletedProcess(run.process.args, run.process.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout + done.stderr
    run.verify(os.environ.get("PYTEST_CURRENT_TEST", scenario).split(" ")[0])
    assert f"{scenario}: " in done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["scenario"] == scenario
    assert result["timeline"], result
    times = [s["t"] for s in result["timeline"]]
    assert times == sorted(times)
    for sample in result["timeline"]:
        assert sample["canaryWeight"] + sample["stableWeight"] == 100, sample
    # The progress starts with v2 under way, not with v1's finished state.
    assert result["timeline"][0]["phase"] != "Healthy", result["timeline"][0]
    progress = done.stdout.split("updated to v2", 1)[1].splitlines()[1]
    assert "Healthy" not in progress, progress
    check_versions(result)
    return result


def check_versions(result: dict[str, Any]) -> None:
    """The timeline names v1 and v2 by image and pod-template hash in every sample, with their
    roles in the strategy's terms (blue-green: active/preview), weights by version, and step
    labels ``i/n`` that never pass ``n``; the outcome is an event of its own kind."""
    identities = [(v["version"], v["image"]) for v in result["versions"]]
    assert identities == [
        ("v1", "example.com/shop/reviews:1"),
        ("v2", "example.com/shop/reviews:2"),
    ], result["versions"]
    revisions = [v["revision"] for v in result["versions"]]
    assert all(revisions) and revisions[0] != revisions[1], revisions
    terms = {"active", "preview", "stable"} if result["strategy"] == "blueGreen" else None
    terms = terms or {"stable", "canary"}
    count = result["stepCount"]
    for sample in result["timeline"]:
        entries = sample["versions"]
        assert [(v["version"], v["image"], v["revision"]) for v in entries] == [
            (*identity, revision) for identity, revision in zip(identities, revisions, strict=True)
        ], sample
        assert sum(v["weight"] for v in entries) == 100, sample
        assert [v for v in entries if "stable" in v["roles"]], sample  # one is always stable
        assert {role for v in entries for role in v["roles"]} <= terms, sample
        done, total = sample["stepLabel"].split("/")
        assert int(total) == count and 1 <= int(done) <= count, sample
    last = result["timeline"][-1]["versions"]
    kinds = [e["kind"] for e in result["events"]]
    if result["outcome"] == "Promoted":
        assert "stable" in last[1]["roles"] and last[1]["weight"] == 100, last
        assert kinds.count("promotion") == 1 and "rollback" not in kinds, kinds
    else:
        assert "stable" in last[0]["roles"] and last[0]["weight"] == 100, last
        assert kinds.count("rollback") == 1 and "promotion" not in kinds, kinds
        assert "gate-failed" in kinds, kinds


def watch_demo(process: subprocess.Popen[str], kubeconfig: Path) -> OracleWatch:
    """The safety oracle on the demo's namespace, from the moment its sandbox answers.

    The demo writes its objects itself (not through a client this test can tap), so the
    oracle takes the first version of each routing object it sees as the user's.
    """
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        assert process.poll() is None, "rollout demo exited before its sandbox answered"
        assert time.monotonic() < deadline, "rollout demo did not write its kubeconfig"
        time.sleep(0.02)
    return OracleWatch(client_from(str(kubeconfig)), [demo_module.NAMESPACE]).start()


def test_a_good_canary_is_promoted_step_by_step(tmp_path: Path) -> None:
    result = demo("good-canary", tmp_path)
    assert result["outcome"] == "Promoted"
    weights = [s["canaryWeight"] for s in result["timeline"]]
    assert {20, 50, 80} <= set(weights)
    # the canary's weight only grows until the promotion hands everything to it (back to 0)
    climbing = weights[: weights.index(80) + 1]
    assert climbing == sorted(climbing)
    assert weights[-1] == 0 and result["timeline"][-1]["phase"] == "Healthy"
    # by version, v2's weight never drops: it climbs to 100 and keeps it as the new stable
    v2 = [s["versions"][1]["weight"] for s in result["timeline"]]
    assert v2 == sorted(v2) and v2[-1] == 100
    assert result["stepCount"] == 6 and result["timeline"][-1]["stepLabel"] == "6/6"
    measured = [
        s["canaryErrorRate"] for s in result["timeline"] if s["canaryErrorRate"] is not None
    ]
    assert measured and max(measured) <= result["thresholds"]["errorRate"]


def test_a_bad_canary_is_rolled_back_from_the_step_that_failed(tmp_path: Path) -> None:
    png = tmp_path / "plot.png"
    result = demo("bad-canary", tmp_path, "--plot", str(png))
    assert result["outcome"] == "RolledBack"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn from the same run
    timeline = result["timeline"]
    assert max(s["canaryWeight"] for s in timeline) == 20  # never past the first step
    assert timeline[-1]["canaryWeight"] == 0 and timeline[-1]["phase"] == "Degraded"
    failing = [s for s in timeline if (s["canaryErrorRate"] or 0) > 0.05]
    assert failing, "the canary's errors show in Prometheus"
    assert all(s["stableErrorRate"] in (None, 0.0) for s in timeline)


def test_blue_green_switches_all_traffic_at_once(tmp_path: Path) -> None:
    result = demo("blue-green", tmp_path)
    assert result["outcome"] == "Promoted"
    # before the switch the preview has no live traffic; there are no intermediate weights
    assert {s["canaryWeight"] for s in result["timeline"]} <= {0, 100}
    assert result["timeline"][-1]["phase"] == "Healthy"
    roles = [[v["roles"] for v in s["versions"]] for s in result["timeline"]]
    assert roles[0] == [["active", "stable"], ["preview"]]
    assert [["stable"], ["active"]] in roles  # switched, before the post-promotion gate ends
    assert roles[-1] == [[], ["active", "stable"]]
    marks = [e["kind"] for e in result["events"] if e["kind"] in ("switch", "promotion")]
    assert marks == ["switch", "promotion"]


def test_a_bad_mirror_is_rejected_before_any_live_traffic(tmp_path: Path) -> None:
    result = demo("bad-mirror", tmp_path)
    assert result["outcome"] == "RolledBack"
    timeline = result["timeline"]
    assert all(s["canaryWeight"] == 0 for s in timeline)
    assert any(s["mirrorPercent"] == 100 for s in timeline)
    assert timeline[-1]["mirrorPercent"] == 0
    assert any((s["canaryErrorRate"] or 0) > 0.05 for s in timeline)


def test_a_slow_canary_is_rolled_back_by_its_p99(tmp_path: Path) -> None:
    result = demo("slow-canary", tmp_path)
    assert result["outcome"] == "RolledBack"
    timeline = result["timeline"]
    assert timeline[-1]["canaryWeight"] == 0 and timeline[-1]["phase"] == "Degraded"
    slow = [s for s in timeline if (s["canaryP99Ms"] or 0) > result["thresholds"]["p99Ms"]]
    assert slow, "the canary's p99 above the gate shows in Prometheus"


def test_a_bad_blue_green_switches_back_after_the_switch(tmp_path: Path) -> None:
    result = demo("bad-blue-green", tmp_path)
    assert result["outcome"] == "RolledBack"
    weights = [s["canaryWeight"] for s in result["timeline"]]
    assert 100 in weights, "the switch happened before the post-promotion gate failed"
    assert weights[-1] == 0 and result["timeline"][-1]["phase"] == "Degraded"


def test_a_good_mirror_is_promoted_after_shadowing(tmp_path: Path) -> None:
    result = demo("mirror", tmp_path)
    assert result["outcome"] == "Promoted"
    timeline = result["timeline"]
    assert any(s["mirrorPercent"] > 0 for s in timeline)
    assert timeline[-1]["mirrorPercent"] == 0 and timeline[-1]["phase"] == "Healthy"


def test_a_header_route_canary_is_promoted(tmp_path: Path) -> None:
    result = demo("header-route", tmp_path)
    assert result["outcome"] == "Promoted"
    assert result["timeline"][-1]["phase"] == "Healthy"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_demo_and_its_prometheus(tmp_path: Path) -> None:
    run = Run("good-canary", tmp_path)
    demo_process = run.process
    try:
        assert demo_process.stdout is not None
        for line in demo_process.stdout:  # ends at EOF if the demo dies early
            if line.startswith("scenario good-canary"):
                break
        started = children(demo_process.pid)
        assert started, "the demo runs Prometheus as its child"
        demo_process.send_signal(signal.SIGTERM)
        out, err = demo_process.communicate(timeout=90)
    finally:
        run.kill()
    assert demo_process.returncode == 128 + signal.SIGTERM, err
    assert "terminated; everything it started is stopped" in err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in started):
        assert time.monotonic() < deadline, f"left running: {started}"
        time.sleep(0.1)
    run.verify(os.environ.get("PYTEST_CURRENT_TEST", "sigterm").split(" ")[0])
