"""The sandbox cluster: API emulator, garbage collector and workload simulator, wired together.

``Sandbox`` starts everything on 127.0.0.1 (port 0 picks a free one), creates the namespaces a
new cluster has (default, kube-system, kube-public) and the project's CRDs, and writes a
kubeconfig for the official client once the API answers. ``rollout sandbox up`` runs it in the
foreground; tests start that command.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rollout.sandbox.admission import SandboxAdmission
from rollout.sandbox.gc import GarbageCollector
from rollout.sandbox.resources import Registry
from rollout.sandbox.server import Api, SandboxServer, make_server
from rollout.sandbox.store import Store
from rollout.sandbox.workloads import WorkloadSimulator

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")


def project_crds() -> Path | None:
    """The project's ``crds/`` (shipped in the wheel as ``rollout/_crds``)."""
    for candidate in (
        Path(__file__).resolve().parents[1] / "_crds",
        Path(__file__).resolve().parents[2] / "crds",
    ):
        if candidate.is_dir():
            return candidate
    return None


class Sandbox:
    def __init__(
        self,
        port: int = 0,
        *,
        crds: Path | None = None,
        bookmark_every: float = 1.0,
        quiet: bool = True,
        history: int = 50_000,
    ) -> None:
        self.registry = Registry()
        # ``history``: watch events kept; older versions answer 410 Gone (tests make it small).
        self.store = Store(SandboxAdmission(self.registry), history=history)
        self.api = Api(self.store, self.registry, bookmark_every=bookmark_every)
        self.server: SandboxServer = make_server(self.api, port)
        self.server.RequestHandlerClass.quiet = quiet  # type: ignore[attr-defined]
        self.crds = crds if crds is not None else project_crds()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        namespaces = self.registry.lookup("", "v1", "namespaces")
        for name in INITIAL_NAMESPACES:
            self.store.create(namespaces, None, {"metadata": {"name": name}})
        crd_type = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for crd in self._crd_documents():
            self.store.create(crd_type, None, crd)
        GarbageCollector(self.store, self.registry).start()
        WorkloadSimulator(self.store, self.registry).start()
        thread = threading.Thread(
            target=self.server.serve_forever, name="sandbox-http", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        self._wait_until_answering()

    def _crd_documents(self) -> list[dict[str, Any]]:
        if self.crds is None:
            return []
        docs = []
        for path in sorted(self.crds.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    docs.append(doc)
        return docs

    def _wait_until_answering(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/version", timeout=1) as reply:
                    json.load(reply)
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {"cluster": "sandbox", "user": "sandbox", "namespace": namespace},
                }
            ],
            "current-context": "sandbox",
        }

    def write_kubeconfig(self, path: Path) -> None:
        """Write atomically, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig-")
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(self.kubeconfig(), out, sort_keys=False)
        os.replace(tmp, path)

    def stop(self) -> None:
        self.store.close()
        self.server.shutdown()
        self.server.server_close()
