"""CLI conventions against the API server: ``list -o json|yaml|wide``, ``set image '*=IMAGE'``
and unknown containers, exit 3 when the API cannot be reached (a closed port), and ``rollout
status`` re-establishing its watch when the connection to the API drops (through a TCP proxy
the test cuts and restores)."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from rollout.cli import app
from tests.integration.conftest import ROLLOUT
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    pod_template,
    rollout_manifest,
)
from tests.integration.test_cli_operator import cli, healthy_rollout, paused_at

pytestmark = pytest.mark.integration


def test_list_as_json_yaml_and_wide(
    cluster: Cluster, controller: ControllerHandle, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    stable = healthy_rollout(cluster, [{"setWeight": 30}, {"pause": {}}])
    assert cli(kc, ns, "set", "image", "reviews", "app=example.com/reviews:2").exit_code == 0
    paused_at(cluster, 1)
    canary = cluster.status()["canaryRevision"]

    as_json = cli(kc, ns, "list", "-o", "json")
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.stdout)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    [item] = listed["items"]
    assert (item["apiVersion"], item["kind"]) == ("rollout.dev/v1alpha1", "Rollout")
    assert item["metadata"]["name"] == "reviews" and item["status"]["phase"] == "Paused"
    as_yaml = cli(kc, ns, "list", "--output", "yaml")
    assert as_yaml.exit_code == 0 and yaml.safe_load(as_yaml.stdout) == listed

    wide = cli(kc, ns, "list", "-o", "wide")
    assert wide.exit_code == 0, wide.output
    header, row = wide.stdout.splitlines()
    assert header.split() == [
        *("NAME", "STRATEGY", "PHASE", "STEP", "WEIGHT", "AGE"),
        *("CONTAINERS", "IMAGES", "STABLE", "CANARY", "WEIGHTS", "MESSAGE"),
    ]
    cells = row.split()
    assert cells[0] == "reviews" and cells[6:11] == [
        "app",
        "example.com/reviews:2",
        stable,
        canary,
        "70/30/0",
    ]
    assert " ".join(cells[11:]) == " ".join(cluster.status()["message"].split())

    empty = CliRunner().invoke(app, ["list", "-o", "json", "--kubeconfig", str(kc), "-n", "none"])
    assert empty.exit_code == 0 and json.loads(empty.stdout)["items"] == []


def three_containers(cluster: Cluster) -> None:
    manifest = rollout_manifest(steps=[{"setWeight": 50}])
    manifest["spec"]["template"]["spec"] = {
        "initContainers": [{"name": "init", "image": "example.com/init:1"}],
        "containers": [
            {"name": "app", "image": "example.com/reviews:1"},
            {"name": "side", "image": "example.com/side:1"},
        ],
    }
    cluster.create_rollout(manifest)


def images(cluster: Cluster) -> dict[str, str]:
    pod = cluster.rollout()["spec"]["template"]["spec"]
    return {c["name"]: c["image"] for c in pod["initContainers"] + pod["containers"]}


def test_set_image_star_sets_every_container(cluster: Cluster, sandbox_kubeconfig: Path) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    three_containers(cluster)
    done = cli(kc, ns, "set", "image", "reviews", "*=example.com/all:2")
    assert done.exit_code == 0, done.output
    assert images(cluster) == dict.fromkeys(("init", "app", "side"), "example.com/all:2")
    again = cli(kc, ns, "set", "image", "reviews", "*=example.com/all:2")
    assert again.exit_code == 0 and "image unchanged" in again.stdout


def test_set_image_of_an_unknown_container_names_the_known_ones_and_changes_nothing(
    cluster: Cluster, sandbox_kubeconfig: Path
) -> None:
    kc, ns = sandbox_kubeconfig, cluster.namespace
    three_containers(cluster)
    before = cluster.rollout()
    failed = cli(kc, ns, "set", "image", "reviews", "app=example.com/reviews:2", "sidecar=x:2")
    assert failed.exit_code == 4
    assert failed.stderr == (
        'error: rollout "reviews" has no container sidecar '
        "(initContainers: init; containers: app, side)\n"
    )
    after = cluster.rollout()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert images(cluster)["app"] == "example.com/reviews:1"
    mixed = cli(kc, ns, "set", "image", "reviews", "*=x:2", "app=y:2")
    assert mixed.exit_code == 4 and "give it alone" in mixed.stderr


def closed_port_kubeconfig(sandbox_kubeconfig: Path, tmp_path: Path) -> Path:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return point_at(sandbox_kubeconfig, tmp_path / "closed", port)


def point_at(kubeconfig: Path, path: Path, port: int) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())  # YAML, or JSON (kube-up writes it)
    for entry in config["clusters"]:
        server = urlsplit(entry["cluster"]["server"])
        entry["cluster"]["server"] = f"{server.scheme}://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["get", "x"],
        ["get", "x", "--watch"],
        ["status", "x"],
        ["promote", "x"],
        ["set", "image", "x", "*=y:2"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_unreachable_api_is_exit_3(
    sandbox_kubeconfig: Path, tmp_path: Path, args: list[str]
) -> None:
    closed = closed_port_kubeconfig(sandbox_kubeconfig, tmp_path)
    unreachable = cli(closed, "default", *args)
    assert unreachable.exit_code == 3, unreachable.output
    lines = unreachable.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Kubernetes API: ")


class Proxy:
    """A TCP proxy on 127.0.0.1 to the API server, that the test can cut (every connection
    reset, the port closed) and restore (the same port open again)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.port = 0
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        # shutdown first: a close alone leaves a socket that a thread blocks on (accept, recv)
        # open, and the port listening
        assert self.listener is not None
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.listener = None
        with self.lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.connections += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def lines_of(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The lines of ``stream`` as a reader thread puts them in a queue (and the thread)."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line.rstrip("\n"))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return found, thread


def wait_line(lines: queue.Queue[str], seen: list[str], match: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if match(line):
            return line
    raise AssertionError(f"no such line in {seen}")


@pytest.fixture
def proxy(sandbox_kubeconfig: Path) -> Iterator[Proxy]:
    config = yaml.safe_load(sandbox_kubeconfig.read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    handle = Proxy((server.hostname or "127.0.0.1", server.port or 443))
    yield handle
    if handle.listener is not None:
        handle.cut()


def test_status_re_establishes_its_watch_when_the_connection_drops(
    cluster: Cluster,
    controller: ControllerHandle,
    sandbox_kubeconfig: Path,
    proxy: Proxy,
    tmp_path: Path,
) -> None:
    healthy_rollout(cluster, [{"setWeight": 30}, {"pause": {}}])
    cluster.set_template(pod_template("reviews", "example.com/reviews:2"))
    paused_at(cluster, 1)
    kubeconfig = point_at(sandbox_kubeconfig, tmp_path / "via-proxy", proxy.port)
    process = subprocess.Popen(
        [ROLLOUT, "status", "reviews", "-n", cluster.namespace, "--timeout", "90s"],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        (out, _), (err, err_reader) = lines_of(process.stdout), lines_of(process.stderr)
        seen_out: list[str] = []
        seen_err: list[str] = []
        wait_line(out, seen_out, lambda line: line.startswith("Paused"))
        proxy.cut()
        wait_line(err, seen_err, lambda line: "lost the watch" in line)
        cluster.promote()
        cluster.wait_healthy()
        assert process.poll() is None  # still trying, not given up
        proxy.restore()
        wait_line(out, seen_out, lambda line: line == 'rollout "reviews" is Healthy')
        assert process.wait(timeout=30) == 0
        err_reader.join(timeout=10)
        rest = []
        while not err.empty():
            rest.append(err.get())
        assert [line for line in seen_err + rest if line.startswith("warning: ")] == [seen_err[-1]]
        assert all(line.startswith("warning: lost the watch") for line in seen_err + rest)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
