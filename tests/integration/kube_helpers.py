"""Helpers for the tests that only a real kube-apiserver can answer (``test_kube_*.py``).

The real ``kubectl`` and ``helm`` binaries, a kubeconfig for a ServiceAccount (a token from the
TokenRequest API), and ``rollout controller`` run as a process, as a user runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROLLOUT

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rollout-controller"
# helm's offline default is v1.20, below the chart's kubeVersion: render for the real server.
KUBE_VERSION = "1.34.4"


class Kubectl:
    """The real ``kubectl`` 1.32 with one kubeconfig and a private cache directory."""

    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:  # a skip would hide a broken setup
            pytest.fail("kubectl is not on PATH", pytrace=False)
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(cache),
            "HOME": str(cache),
        }

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """stdout of a command that must succeed."""
        result = self(*args, stdin=stdin)
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
        return result.stdout


def helm() -> str:
    """The helm binary: ``$HELM``, PATH, or the control plane's build cache (scripts/kube-build)."""
    candidates = [os.environ.get("HELM"), shutil.which("helm")]
    built = subprocess.run(
        [str(ROOT / "scripts" / "kube-build")], capture_output=True, text=True, check=False
    )
    if built.returncode == 0 and built.stdout.strip():
        candidates.append(str(Path(built.stdout.strip().splitlines()[-1]) / "helm"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "helm not found: put it on PATH, set HELM, or run scripts/kube-build", pytrace=False
    )


def render_chart(release: str, namespace: str, *sets: str, include_crds: bool = False) -> str:
    """``helm template`` of the chart; each of ``sets`` is one ``--set key=value``."""
    args = [helm(), "template", release, str(CHART), "-n", namespace]
    args += ["--kube-version", KUBE_VERSION]
    if include_crds:
        args.append("--include-crds")
    for value in sets:
        args += ["--set", value]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def service_account_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A copy of the ``admin`` kubeconfig (same server and CA) whose only user is ``token``."""
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": "service-account", "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = "service-account"
    path.write_text(yaml.safe_dump(config))
    return path


class ControllerProcess:
    """``rollout controller`` as a process (the console script a user runs), logging to a file."""

    def __init__(self, kubeconfig: Path, log: Path, args: Sequence[str]) -> None:
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [ROLLOUT, "controller", "--kubeconfig", str(kubeconfig), *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._out.close()


def forbidden_lines(log: str) -> list[str]:
    """The lines of a controller log that report an authorization failure (HTTP 403)."""
    return [line for line in log.splitlines() if "403" in line or "forbidden" in line.lower()]
