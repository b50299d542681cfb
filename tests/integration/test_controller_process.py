"""``rollout controller`` as a process: leader election between two replicas, clean shutdown,
and a bad kubeconfig.

The processes run the console script a user runs, against the sandbox; the Lease is read
through the official client.
"""

from __future__ import annotations

import base64
import http.client
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
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
    def __init__(
        self, kubeconfig: Path, namespace: str, log: Path, extra: Sequence[str] = ()
    ) -> None:
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
                *extra,
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

    # Default durations: the standby waits 15 s from the last renewal it saw, trying every 2 s.
    eventually(taken_over, timeout=25, interval=0.2)
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


def test_a_standby_that_never_led_stops_on_sigterm_with_exit_0(
    api_client: client.ApiClient, namespace: str, replicas: list[Replica]
) -> None:
    # Every rolling restart of a two-replica controller SIGTERMs a standby; it used to stop
    # with a SchedulerNotRunningError traceback and exit 1 (its timers never started).
    leader_pid = eventually(lambda: holder_pid(api_client, namespace), timeout=15)
    standby = next(r for r in replicas if r.pid != leader_pid)
    eventually(lambda: "starting" in standby.log.read_text(), timeout=10)
    consistently(lambda: None, 1.0)  # its caches are warm, it campaigns
    standby.process.send_signal(signal.SIGTERM)
    assert standby.process.wait(timeout=15) == 0, standby.log.read_text()
    assert "Traceback" not in standby.log.read_text()
    assert holder_pid(api_client, namespace) == leader_pid


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


# -- the fence: a leader cut off from the Lease stops writing before the standby takes over ---


class LeaseBreaker:
    """An HTTP proxy (stdlib, 127.0.0.1) in front of the API server for one controller.

    The controller talks plain HTTP to it; it talks to the API server as the kubeconfig says
    (plain HTTP to the sandbox, HTTPS with the cluster's CA to a real kube-apiserver; the
    client's own ``Authorization`` header goes through). It forwards every request, streaming
    watch answers as they come. Once ``break_leases`` is set it answers 503 to every request for
    a Lease (paths with ``/leases``) without forwarding it, as an API server unreachable for that
    object would. It records every write it forwards (method other than GET, Leases excluded)
    with the wall time it arrived.
    """

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
        target = urlsplit(upstream)
        secure = target.scheme == "https"
        self.host = target.hostname or "127.0.0.1"
        self.port = target.port or (443 if secure else 80)
        self.tls = (tls or ssl.create_default_context()) if secure else None
        self.break_leases = threading.Event()
        self.writes: list[tuple[float, str, str, int]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                lease = "/leases" in self.path
                if lease and proxy.break_leases.is_set():
                    self._reply(503, b'{"kind":"Status","code":503,"reason":"ServiceUnavailable"}')
                    return
                arrived = time.time()
                upstream: http.client.HTTPConnection = (
                    http.client.HTTPConnection(proxy.host, proxy.port, timeout=600)
                    if proxy.tls is None
                    else http.client.HTTPSConnection(
                        proxy.host, proxy.port, timeout=600, context=proxy.tls
                    )
                )
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "connection", "content-length")
                }
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    if self.command != "GET" and not lease:
                        with proxy._lock:
                            proxy.writes.append((arrived, self.command, self.path, answer.status))
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                    if answer.getheader("Content-Length") is not None:
                        data = answer.read()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    while chunk := answer.read1(65536):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (OSError, http.client.HTTPException):  # a watch the server ended
                    self.close_connection = True
                finally:
                    upstream.close()

            def _reply(self, code: int, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def writes_since(self, when: float) -> list[tuple[float, str, str, int]]:
        with self._lock:
            return [w for w in self.writes if w[0] >= when]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _tls_of(cluster: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS context a kubeconfig cluster entry asks for (its CA), or None for the default."""
    if cluster.get("insecure-skip-tls-verify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if "certificate-authority" in cluster:
        return ssl.create_default_context(cafile=cluster["certificate-authority"])
    if "certificate-authority-data" in cluster:
        pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
        return ssl.create_default_context(cadata=pem)
    return None


@pytest.fixture
def lease_breaker(sandbox_kubeconfig: Path, tmp_path: Path) -> Iterator[tuple[LeaseBreaker, Path]]:
    """The proxy, and a kubeconfig that points at it."""
    config = yaml.safe_load(sandbox_kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    proxy = LeaseBreaker(cluster["server"], _tls_of(cluster))
    for entry in config["clusters"]:
        entry["cluster"]["server"] = proxy.url
    kubeconfig = tmp_path / "proxied.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    try:
        yield proxy, kubeconfig
    finally:
        proxy.close()


# Short durations so that the test takes seconds: lease 3 s > renew deadline 2 s > retry 0.5 s.
FAST = ["--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5"]
# Many steps with short pauses: the rollout keeps moving, so a leader that is not fenced writes.
BUSY_STEPS: Steps = [
    step
    for weight in (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60)
    for step in ({"setWeight": weight}, {"pause": {"duration": 1}})
]


def test_a_leader_cut_off_from_the_lease_stops_writing_before_the_standby_leads(
    api_client: client.ApiClient,
    namespace: str,
    sandbox_kubeconfig: Path,
    lease_breaker: tuple[LeaseBreaker, Path],
    tmp_path: Path,
) -> None:
    proxy, proxied = lease_breaker
    cluster = Cluster(api_client, namespace)
    old = Replica(proxied, namespace, tmp_path / "old.log", FAST)
    new: Replica | None = None
    try:

        def old_leads() -> None:
            assert holder_pid(api_client, namespace) == old.pid

        eventually(old_leads, timeout=15, interval=0.05)
        new = Replica(sandbox_kubeconfig, namespace, tmp_path / "new.log", FAST)

        cluster.create_istio("destinationrules", destination_rule())
        cluster.create_istio("virtualservices", virtual_service())
        cluster.create_rollout(rollout_manifest(steps=BUSY_STEPS))
        cluster.wait_healthy()
        cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
        cluster.wait_status(lambda s: s["weights"]["canary"] >= 10, timeout=15)
        old_leads()  # it did all that through the proxy

        cut = time.time()
        proxy.break_leases.set()
        standby = new

        def taken_over() -> None:
            assert holder_pid(api_client, namespace) == standby.pid

        eventually(taken_over, timeout=15, interval=0.05)
        lease = coordination_v1(api_client).read_namespaced_lease(LEASE, namespace)
        acquired = lease.spec.acquire_time.timestamp()
        # The old leader was busy until its renew deadline: without the fence it would go on.
        assert proxy.writes_since(cut - 10), "the old leader wrote nothing: the test shows nothing"
        # It stops leading and exits 1 (it restarts clean, as client-go's default).
        assert old.process.wait(timeout=15) == 1, old.log.read_text()
        log = old.log.read_text()
        assert "lost leadership" in log and "Traceback" not in log, log
        late = proxy.writes_since(acquired)
        assert late == [], f"the old leader wrote after the new one took the Lease: {late}"
        # Nor in the last moment before: the fence closed at least lease - renew earlier.
        assert proxy.writes_since(acquired - 0.25) == []

        # The new leader carries the rollout on.
        at_takeover = cluster.status()["weights"]["canary"]
        cluster.wait_status(lambda s: s["weights"]["canary"] >= at_takeover + 10, timeout=15)
        assert "Traceback" not in standby.log.read_text()
    finally:
        old.close()
        if new is not None:
            new.close()


def test_inconsistent_durations_are_refused_with_a_clear_error() -> None:
    for flags, message in (
        (["--lease-duration", "10", "--renew-deadline", "10"], "--lease-duration (10s) must be"),
        (["--renew-deadline", "2", "--retry-period", "3"], "--renew-deadline (2s) must be"),
        (["--retry-period", "0"], "--retry-period must be > 0s"),
    ):
        result = subprocess.run(
            [ROLLOUT, "controller", "--metrics-port", "0", "--health-port", "0", *flags],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 4, result.stderr  # bad input (rollout.cli)
        words = " ".join(word for word in result.stderr.split() if word != "│")
        assert message in words, result.stderr
        assert "Traceback" not in result.stderr


def test_a_leader_paused_past_its_lease_does_not_write_when_it_resumes(
    api_client: client.ApiClient,
    namespace: str,
    sandbox_kubeconfig: Path,
    lease_breaker: tuple[LeaseBreaker, Path],
    tmp_path: Path,
) -> None:
    # SIGSTOP (a stalled VM, a GC pause, a debugger) freezes the leader mid-rollout; the standby
    # takes the Lease; on SIGCONT the old leader's workers wake up with writes in hand. Not one
    # may reach the API: the fence compares the monotonic clock, which ran on while it slept.
    proxy, proxied = lease_breaker
    cluster = Cluster(api_client, namespace)
    old = Replica(proxied, namespace, tmp_path / "old.log", FAST)
    new: Replica | None = None
    try:

        def old_leads() -> None:
            assert holder_pid(api_client, namespace) == old.pid

        eventually(old_leads, timeout=15, interval=0.05)
        new = Replica(sandbox_kubeconfig, namespace, tmp_path / "new.log", FAST)
        cluster.create_istio("destinationrules", destination_rule())
        cluster.create_istio("virtualservices", virtual_service())
        cluster.create_rollout(rollout_manifest(steps=BUSY_STEPS))
        cluster.wait_healthy()
        cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
        cluster.wait_status(lambda s: s["weights"]["canary"] >= 10, timeout=15)
        old_leads()

        os.kill(old.pid, signal.SIGSTOP)
        standby = new

        def taken_over() -> None:
            assert holder_pid(api_client, namespace) == standby.pid

        eventually(taken_over, timeout=15, interval=0.05)
        lease = coordination_v1(api_client).read_namespaced_lease(LEASE, namespace)
        acquired = lease.spec.acquire_time.timestamp()
        # The standby writes while the old leader sleeps with writes pending.
        consistently(lambda: None, 2.0)
        os.kill(old.pid, signal.SIGCONT)
        assert old.process.wait(timeout=15) == 1, old.log.read_text()
        log = old.log.read_text()
        assert "lost leadership" in log and "Traceback" not in log, log
        late = proxy.writes_since(acquired)
        assert late == [], f"the old leader wrote after the new one took the Lease: {late}"
        at_takeover = cluster.status()["weights"]["canary"]
        cluster.wait_status(lambda s: s["weights"]["canary"] >= at_takeover + 10, timeout=15)
    finally:
        if old.process.poll() is None:
            os.kill(old.pid, signal.SIGCONT)
        old.close()
        if new is not None:
            new.close()
