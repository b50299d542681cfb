"""Which cluster the e2e tests run on: the suite's backend (``ROLLOUT_TEST_BACKEND``).

``sandbox`` (the default): each test starts what it needs (``rollout demo``'s own sandbox,
``rollout sandbox up``). ``kube``: the tests run on the existing cluster whose admin kubeconfig
is ``ROLLOUT_TEST_KUBECONFIG`` (the real control plane; a ``rollout sandbox up`` works too), each
in a namespace of its own that it deletes at the end.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes import watch as watch_module

from tests import oracle, oracle_known
from tests.kube import BACKEND_ENV, KUBECONFIG_ENV
from tests.oracle_watch import OracleWatch


def backend() -> str:
    """``sandbox`` or ``kube``."""
    return os.environ.get(BACKEND_ENV, "sandbox")


def on_kube() -> bool:
    return backend() == "kube"


def kubeconfig() -> Path:
    """The existing cluster's admin kubeconfig (kube backend only)."""
    return Path(os.environ[KUBECONFIG_ENV])


def fresh_namespace(prefix: str) -> str:
    """A namespace name no earlier test used (tests share the kube backend's cluster)."""
    return f"{prefix}-{secrets.token_hex(3)}"


def wait_gone(api_client: client.ApiClient, namespace: str, timeout: float = 90.0) -> None:
    """Poll until ``namespace`` no longer exists."""
    core: Any = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        names = {ns.metadata.name for ns in core.list_namespace().items}
        if namespace not in names:
            return
        assert time.monotonic() < deadline, f"namespace {namespace} still exists"
        time.sleep(0.2)


class DeletionMark:
    """The resourceVersion at which ``namespace`` was marked for deletion, seen by a watch.

    On an existing cluster ``rollout demo`` deletes its namespace on exit: every version of the
    namespace's objects from then on is the clean-up, not the rollout, and is left out of what
    the safety oracle judges (resourceVersions are one order for every kind).
    """

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.rv: int | None = None
        self._core: Any = client.CoreV1Api(api_client)
        watches: Any = watch_module  # the client's watch helper has no type hints
        self._watch: Any = watches.Watch()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DeletionMark:
        listed = self._core.list_namespace()
        self._since = listed.metadata.resource_version
        self._thread.start()
        return self

    def _run(self) -> None:
        for event in self._watch.stream(
            self._core.list_namespace, resource_version=self._since, timeout_seconds=600
        ):
            meta = event["object"].metadata
            if meta.name != self.namespace:
                continue
            if meta.deletion_timestamp is not None or event["type"] == "DELETED":
                self.rv = int(meta.resource_version)
                self._ready.set()
                self._watch.stop()
                return

    def wait(self, timeout: float = 30.0) -> int:
        assert self._ready.wait(timeout), f"namespace {self.namespace} was not deleted"
        assert self.rv is not None
        return self.rv


def verify_before(watch_: OracleWatch, nodeid: str, rv: int | None) -> list[oracle.Violation]:
    """The safety oracle's violations (not allowlisted) among the versions before ``rv``."""
    end = time.monotonic()
    watch_.stop()
    history = [v for v in watch_.history() if rv is None or v.rv < rv]
    return oracle_known.unexpected(nodeid, oracle.check(history, end=end))
