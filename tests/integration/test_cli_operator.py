"""The operator CLI against the sandbox with a controller running: every command, every exit.

Commands run through ``typer.testing.CliRunner`` on ``rollout.cli.app`` with ``--kubeconfig``
to the sandbox; ``rollout status`` also runs as the installed console script.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from rollout.cli import app
from rollout.domain.revision import TEMPLATE_ANNOTATION
from tests.integration.conftest import ROLLOUT
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Steps,
    canary_weight,
    destination_rule,
    pod_template,
    rollout_manifest,
    virtual_service,
)

pytestmark = pytest.mark.integration


def cli(kubeconfig: Path, namespace: str, *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", namespace])


def healthy_rollout(cluster: Cluster, steps: Steps) -> str:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=steps))
    stable: str = cluster.wait_healthy()["stableRevision"]
    return stable


def paused_at(cluster: Cluster, index: int) -> None:
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s.get("currentStepIndex") == index)


def test_set_image_get_list_promote_and_status(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    stable = healthy_rollout(cluster, [{"setWeight": 30}, {"pause": {}}])

    result = cli(kc, ns, "promote", "reviews")
    assert result.exit_code == 0 and "nothing to promote: rollout is Healthy" in result.stdout

    result = cli(kc, ns, "set", "image", "reviews", "app=example.com/reviews:2")
    assert result.exit_code == 0, result.output
    assert "GitOps" in result.stderr
    paused_at(cluster, 1)

    got = cli(kc, ns, "get", "reviews")
    assert got.exit_code == 0, got.output
    assert "Paused (CanaryPauseStep)" in got.stdout
    assert "Step:          2/2 (pause until promoted)" in got.stdout
    assert "ActualWeight:  30 (stable 70)" in got.stdout
    assert f"reviews-{stable}" in got.stdout and "CanaryPauseStep" in got.stdout
    raw = json.loads(cli(kc, ns, "get", "reviews", "-o", "json").stdout)
    assert raw["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/reviews:2"
    assert "phase: Paused" in cli(kc, ns, "get", "reviews", "-o", "yaml").stdout

    listed = cli(kc, ns, "list")
    assert listed.exit_code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "AGE"]
    assert row.split()[:5] == ["reviews", "canary", "Paused", "2/2", "30"]
    all_ns = CliRunner().invoke(app, ["list", "-A", "--kubeconfig", str(kc)])
    assert all_ns.exit_code == 0 and all_ns.stdout.startswith("NAMESPACE")
    assert ns in all_ns.stdout

    # Paused at an indefinite pause: status times out with 2.
    started = time.monotonic()
    waited = cli(kc, ns, "status", "reviews", "--timeout", "1s")
    assert waited.exit_code == 2, waited.output
    assert 0.9 <= time.monotonic() - started < 5
    assert "timed out" in waited.stderr
    # One step numbering: the status line, the message, get, list and status.step agree.
    assert "Paused: step 2/2, canary weight 30%: paused (CanaryPauseStep) at step 2/2" in (
        waited.stdout
    )
    assert cluster.status()["step"] == "2/2"

    # get --watch redraws on watch events until its timeout.
    watched = cli(kc, ns, "get", "reviews", "--watch", "--timeout", "1s")
    assert watched.exit_code == 0 and watched.stdout.count("Name:") >= 1

    promoted = cli(kc, ns, "promote", "reviews")
    assert promoted.exit_code == 0 and "promoted" in promoted.stdout
    done = cli(kc, ns, "status", "reviews", "--timeout", "20s")
    assert done.exit_code == 0, done.output
    assert done.stdout.rstrip().endswith('rollout "reviews" is Healthy')
    assert cluster.status()["stableRevision"] != stable


def test_abort_retry_pause_resume(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    healthy_rollout(cluster, [{"setWeight": 40}, {"pause": {}}])
    assert "nothing to abort" in cli(kc, ns, "abort", "reviews").stdout
    assert "nothing to retry" in cli(kc, ns, "retry", "reviews").stdout
    assert "nothing to resume" in cli(kc, ns, "resume", "reviews").stdout

    # Paused by the user before the update: the update holds at its first step.
    assert cli(kc, ns, "pause", "reviews").exit_code == 0
    assert "already paused" in cli(kc, ns, "pause", "reviews").stdout
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, s.get("stableRevision")))
    time.sleep(1.5)
    status = cluster.status()
    assert status["phase"] == "Paused", status
    assert [p["reason"] for p in status["pauseConditions"]][-1] == "PausedByUser"
    assert (status.get("currentStepIndex") or 0) <= 1

    resumed = cli(kc, ns, "resume", "reviews")
    assert resumed.exit_code == 0, resumed.output
    assert not [p for p in cluster.status()["pauseConditions"] if p["reason"] == "PausedByUser"]

    # Abort mid-rollout: status exits 1 at once.
    paused_at(cluster, 1)
    aborted = cli(kc, ns, "abort", "reviews")
    assert aborted.exit_code == 0 and "aborted" in aborted.stdout
    degraded = cli(kc, ns, "status", "reviews", "--timeout", "20s")
    assert degraded.exit_code == 1, degraded.output
    assert "Degraded" in degraded.stderr
    assert "already aborted" in cli(kc, ns, "abort", "reviews").stdout
    assert "aborted: nothing to promote" in cli(kc, ns, "promote", "reviews").stdout
    assert cli(kc, ns, "retry", "reviews").exit_code == 0
    assert cluster.status()["abort"] is False
    # Retried: not Degraded any more once the controller has seen it, paused at step 1 again.
    assert cli(kc, ns, "status", "reviews", "--timeout", "2s").exit_code == 2
    paused_at(cluster, 1)
    assert cli(kc, ns, "promote", "reviews").exit_code == 0
    final = cli(kc, ns, "status", "reviews", "--timeout", "20s")
    assert final.exit_code == 0, final.output


def test_promote_full_undo_and_restart(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    first = healthy_rollout(cluster, [{"setWeight": 20}, {"pause": {}}])
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    paused_at(cluster, 1)
    full = cli(kc, ns, "promote", "reviews", "--full")
    assert full.exit_code == 0 and "fully" in full.stdout
    second = cluster.wait_status(
        lambda s: s["phase"] == "Healthy" and s.get("stableRevision") != first
    )["stableRevision"]

    undone = cli(kc, ns, "undo", "reviews")
    assert undone.exit_code == 0, undone.output
    assert first in undone.stdout and "GitOps" in undone.stderr
    image = cluster.rollout()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "example.com/reviews:1"
    # The first revision's template again: its ReplicaSet (same hash) is the canary.
    cluster.wait_status(lambda s: s.get("canaryRevision") == first and s["phase"] == "Paused")
    assert cli(kc, ns, "promote", "reviews", "--full").exit_code == 0
    cluster.wait_status(lambda s: s["phase"] == "Healthy" and s.get("stableRevision") == first)
    assert canary_weight(cluster.vs()) == 0

    # A ReplicaSet without a valid template record (edited, or from before the record): on a
    # real apiserver its stored template has the pod defaults, so the "rollback" is a new
    # revision; undo must say so, not claim the old revision.
    rs = f"reviews-{second}"
    edit = {"metadata": {"annotations": {TEMPLATE_ANNOTATION: "{bad"}}}
    cluster.apps.patch_namespaced_replica_set(rs, ns, edit)
    again = cli(kc, ns, "undo", "reviews")
    assert again.exit_code == 0, again.output
    canary = cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, first))
    if canary["canaryRevision"] == second:
        assert f"rolled back to revision 2 ({second})" in again.stdout  # no pod defaults here
    else:
        assert f"as a new revision {canary['canaryRevision']}" in again.stdout, again.stdout
    assert cli(kc, ns, "promote", "reviews", "--full").exit_code == 0
    back = canary["canaryRevision"]
    cluster.wait_status(lambda s: s["phase"] == "Healthy" and s.get("stableRevision") == back)

    bad = cli(kc, ns, "undo", "reviews", "--to-revision", "5")
    assert bad.exit_code == 4 and len(bad.stderr.strip().splitlines()) == 1

    restarted = cli(kc, ns, "restart", "reviews")
    assert restarted.exit_code == 0
    annotations = cluster.rollout()["spec"]["template"]["metadata"]["annotations"]
    assert "rollout.dev/restartedAt" in annotations
    cluster.wait_status(lambda s: s.get("canaryRevision") not in (None, first, second))


def test_undo_mid_update_goes_back_to_the_stable_revision(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    # v1 -> v2 -> undo to v1 (v1's ReplicaSet, older than v2's, is stable again) -> v3 canary:
    # undo must go back to v1, what serves, not to v2 (the newer ReplicaSet, rolled back from).
    kc, ns = sandbox_kubeconfig, cluster.namespace
    first = healthy_rollout(cluster, [{"setWeight": 20}, {"pause": {}}])
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    paused_at(cluster, 1)
    assert cli(kc, ns, "promote", "reviews", "--full").exit_code == 0
    cluster.wait_status(lambda s: s["phase"] == "Healthy" and s.get("stableRevision") != first)
    assert cli(kc, ns, "undo", "reviews").exit_code == 0
    cluster.wait_status(lambda s: s.get("canaryRevision") == first and s["phase"] == "Paused")
    assert cli(kc, ns, "promote", "reviews", "--full").exit_code == 0
    cluster.wait_status(lambda s: s["phase"] == "Healthy" and s.get("stableRevision") == first)
    cluster.set_template(pod_template("reviews", "example.com/reviews:3"))
    paused_at(cluster, 1)

    undone = cli(kc, ns, "undo", "reviews")
    assert undone.exit_code == 0, undone.output
    # v1 is revision 1, v2 2, v1 again 3, v3 4: the stable revision is number 3.
    assert f"rolled back to revision 3 ({first})" in undone.stdout, undone.stdout
    image = cluster.rollout()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "example.com/reviews:1"


def test_status_as_a_process_exits_0_when_healthy(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    healthy_rollout(cluster, [{"setWeight": 50}])
    done = subprocess.run(
        [ROLLOUT, "status", "reviews", "-n", cluster.namespace, "--timeout", "10s"],
        env={"KUBECONFIG": str(sandbox_kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "Healthy" in done.stdout


def test_errors_are_one_line_and_exit_1(
    sandbox_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    """(An unreachable API is exit 3: test_cli_conventions.py.)"""
    missing = cli(sandbox_kubeconfig, namespace, "get", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f'error: rollout "nope" not found in namespace "{namespace}"'
    no_ns = cli(sandbox_kubeconfig, "no-such-ns", "status", "nope")
    assert no_ns.exit_code == 1
    assert no_ns.stderr.strip() == 'error: namespace "no-such-ns" not found'

    broken = tmp_path / "broken"
    broken.write_text("this: [is not a kubeconfig")
    bad = cli(broken, "default", "get", "x")
    assert bad.exit_code == 4 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"error: bad kubeconfig {broken}: ")


def test_namespace_from_the_kubeconfig_context(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path, tmp_path: Path
) -> None:
    healthy_rollout(cluster, [{"setWeight": 50}])
    config = yaml.safe_load(sandbox_kubeconfig.read_text())
    context = config["contexts"][0]
    context["context"]["namespace"] = cluster.namespace
    other = {"name": "other", "context": {**context["context"], "namespace": "elsewhere"}}
    config["contexts"].append(other)
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()
    got = runner.invoke(app, ["get", "reviews", "--kubeconfig", str(path)])
    assert got.exit_code == 0, got.output
    via_env = runner.invoke(app, ["list"], env={"KUBECONFIG": str(path)})
    assert via_env.exit_code == 0 and "reviews" in via_env.stdout
    elsewhere = runner.invoke(
        app, ["get", "reviews", "--kubeconfig", str(path), "--context", "other"]
    )
    assert elsewhere.exit_code == 1 and "elsewhere" in elsewhere.stderr


def test_status_timeout_0_means_no_limit_as_for_kubectl(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    """``--timeout 0`` waits without a limit (kubectl's and Argo's ``status --timeout 0``);
    it used to give up at once with exit 2 on a Paused Rollout."""
    kc, ns = sandbox_kubeconfig, cluster.namespace
    healthy_rollout(cluster, [{"setWeight": 30}, {"pause": {}}])
    assert cli(kc, ns, "set", "image", "reviews", "app=example.com/reviews:2").exit_code == 0
    paused_at(cluster, 1)
    status = subprocess.Popen(
        [ROLLOUT, "status", "reviews", "-n", ns, "--timeout", "0"],
        env={"KUBECONFIG": str(kc), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert status.stdout is not None
        first = status.stdout.readline()  # it has read the Rollout: Paused, and goes on
        assert first.startswith("Paused:"), first
        assert cli(kc, ns, "promote", "reviews").exit_code == 0
        assert status.wait(timeout=60) == 0, status.stderr.read() if status.stderr else ""
        assert 'rollout "reviews" is Healthy' in status.stdout.read()
    finally:
        if status.poll() is None:
            status.kill()
            status.wait()
