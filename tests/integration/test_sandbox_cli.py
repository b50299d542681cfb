"""``rollout sandbox up`` as a user runs it: a subprocess, a kubeconfig, SIGTERM, a busy port."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.sandbox_helpers import client_from, core_v1

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sandbox_only(reason="tests `rollout sandbox up` itself (its own process)"),
]

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_up_writes_kubeconfig_once_serving_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "sub" / "kubeconfig"
    port = _free_port()
    process = subprocess.Popen(
        [
            ROLLOUT,
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--port",
            str(port),
            "--no-prometheus",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no kubeconfig in time"
            time.sleep(0.02)
        # The file appears only once the API answers: /version works at once.
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/version", timeout=2) as reply:
            assert json.load(reply)["major"] == "1"
        document = yaml.safe_load(kubeconfig.read_text())
        assert document["clusters"][0]["cluster"]["server"] == url
        api = client_from(str(kubeconfig))
        names = {n.metadata.name for n in core_v1(api).list_namespace().items}
        assert {"default", "kube-system", "kube-public"} <= names
        api.rest_client.pool_manager.clear()

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=5)
        assert time.monotonic() - started < 5
        assert process.returncode == 0, err
        assert url in out
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_up_on_a_busy_port_fails_in_one_line(tmp_path: Path, busy_port: int) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    result = subprocess.run(
        [
            ROLLOUT,
            "sandbox",
            "up",
            "--kubeconfig",
            str(kubeconfig),
            "--port",
            str(busy_port),
            "--no-prometheus",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(busy_port) in lines[0]
    assert not kubeconfig.exists()
