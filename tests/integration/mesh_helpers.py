"""``rollout sandbox traffic`` as a process on any kubeconfig, and readers of what it exports.

``MeshProcess`` starts the command a user runs against a kubeconfig (the sandbox's or a real
control plane's: nothing here knows which), waits for the lines it prints once it serves, and
stops it with SIGTERM, checking that it exits 0 and takes its Prometheus with it.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from rollout.sandbox.prometheus import free_port

ROLLOUT = str(Path(sys.executable).parent / "rollout")
STARTUP_TIMEOUT = 45.0
METRICS_LINE = "simulated Istio metrics at "
PROMETHEUS_LINE = "prometheus at "


class MeshProcess:
    """``rollout sandbox traffic --kubeconfig K`` in its own process (a context manager)."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        rps: float = 200.0,
        prometheus: bool = False,
        metrics_port: int | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.rps = rps
        self.prometheus = prometheus
        self.metrics_port = metrics_port or free_port()
        self.prometheus_url: str | None = None
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        args = [
            ROLLOUT,
            "sandbox",
            "traffic",
            "--kubeconfig",
            str(self.kubeconfig),
            "--rps",
            f"{self.rps:g}",
            "--metrics-port",
            str(self.metrics_port),
        ]
        if self.prometheus:
            return [*args, "--prometheus-port", str(free_port())]
        return [*args, "--no-prometheus"]

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, deadline: float) -> str | None:
        try:
            return self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def start(self) -> MeshProcess:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        wanted = PROMETHEUS_LINE if self.prometheus else METRICS_LINE
        while True:
            line = self._next_line(deadline)
            if line is None:
                errors = ""
                if self.process.poll() is not None and self.process.stderr is not None:
                    errors = self.process.stderr.read()
                self.stop(check=False)
                raise RuntimeError(f"rollout sandbox traffic did not start: {errors}")
            self.lines.append(line)
            if line.startswith(PROMETHEUS_LINE):
                self.prometheus_url = line[len(PROMETHEUS_LINE) :].strip()
            if line.startswith(wanted):
                return self

    def stop(self, *, check: bool = True) -> tuple[int, str, str]:
        """SIGTERM; (exit code, rest of stdout, stderr). With ``check``, assert a clean stop."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        rest = []
        while (line := self._next_line(time.monotonic() + 5)) is not None:
            rest.append(line)
        errors = self.process.stderr.read() if self.process.stderr else ""
        if check:
            assert code == 0, f"rollout sandbox traffic exited {code}: {errors}"
            assert "simulated mesh stopped" in rest, rest
            assert "Traceback" not in errors, errors
        return code, "\n".join(rest), errors

    def __enter__(self) -> MeshProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop(check=kind is None)


def requests_by(
    metrics_url: str, namespace: str, label: str = "destination_workload"
) -> tuple[Counter[str], Counter[str]]:
    """(all requests, 5xx requests) in ``namespace`` by ``label``, read from /metrics."""
    with urllib.request.urlopen(metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    totals: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != "istio_requests_total":
                continue
            if sample.labels.get("destination_workload_namespace") != namespace:
                continue
            totals[sample.labels[label]] += int(sample.value)
            if sample.labels.get("response_code", "").startswith("5"):
                errors[sample.labels[label]] += int(sample.value)
    return totals, errors


def promql(prometheus_url: str, query: str) -> list[dict[str, Any]]:
    """The instant vector of ``query``."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        result: list[dict[str, Any]] = json.load(reply)["data"]["result"]
        return result
