"""A real Prometheus for the sandbox: Debian's ``prometheus`` binary on 127.0.0.1.

Started with a temporary data directory and a generated configuration that scrapes the given
targets every ``scrape_interval``; it listens on ``port``, or on a free port when that is 0.
Ready once ``/-/ready`` answers; stopped by its PID. Without the binary it says how to install
it. Given ``openmetrics`` text (samples with timestamps, ending ``# EOF``), its data directory is
first filled with them by ``promtool tsdb create-blocks-from openmetrics``, so that tests and
benchmarks query exact, known data.
On Linux it is also sent SIGTERM when the thread that started it dies (``PR_SET_PDEATHSIG``),
so a ``rollout sandbox up``/``sandbox traffic``/``demo`` or a test session killed with SIGKILL
does not leave a Prometheus behind.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import yaml

INSTALL_HINT = "Prometheus is not installed: apt-get install -y --no-install-recommends prometheus"


class PrometheusMissing(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies; else ``None``.

    ``prctl`` is looked up before the fork, so the child only makes the one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def child() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return child


class PrometheusServer:
    def __init__(
        self,
        targets: list[str],
        *,
        port: int = 19090,
        scrape_interval: str = "1s",
        openmetrics: str | None = None,
    ) -> None:
        self.targets = targets
        self.port = port
        self.scrape_interval = scrape_interval
        self.openmetrics = openmetrics
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._log: BinaryIO | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusMissing(INSTALL_HINT)
        if self.port == 0:
            self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="rollout-prometheus-")
        workdir = Path(self._dir.name)
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "scrape_configs": [
                {"job_name": "istio-sidecars", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        if self.openmetrics is not None:
            self._backfill(workdir)
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl, no locks
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                log = (workdir / "prometheus.log").read_text()[-2000:]
                self.stop()
                raise RuntimeError(f"prometheus exited at start:\n{log}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("prometheus did not become ready")
            time.sleep(0.1)

    def _backfill(self, workdir: Path) -> None:
        """Write ``openmetrics`` into the data directory as TSDB blocks (promtool)."""
        assert self.openmetrics is not None
        promtool = shutil.which("promtool")
        if promtool is None:
            self.stop()
            raise PrometheusMissing(INSTALL_HINT)
        source = workdir / "backfill.om"
        source.write_text(self.openmetrics)
        done = subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(source),
                str(workdir / "data"),
            ],
            capture_output=True,
            check=False,
        )
        source.unlink()
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"promtool could not backfill the data:\n{output}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
