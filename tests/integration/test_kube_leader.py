"""Leader election on a real ``coordination.k8s.io/v1`` Lease, with two ``rollout controller``
processes: one leads, the other waits; the leader is killed with SIGKILL (it cannot release the
Lease) and the standby takes over once the Lease expires, then finishes the canary.

The Lease is the real apiserver's: its optimistic concurrency (resourceVersion on update) is
what keeps two candidates from both winning, and its timestamps are MicroTime as the server
stores them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.controller_helpers import (
    Cluster,
    Steps,
    canary_weight,
    consistently,
    destination_rule,
    pod_template,
    rollout_manifest,
    virtual_service,
)
from tests.integration.sandbox_helpers import coordination_v1, eventually
from tests.integration.test_controller_process import LEASE, Replica, holder_pid

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

LEASE_SECONDS = 4
# lease 4 s > renew deadline 3 s > retry 0.5 s
DURATIONS = [
    "--lease-duration",
    str(LEASE_SECONDS),
    "--renew-deadline",
    "3",
    "--retry-period",
    "0.5",
]


@pytest.fixture
def replicas(sandbox_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[list[Replica]]:
    started = [
        Replica(sandbox_kubeconfig, namespace, tmp_path / f"controller-{i}.log", DURATIONS)
        for i in range(2)
    ]
    try:
        yield started
    finally:
        for replica in started:
            replica.close()


def test_the_standby_takes_the_real_lease_after_a_kill_9_and_finishes_the_canary(
    api_client: client.ApiClient, namespace: str, replicas: list[Replica]
) -> None:
    cluster = Cluster(api_client, namespace)
    leases = coordination_v1(api_client)
    pids = {r.pid: r for r in replicas}
    leader_pid = eventually(lambda: holder_pid(api_client, namespace), timeout=20)
    assert leader_pid in pids
    lease = leases.read_namespaced_lease(LEASE, namespace)
    assert lease.spec.lease_duration_seconds == LEASE_SECONDS
    first_renewal = lease.spec.renew_time

    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    steps: Steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": 1}}]
    cluster.create_rollout(rollout_manifest(steps=steps, replicas=2))
    stable = cluster.wait_status(lambda s: s.get("phase") == "Healthy", timeout=20)[
        "stableRevision"
    ]
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    paused = cluster.wait_status(
        lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 20, timeout=20
    )
    canary = paused["canaryRevision"]

    # One leader, renewing; the standby runs and waits.
    def one_leader() -> None:
        assert holder_pid(api_client, namespace) == leader_pid
        assert all(r.process.poll() is None for r in replicas)

    consistently(one_leader, 1.0)
    renewed = leases.read_namespaced_lease(LEASE, namespace).spec.renew_time
    assert renewed > first_renewal
    leader = pids[leader_pid]
    standby = next(r for r in replicas if r is not leader)
    assert "became leader" not in standby.log.read_text()

    os.kill(leader_pid, signal.SIGKILL)
    leader.process.wait(timeout=5)
    killed = time.monotonic()

    def taken_over() -> None:
        assert holder_pid(api_client, namespace) == standby.pid

    # Within the lease duration after the last renewal it saw, plus one retry period and slack.
    eventually(taken_over, timeout=LEASE_SECONDS + 3, interval=0.1)
    assert time.monotonic() - killed <= LEASE_SECONDS + 3
    lease = leases.read_namespaced_lease(LEASE, namespace)
    assert lease.spec.lease_transitions >= 1
    assert lease.spec.acquire_time >= renewed

    # The new leader finishes the canary: promote, 60 %, a timed pause, then the new stable.
    assert canary_weight(cluster.vs()) == 20
    cluster.promote()
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == canary, timeout=20
    )
    assert status["stableRevision"] != stable
    assert status["weights"]["canary"] == 0 and status["weights"]["stable"] == 100
    assert canary_weight(cluster.vs()) == 0
    log = standby.log.read_text()
    assert "became leader" in log and "Traceback" not in log
