"""The controller against the sandbox: a ReplicaSet the API refuses is reported, not retried.

The Rollouts here pass the Rollout CRD, but the ReplicaSet built from them does not pass the
ReplicaSet validation (a pod-template label value that is not a label value; a container
without an image): the sandbox answers 422 Invalid, as the apiserver does. The controller runs
over ``KubeAccess`` (HTTP to the sandbox) wrapped at the ClusterAccess seam by a recorder of
every write it attempts, so a retry loop shows as a count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout.cluster.access import Obj, Resource
from rollout.cluster.kube import KubeAccess, load_api_client
from rollout.controller.runtime import Controller
from tests.integration.controller_helpers import (
    Cluster,
    canary_weight,
    condition,
    consistently,
    destination_rule,
    pod_template,
    rollout_manifest,
    virtual_service,
)

pytestmark = pytest.mark.integration


class RecordingAccess:
    """KubeAccess, recording each write attempted (resource plural, verb), refused or not."""

    def __init__(self, inner: KubeAccess) -> None:
        self.inner = inner
        self.attempts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def _note(self, res: Resource, verb: str) -> None:
        with self._lock:
            self.attempts.append((res.plural, verb))

    def count(self, plural: str, verb: str) -> int:
        with self._lock:
            return self.attempts.count((plural, verb))

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self._note(res, "create")
        return self.inner.create(res, namespace, body)

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **kw: Any) -> Obj:
        self._note(res, "patch")
        return self.inner.patch(res, namespace, name, patch, **kw)

    def patch_status(self, res: Resource, namespace: str | None, name: str, patch: Any) -> Obj:
        self._note(res, "status")
        return self.inner.patch_status(res, namespace, name, patch)

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self._note(res, "delete")
        self.inner.delete(res, namespace, name)

    def __getattr__(self, name: str) -> Any:  # reads, watches, events: as they are
        return getattr(self.inner, name)


@pytest.fixture
def recording(sandbox_kubeconfig: Path, namespace: str) -> Iterator[RecordingAccess]:
    access = RecordingAccess(KubeAccess(load_api_client(str(sandbox_kubeconfig))))
    controller = Controller(access, namespace=namespace, workers=2)
    assert controller.start_caches(timeout=10)
    controller.start_workers()
    try:
        yield access
    finally:
        controller.stop()


def rejected(cluster: Cluster) -> Obj:
    """The status once it reports the refusal."""

    def refused(status: Obj) -> bool:
        conds = {c["type"]: c for c in status.get("conditions") or []}
        return bool(conds.get("InvalidSpec", {}).get("reason") == "ApiRejected")

    return cluster.wait_status(refused)


def assert_no_retry_storm(
    cluster: Cluster, access: RecordingAccess, seconds: float, before: int = 0
) -> None:
    """The refusal settles (the status write it caused brings one more reconcile, so one more
    attempt, which may still be on its way under load: at most two creates in all), then over
    ``seconds`` no further ReplicaSet create, status write or Event."""
    settle_deadline = time.monotonic() + 10.0
    last, since = access.count("replicasets", "create"), time.monotonic()
    while time.monotonic() - since < 1.0:
        assert time.monotonic() < settle_deadline, "the refused create never settled: a storm"
        time.sleep(0.1)
        now = access.count("replicasets", "create")
        if now != last:
            last, since = now, time.monotonic()
    creates = access.count("replicasets", "create")
    attempts = creates - before  # ``before``: the creates made before the refused one
    assert attempts <= 2, f"{attempts} attempts at the refused create: {access.attempts}"
    statuses = access.count("rollouts", "status")
    events = len(cluster.events())

    def quiet() -> None:
        assert access.count("replicasets", "create") == creates
        assert access.count("rollouts", "status") == statuses
        assert len(cluster.events()) == events

    consistently(quiet, seconds, interval=0.2)


def test_a_first_revision_whose_replica_set_is_refused_is_degraded_with_one_warning(
    cluster: Cluster, recording: RecordingAccess
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    vs_version = cluster.vs()["metadata"]["resourceVersion"]
    manifest = rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}])
    manifest["spec"]["template"]["metadata"]["labels"]["team"] = "not ok"  # no spaces
    cluster.create_rollout(manifest)  # the Rollout CRD does not check template label values

    status = rejected(cluster)
    assert status["phase"] == "Degraded"
    spec_condition = condition(status, "InvalidSpec")
    assert spec_condition["status"] == "True"
    message = spec_condition["message"]
    assert message.startswith(f"creating ReplicaSet {cluster.namespace}/reviews-"), message
    # Both the ReplicaSet's labels and its pod template's are refused: an aggregate, as the
    # apiserver words one (``is invalid: [a, b]``).
    assert '" is invalid: [metadata.labels: Invalid value: "not ok": ' in message, message
    assert ', spec.template.labels: Invalid value: "not ok": ' in message, message
    assert '"not ok"' in message, message
    assert status["message"] == f"ApiRejected: {message}"
    assert condition(status, "Progressing")["status"] == "False"
    [warning] = cluster.wait_events("ApiRejected")
    assert (warning["type"], warning["message"]) == ("Warning", message)

    assert_no_retry_storm(cluster, recording, 3.0)
    # Its own status write brought one more look; nothing since (no backoff loop).
    assert recording.count("replicasets", "create") <= 2
    assert recording.count("rollouts", "status") == 1
    assert [e["reason"] for e in cluster.events()] == ["ApiRejected"]
    assert cluster.replica_sets() == {}
    assert cluster.vs()["metadata"]["resourceVersion"] == vs_version  # no traffic change

    # A fix of the Rollout is a change: it is tried again at once and goes on.
    cluster.patch_rollout({"spec": {"template": {"metadata": {"labels": {"team": None}}}}})
    status = cluster.wait_healthy()
    assert condition(status, "InvalidSpec")["status"] == "False"


def test_a_canary_whose_replica_set_is_refused_leaves_all_traffic_on_stable(
    cluster: Cluster, recording: RecordingAccess
) -> None:
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    stable = cluster.wait_healthy()["stableRevision"]
    vs_version = cluster.vs()["metadata"]["resourceVersion"]

    template = pod_template("reviews", "example.com/reviews:2")
    del template["spec"]["containers"][0]["image"]  # the ReplicaSet schema requires one
    before = recording.count("replicasets", "create")
    cluster.set_template(template)

    status = rejected(cluster)
    message = condition(status, "InvalidSpec")["message"]
    assert message.startswith(f"creating ReplicaSet {cluster.namespace}/reviews-"), message
    assert "spec.template.spec.containers[0].image: Required value" in message, message
    assert status["stableRevision"] == stable
    assert status["phase"] == "Degraded"
    [warning] = cluster.wait_events("ApiRejected")
    assert warning["type"] == "Warning"

    assert_no_retry_storm(cluster, recording, 3.0, before)
    assert len(cluster.wait_events("ApiRejected")) == 1
    vs = cluster.vs()
    assert vs["metadata"]["resourceVersion"] == vs_version
    assert canary_weight(vs) == 0
    assert set(cluster.replica_sets()) == {f"reviews-{stable}"}

    # The image added back: the canary starts.
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 20)


def test_a_virtual_service_patch_the_api_refuses_is_reported_not_retried_forever(
    cluster: Cluster, recording: RecordingAccess
) -> None:
    # A real 422 on the VirtualService (not a failed ``test`` of the JSON patch): the user's
    # annotations (a kubectl last-applied-configuration of a big VirtualService, say) leave
    # no room for the controller's ownership record, so the API refuses every patch with
    # "metadata.annotations: Too long". It used to be read as "changed under us", retried 5
    # times per reconcile and raised as a Conflict ("kept changing; gave up after retries"):
    # backoff forever, no condition, no Event, the canary's replicas up and nobody told.
    cluster.create_istio("destinationrules", destination_rule())
    body = virtual_service()
    key = "example.com/big"
    body["metadata"]["annotations"] = {key: "x" * (256 * 1024 - len(key) - 8)}
    cluster.create_istio("virtualservices", body)
    cluster.create_rollout(rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}]))
    stable = cluster.wait_healthy()["stableRevision"]
    vs_version = cluster.vs()["metadata"]["resourceVersion"]
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))

    def refused_route(status: Obj) -> bool:
        conds = {c["type"]: c for c in status.get("conditions") or []}
        spec = conds.get("InvalidSpec", {})
        return spec.get("reason") == "ApiRejected" and "routing traffic" in spec.get("message", "")

    status = cluster.wait_status(refused_route, timeout=20)
    message = condition(status, "InvalidSpec")["message"]
    assert "virtualservices/reviews: VirtualService" in message, message
    assert "metadata.annotations: Too long" in message, message
    assert status["stableRevision"] == stable and status["phase"] == "Degraded"
    warnings = cluster.wait_events("ApiRejected")
    assert warnings[-1]["type"] == "Warning" and warnings[-1]["message"] == message
    # No loop: once refused, nothing more is attempted until something changes.
    consistently(lambda: None, 1.0)
    patches, events = recording.count("virtualservices", "patch"), len(cluster.events())
    consistently(lambda: None, 4.0, interval=0.2)
    assert recording.count("virtualservices", "patch") == patches, recording.attempts
    assert len(cluster.events()) == events
    vs = cluster.vs()
    assert vs["metadata"]["resourceVersion"] == vs_version
    assert canary_weight(vs) == 0
