"""docs/quickstart.md works as written: its commands, run in order (issue 15 item 5).

The commands are the ``sh`` code blocks marked by an HTML comment just above them, which a
reader does not see:

- ``<!-- quickstart-test: run -->``: each line is run with ``bash -c`` in the repository's root,
  in order, and must exit 0 within ``COMMAND_TIMEOUT`` seconds;
- ``<!-- quickstart-test: background ready="TEXT" -->``: the block's one command is started in
  the background (the reader's "terminal of its own") and the test goes on once TEXT shows in
  its output; at the end each is stopped as the reader stops it, with SIGINT (Ctrl-C), by PID.

``export NAME=VALUE`` lines set the environment of every later command, as in the reader's
terminals. Blocks without a mark (the one-time setup) are not run: ``rollout`` comes from this
interpreter's ``bin`` directory on ``PATH``. Two things are substituted so that the test can
run beside others on one machine: ``/tmp/quickstart`` becomes a fresh temporary directory and
the Prometheus port ``19090`` a free one. The end state is asserted after the steps that the
document says change it: the VirtualService's weights after the update (50/50), after promote
and after abort (100/0), and the Rollout's stable image and phase.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rollout.sandbox.prometheus import INSTALL_HINT
from tests.integration.sandbox_helpers import apps_v1, client_from, custom_objects
from tests.oracle_watch import OracleWatch

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "quickstart.md"
COMMAND_TIMEOUT = 150.0
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
NAMESPACE = "quickstart"

_MARK = re.compile(
    r"<!-- quickstart-test: (?P<kind>run|background)(?: ready=\"(?P<ready>[^\"]+)\")? -->\n"
    r"```sh\n(?P<body>.*?)```",
    re.S,
)
_EXPORT = re.compile(r"^export ([A-Za-z_][A-Za-z0-9_]*)=(\S+)$")


@dataclass
class Block:
    kind: str
    ready: str | None
    lines: list[str]


def blocks(text: str) -> list[Block]:
    """The marked ``sh`` blocks of the document, in order, one command per line."""
    found = []
    for match in _MARK.finditer(text):
        body = match.group("body").replace("\\\n", " ")
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        found.append(Block(match.group("kind"), match.group("ready"), lines))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Background:
    command: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def start_reading(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)

        threading.Thread(target=read, daemon=True).start()

    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, ready: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while ready not in self.text():
            assert self.process.poll() is None, f"{self.command} exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"{self.command}: no {ready!r}:\n{self.text()}"
            time.sleep(0.05)

    def interrupt(self) -> int | None:
        """Ctrl-C by PID; SIGKILL if it has not exited in time. The exit status, or None."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


class Reader:
    """Runs the document's commands as a reader would, in one environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.substitutions = {
            "/tmp/quickstart": str(tmp_path / "quickstart"),
            "19090": str(free_port()),
        }
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        self.env.pop("KUBECONFIG", None)
        self.env["HOME"] = str(tmp_path)  # kubectl's cache, nothing of the user's
        self.background: list[Background] = []
        self.outputs: list[str] = []

    def substitute(self, line: str) -> str:
        for old, new in self.substitutions.items():
            line = line.replace(old, new)
        return line

    def commands(self, block: Block) -> list[str]:
        """The block's commands after its exports (which set the environment)."""
        out = []
        for raw in block.lines:
            line = self.substitute(raw)
            export = _EXPORT.match(line)
            if export:
                self.env[export.group(1)] = export.group(2)
            else:
                out.append(line)
        return out

    def run(self, block: Block) -> str:
        """Each command in turn must exit 0; returns the output of the block's last command."""
        last = ""
        for command in self.commands(block):
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, (command, done.returncode, done.stdout, done.stderr)
            last = done.stdout
        self.outputs.append(last)
        return last

    def start(self, block: Block) -> Background:
        [command] = self.commands(block)
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = Background(command, process)
        self.background.append(started)
        started.start_reading()
        if block.ready:
            started.wait_for(block.ready)
        return started

    def stop_all(self) -> dict[str, int | None]:
        """Ctrl-C in the reverse order of starting (the watch, the controller, the sandbox)."""
        return {b.command: b.interrupt() for b in reversed(self.background)}


def test_the_document_marks_what_it_runs() -> None:
    found = blocks(DOC.read_text())
    kinds = [b.kind for b in found]
    assert kinds.count("background") == 3 and kinds.count("run") == 4, kinds
    text = "\n".join(line for b in found for line in b.lines)
    for command in (
        "rollout sandbox up",
        "rollout controller --prometheus-url",
        "kubectl apply -f docs/examples/quickstart/",
        "rollout set image",
        "rollout get reviews -n quickstart --watch",
        "rollout promote",
        "rollout abort",
    ):
        assert command in text, command


def _weights(api: Any) -> list[int]:
    vs = custom_objects(api).get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", NAMESPACE, "virtualservices", "reviews"
    )
    return [int(d["weight"]) for d in vs["spec"]["http"][0]["route"]]


def _stable_image(api: Any) -> tuple[str, str]:
    """(phase, image of the stable revision's ReplicaSet)."""
    ro = custom_objects(api).get_namespaced_custom_object(
        "rollout.dev", "v1alpha1", NAMESPACE, "rollouts", "reviews"
    )
    stable = ro["status"]["stableRevision"]
    rs = apps_v1(api).read_namespaced_replica_set(f"reviews-{stable}", NAMESPACE)
    return ro["status"]["phase"], rs.spec.template.spec.containers[0].image


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.fail(INSTALL_HINT)
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not on PATH")
    found = blocks(DOC.read_text())
    reader = Reader(tmp_path)
    watch: OracleWatch | None = None
    stopped: dict[str, int | None] = {}
    try:
        sandbox, controller_block, apply, watch_block, update, promote, abort = found
        reader.start(sandbox)
        reader.start(controller_block)
        kubeconfig = reader.env["KUBECONFIG"]
        api = client_from(kubeconfig)
        watch = OracleWatch(client_from(kubeconfig), [NAMESPACE]).start()

        reader.run(apply)
        assert _weights(api) == [100, 0]
        assert _stable_image(api) == ("Healthy", "example.com/shop/reviews:1.0.0")
        watcher = reader.start(watch_block)

        assert reader.run(update).split() == ["50", "50"]
        assert _weights(api) == [50, 50]

        assert reader.run(promote).split() == ["100", "0"]
        assert _stable_image(api) == ("Healthy", "example.com/shop/reviews:1.1.0")

        assert reader.run(abort).split() == ["100", "0"]
        assert _weights(api) == [100, 0]
        assert _stable_image(api) == ("Degraded", "example.com/shop/reviews:1.1.0")
        # The watch redrew through the update: it showed the pause and the abort.
        shown = watcher.text()
        assert "Paused" in shown and "Degraded" in shown, shown[-2000:]
    finally:
        if watch is not None:
            watch.stop()
        stopped = reader.stop_all()
    # Ctrl-C ends each of them, without a traceback.
    for command, status in stopped.items():
        assert status is not None, f"{command} did not stop on Ctrl-C"
    for background in reader.background:
        assert "Traceback" not in background.text(), background.text()[-3000:]
