"""Revision numbers (issue 15 item 3): the controller numbers each revision 1, 2, 3 ... with the
``rollout.dev/revision`` annotation on its ReplicaSet and on the Rollout, an old revision that
comes back gets the next number, and ``rollout undo --to-revision N`` means revision N.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from rollout.cli import app
from rollout.domain.revision import REVISION_ANNOTATION
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    destination_rule,
    pod_template,
    rollout_manifest,
    virtual_service,
)
from tests.integration.sandbox_helpers import eventually

pytestmark = pytest.mark.integration


def cli(kubeconfig: Path, namespace: str, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(kubeconfig), "-n", namespace])


def numbers(cluster: Cluster) -> dict[str, str | None]:
    """``{ReplicaSet name: its rollout.dev/revision}``, and the Rollout's as ``"<rollout>"``."""
    found = {
        name: (rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
        for name, rs in cluster.replica_sets().items()
    }
    found["<rollout>"] = (cluster.rollout()["metadata"].get("annotations") or {}).get(
        REVISION_ANNOTATION
    )
    return found


def numbers_shown(screen: str) -> dict[str, str]:
    """``{pod-template hash: revision number}`` as ``rollout get``'s tree shows them: a
    ``revision:N`` line, then that revision's ReplicaSet ``reviews-<hash>``."""
    shown: dict[str, str] = {}
    number = None
    for line in screen.splitlines():
        if found := re.search(r"revision:(\d+)", line):
            number = found.group(1)
        elif (found := re.search(r"reviews-([a-z0-9]+)\s+ReplicaSet", line)) and number:
            shown[found.group(1)] = number
    return shown


def wait_numbers(cluster: Cluster, wanted: dict[str, str]) -> None:
    def look() -> None:
        now = numbers(cluster)
        assert {k: now.get(k) for k in wanted} == wanted, now

    eventually(look, timeout=10.0, interval=0.05)


def roll_out(cluster: Cluster, image: str) -> str:
    """Set the image and let the update go through all steps; the new stable revision."""
    cluster.set_template(pod_template("reviews", image))
    status = cluster.wait_status(
        lambda s: (
            s.get("canaryRevision") not in (None, s.get("stableRevision"))
            and s.get("observedGeneration") == cluster.rollout()["metadata"]["generation"]
        )
    )
    cluster.operator({"promoteFull": True})
    canary: str = status["canaryRevision"]
    cluster.wait_healthy(canary)
    return canary


def test_revisions_are_numbered_and_undo_takes_absolute_numbers(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    v1 = cluster.wait_healthy()["stableRevision"]
    wait_numbers(cluster, {f"reviews-{v1}": "1", "<rollout>": "1"})
    v2 = roll_out(cluster, "example.com/reviews:2")
    v3 = roll_out(cluster, "example.com/reviews:3")
    wait_numbers(
        cluster,
        {f"reviews-{v1}": "1", f"reviews-{v2}": "2", f"reviews-{v3}": "3", "<rollout>": "3"},
    )
    got = cli(kc, ns, "get", "reviews")
    assert got.exit_code == 0, got.output
    rows = numbers_shown(got.stdout)
    assert rows.get(v1) == "1", got.stdout

    # An unknown revision: one line listing the known ones, non-zero, nothing changed.
    before = cluster.rollout()
    bad = cli(kc, ns, "undo", "reviews", "--to-revision", "7")
    assert bad.exit_code == 4  # bad input, as an unknown container in set image
    [line] = bad.stderr.strip().splitlines()
    assert "no revision 7" in line and f"1 ({v1})" in line and f"3 ({v3}, current)" in line, line
    after = cluster.rollout()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # Back to revision 1: v1's template again; its ReplicaSet becomes revision 4.
    undone = cli(kc, ns, "undo", "reviews", "--to-revision", "1")
    assert undone.exit_code == 0, undone.output
    assert f"rolled back to revision 1 ({v1}); it becomes revision 4" in undone.stdout
    image = cluster.rollout()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "example.com/reviews:1"
    cluster.wait_status(lambda s: s.get("canaryRevision") == v1)
    wait_numbers(
        cluster,
        {f"reviews-{v1}": "4", f"reviews-{v2}": "2", f"reviews-{v3}": "3", "<rollout>": "4"},
    )

    # The default is the previous revision: mid-update, the stable one (v3), which becomes 5.
    default = cli(kc, ns, "undo", "reviews")
    assert default.exit_code == 0, default.output
    assert f"rolled back to revision 3 ({v3}); it becomes revision 5" in default.stdout
    cluster.wait_healthy(v3)
    wait_numbers(
        cluster,
        {f"reviews-{v1}": "4", f"reviews-{v2}": "2", f"reviews-{v3}": "5", "<rollout>": "5"},
    )
    # Revision 0 is the previous one too (as kubectl's): from v3 (5) back to v1 (4).
    zero = cli(kc, ns, "undo", "reviews", "--to-revision", "0")
    assert zero.exit_code == 0, zero.output
    assert f"rolled back to revision 4 ({v1}); it becomes revision 6" in zero.stdout


def test_replica_sets_from_before_numbering_are_numbered_by_age(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    v1 = cluster.wait_healthy()["stableRevision"]
    v2 = roll_out(cluster, "example.com/reviews:2")
    wait_numbers(cluster, {f"reviews-{v1}": "1", f"reviews-{v2}": "2"})
    # As a controller from before numbering left them: no annotation at all.
    controller.stop()
    for name in (f"reviews-{v1}", f"reviews-{v2}"):
        strip = {"metadata": {"annotations": {REVISION_ANNOTATION: None}}}
        cluster.apps.patch_namespaced_replica_set(name, cluster.namespace, strip)
    assert numbers(cluster)[f"reviews-{v1}"] is None
    got = cli(sandbox_kubeconfig, cluster.namespace, "get", "reviews")
    rows = numbers_shown(got.stdout)
    assert (rows.get(v1), rows.get(v2)) == ("1", "2"), got.stdout  # by age, as it will number
    controller.start()
    wait_numbers(cluster, {f"reviews-{v1}": "1", f"reviews-{v2}": "2", "<rollout>": "2"})


def test_an_annotation_a_user_deletes_comes_back_without_renumbering_the_current_one(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    v1 = cluster.wait_healthy()["stableRevision"]
    v2 = roll_out(cluster, "example.com/reviews:2")
    v3 = roll_out(cluster, "example.com/reviews:3")
    before = {f"reviews-{v1}": "1", f"reviews-{v2}": "2", f"reviews-{v3}": "3", "<rollout>": "3"}
    wait_numbers(cluster, before)
    # kubectl annotate rs reviews-<v2> rollout.dev/revision- : v2 takes 2 back; it used to be
    # numbered 4 and push the current revision up to 5 with nothing rolled out.
    strip = {"metadata": {"annotations": {REVISION_ANNOTATION: None}}}
    cluster.apps.patch_namespaced_replica_set(f"reviews-{v2}", cluster.namespace, strip)
    wait_numbers(cluster, before)
    undone = cli(sandbox_kubeconfig, cluster.namespace, "undo", "reviews", "--to-revision", "2")
    assert f"rolled back to revision 2 ({v2}); it becomes revision 4" in undone.stdout
