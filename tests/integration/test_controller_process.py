"""``rollout controller`` as a process: leader election between two replicas, clean shutdown,
and a bad kubeconfig.

The processes run the console script a user runs, against the sandbox; the Lease is read
through the official client.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import ROLLOUT
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

pytestmark = pytest.mark.integration

LEASE = "rollout-controller"


class Replica:
    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [
                ROLLOUT,
                "controller",
                "--kubeconfig",
                str(kubeconfig),
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--metrics-port",
                "0",
                "--health-port",
                "0",
                "--workers",
                "2",
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._out.close()


@pytest.fixture
def replicas(sandbox_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[list[Replica]]:
    started = [
        Replica(sandbox_kubeconfig, namespace, tmp_path / f"controller-{i}.log") for i in range(2)
    ]
    try:
        yield started
    finally:
        for replica in started:
            replica.close()


def holder(api_client: client.ApiClient, namespace: str) -> str:
    try:
        lease = coordination_v1(api_client).read_namespaced_lease(LEASE, namespace)
    except ApiException as error:
        assert error.status != 404, "no lease yet"
        raise
    return str(lease.spec.holder_identity or "")


def holder_pid(api_client: client.ApiClient, namespace: str) -> int:
    """The pid in the holder's identity (``host_pid_random``); asserts someone holds it."""
    identity = holder(api_client, namespace)
    assert identity, "nobody holds the lease"
    return int(identity.rsplit("_", 2)[1])


def test_one_leader_at_a_time_and_a_standby_takes_over(
    api_client: client.ApiClient, namespace: str, replicas: list[Replica]
) -> None:
    cluster = Cluster(api_client, namespace)
    pids = {r.pid: r for r in replicas}

    leader_pid = eventually(lambda: holder_pid(api_client, namespace), timeout=15)
    assert leader_pid in pids

    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_istio("virtualservices", virtual_service())
    steps: Steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    cluster.create_rollout(rollout_manifest(steps=steps))
    stable = cluster.wait_healthy()["stableRevision"]
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    cluster.wait_status(lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 20)

    # One holder all along, and both replicas still running (the standby waits).
    def one_leader() -> None:
        assert holder_pid(api_client, namespace) == leader_pid
        assert all(r.process.poll() is None for r in replicas)

    consistently(one_leader, 0.5)
    leader = pids[leader_pid]
    standby = next(r for r in replicas if r is not leader)
    assert "became leader" in leader.log.read_text()
    assert "became leader" not in standby.log.read_text()  # it waits, caches warm

    # kill -9 the leader: it cannot release the lease; the standby waits for it to expire.
    os.kill(leader_pid, signal.SIGKILL)
    leader.process.wait(timeout=5)

    def taken_over() -> None:
        assert holder_pid(api_client, namespace) == standby.pid

    eventually(taken_over, timeout=20, interval=0.2)
    assert "became leader" in standby.log.read_text()
    lease = coordination_v1(api_client).read_namespaced_lease(LEASE, namespace)
    assert lease.spec.lease_transitions >= 1

    # The new leader carries the rollout on.
    cluster.promote()
    status = cluster.wait_status(
        lambda s: s.get("phase") == "Paused" and s["weights"]["canary"] == 50, timeout=10
    )
    assert status["stableRevision"] == stable
    assert canary_weight(cluster.vs()) == 50

    # SIGTERM: exit 0 and give the lease up.
    standby.process.send_signal(signal.SIGTERM)
    assert standby.process.wait(timeout=15) == 0, standby.log.read_text()
    assert holder(api_client, namespace) == ""
    assert "Traceback" not in standby.log.read_text()


def test_a_bad_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    result = subprocess.run(
        [
            ROLLOUT,
            "controller",
            "--kubeconfig",
            str(missing),
            "--metrics-port",
            "0",
            "--health-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rollout controller: cannot load cluster configuration:")
    assert "Traceback" not in result.stderr and result.stdout == ""
