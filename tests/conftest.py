"""The test suite's backend: the sandbox (our API emulator) or a real Kubernetes control plane.

``--backend sandbox`` (the default) or ``--backend kube``, or ``ROLLOUT_TEST_BACKEND``. On
``kube`` the pytest process (the xdist controller, when tests run with ``-n``) builds and starts
one control plane (``tests/kube/controlplane.py``: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) before any test, shares its kubeconfig with every worker through
``ROLLOUT_TEST_KUBECONFIG``, and stops it when the session ends. If it cannot start, the run
fails; a real-control-plane run never skips.

Tests marked ``sandbox_only`` test the emulator itself (its command line, its simulator) and are
deselected on ``kube``; tests marked ``kube_only`` need what only a real apiserver has and are
deselected on ``sandbox``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.kube import BACKEND_ENV, KUBECONFIG_ENV

BACKENDS = ("sandbox", "kube")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get(BACKEND_ENV, "sandbox"),
        help="the API server the integration and e2e tests run on (env ROLLOUT_TEST_BACKEND)",
    )


def backend(config: pytest.Config) -> str:
    """``sandbox`` or ``kube``: the backend this run's integration and e2e tests use."""
    return str(config.getoption("--backend"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox_only(reason): tests the sandbox itself; deselected on --backend kube"
    )
    config.addinivalue_line(
        "markers", "kube_only: needs a real kube-apiserver; deselected on --backend sandbox"
    )
    os.environ[BACKEND_ENV] = backend(config)
    if backend(config) != "kube" or hasattr(config, "workerinput"):
        return  # an xdist worker uses the controller's control plane
    from tests.kube import controlplane

    workdir = Path(tempfile.mkdtemp(prefix="rollout-kube-"))
    try:
        kubeconfig = controlplane.start_background(workdir, parent_pid=os.getpid(), remove_dir=True)
    except RuntimeError as error:
        shutil.rmtree(workdir, ignore_errors=True)  # the reason is in the message
        raise pytest.UsageError(f"--backend kube: {error}") from error
    os.environ[KUBECONFIG_ENV] = str(kubeconfig)
    config.stash[_WORKDIR] = workdir


_WORKDIR = pytest.StashKey[Path]()


def pytest_unconfigure(config: pytest.Config) -> None:
    workdir = config.stash.get(_WORKDIR, None)
    if workdir is None:
        return
    from tests.kube import controlplane

    controlplane.stop_background(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """On ``kube``: a control plane that died mid-run fails each later test with its reason.

    Without this, every test after a component's death (kube-apiserver, etcd, ...) fails with
    a bare "connection refused", and the supervisor's reason (which component, its last log
    lines) is lost with the temporary folder.
    """
    where = os.environ.get(KUBECONFIG_ENV)
    if backend(item.config) != "kube" or not where:
        return
    from tests.kube import controlplane

    reason = controlplane.failure(Path(where))
    if reason is not None:
        pytest.fail(f"--backend kube: the control plane stopped mid-run: {reason}", pytrace=False)


def pytest_report_header(config: pytest.Config) -> str:
    where = os.environ.get(KUBECONFIG_ENV, "")
    return f"backend: {backend(config)}" + (f" ({where})" if where else "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unwanted = "sandbox_only" if backend(config) == "kube" else "kube_only"
    kept = [item for item in items if item.get_closest_marker(unwanted) is None]
    dropped = [item for item in items if item.get_closest_marker(unwanted) is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
