"""A real Kubernetes control plane on 127.0.0.1, for the test suite and ``scripts/kube-up``.

etcd, kube-apiserver (RBAC and Node authorization, service-account token signing, the default
admission plugins), kube-controller-manager, kube-scheduler and kwok (which plays the kubelets
of fake Nodes: the Pods of our ReplicaSets are scheduled there and become Ready, so the real
ReplicaSet controller fills ``readyReplicas``/``availableReplicas``), built from the pinned Go
modules under ``hack/kube`` by ``scripts/kube-build``. Istio's CRDs (from the pinned
``istio.io/api`` module) and ours (``crds/``) are created before the kubeconfig is written.

One supervisor process owns every component: it starts them as its children (each dies with
it: ``PR_SET_PDEATHSIG``), writes ``DIR/kubeconfig`` once the API and the CRDs are ready, and
stops them all, newest first, by PID, on SIGTERM, on SIGINT or when the process it serves (its
``--parent-pid``) is gone. ``python -m tests.kube.controlplane up DIR`` starts a supervisor in
the background and returns once the kubeconfig is there (``scripts/kube-up``); ``down DIR``
stops it (``scripts/kube-down``). Only the standard library is used, so it runs before
``.venv`` exists too.

The pods' behaviour follows the sandbox's annotations (``docs/sandbox.md``):
``sandbox.rollout.dev/ready-after`` (seconds) delays readiness and
``sandbox.rollout.dev/crash: "true"`` keeps a pod Running but never Ready, with a crash-looping
container, as a kubelet would report it. These are kwok Stages (``STAGES`` below).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
NODES = 2
NODE_ANNOTATION = "kwok.x-k8s.io/node"
READY_AFTER = "sandbox.rollout.dev/ready-after"
CRASH = "sandbox.rollout.dev/crash"

# kwok Stages for Pods (the Node stages are kwok's defaults). Written here, not copied: a pod
# on a fake node becomes Running and Ready at once, after its ready-after annotation if it has
# one, or Running with a crash-looping container if it carries the crash annotation; a pod
# being deleted is deleted (graceful deletion ends at once, as kubelet would end it).
_READY_STATUS = """
{{ $now := Now }}
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  started: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
{{ end }}
{{ with PodIPsWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""

_CRASH_STATUS = """
{{ $now := Now }}
conditions:
- {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "False", reason: ContainersNotReady,
   lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "False", reason: ContainersNotReady,
   lastTransitionTime: {{ $now | Quote }}}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: false
  started: false
  restartCount: 3
  state: {waiting: {reason: CrashLoopBackOff, message: "back-off restarting failed container"}}
{{ end }}
{{ with PodIPsWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace }}
podIP: {{ index . 0 | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


_NODE_STATUS = """
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- {type: InternalIP, address: {{ NodeIP | Quote }}}
- {type: Hostname, address: {{ NodeName | Quote }}}
allocatable: {{ YAML .status.allocatable 1 }}
capacity: {{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: fake
  kubeProxyVersion: fake
phase: Running
"""


def _stage(
    name: str,
    expressions: list[dict[str, Any]],
    next_: dict[str, Any],
    kind: str = "Pod",
    **spec: Any,
) -> str:
    body = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "next": next_,
            **spec,
        },
    }
    return json.dumps(body)


_LIVE = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_PENDING = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}
_NOT_CRASHING = {
    "key": f'.metadata.annotations["{CRASH}"]',
    "operator": "NotIn",
    "values": ["true"],
}
_NODE_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'
STAGES = "\n---\n".join(
    [
        # A fake node becomes Ready at once; its Lease is renewed by kwok
        # (--node-lease-duration-seconds), which is what the node lifecycle controller reads.
        _stage(
            "node-initialize",
            [{"key": _NODE_READY, "operator": "NotIn", "values": ["True"]}],
            {"statusTemplate": _NODE_STATUS},
            kind="Node",
        ),
        _stage(
            "pod-ready",
            [
                _LIVE,
                _PENDING,
                _NOT_CRASHING,
                {"key": f'.metadata.annotations["{READY_AFTER}"]', "operator": "DoesNotExist"},
            ],
            {"statusTemplate": _READY_STATUS},
        ),
        _stage(
            "pod-ready-after",
            [
                _LIVE,
                _PENDING,
                _NOT_CRASHING,
                {"key": f'.metadata.annotations["{READY_AFTER}"]', "operator": "Exists"},
            ],
            {"statusTemplate": _READY_STATUS},
            delay={
                "durationMilliseconds": 500,
                "durationFrom": {
                    "jq": {"expression": f'.metadata.annotations["{READY_AFTER}"] + "s"'}
                },
            },
        ),
        _stage(
            "pod-crash",
            [
                _LIVE,
                _PENDING,
                {"key": f'.metadata.annotations["{CRASH}"]', "operator": "In", "values": ["true"]},
            ],
            {"statusTemplate": _CRASH_STATUS},
        ),
        _stage(
            "pod-delete",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
            {"finalizers": {"empty": True}, "delete": True},
        ),
    ]
)


# -- building blocks ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build() -> Path:
    """Build (or find in the cache) the control plane's binaries; their folder.

    Raises ``RuntimeError`` with ``scripts/kube-build``'s own words when it fails (no Go, no
    module proxy, a compile error).
    """
    done = subprocess.run(
        [str(REPO / "scripts" / "kube-build")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kube-build failed:\n{done.stderr.strip()}")
    sys.stderr.write(done.stderr)
    return Path(done.stdout.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """In a child, before exec: be sent SIGKILL when the supervisor dies (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def kubeconfig(server: str, ca: Path, token: str) -> str:
    """An admin kubeconfig (JSON is YAML) for ``server``, trusting ``ca``, with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kube", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "kube", "context": {"cluster": "kube", "user": "admin"}}],
        "current-context": "kube",
    }
    return json.dumps(config, indent=2) + "\n"


class ControlPlane:
    """The components of one control plane, started in order under ``workdir``."""

    def __init__(self, workdir: Path, binaries: Path) -> None:
        self.dir = workdir
        self.bin = binaries
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.token = secrets.token_hex(16)
        self.server = ""

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [str(self.bin / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks
        )
        log.close()
        self.children.append((name, process))
        self._write_pids()
        return process

    def _write_pids(self) -> None:
        pids = {name: p.pid for name, p in self.children}
        (self.dir / "pids.json").write_text(json.dumps({"supervisor": os.getpid(), **pids}))

    def _check_alive(self) -> None:
        for name, process in self.children:
            if process.poll() is not None:
                tail = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def _wait(self, what: str, ready: Any, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} was not ready within {timeout:.0f} s (logs in {self.dir}/logs)"
                )
            time.sleep(0.1)

    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.dir / "kubeconfig.tmp"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _api_ready(self) -> bool:
        if not (self.dir / "pki" / "apiserver.crt").exists():
            return False
        context = ssl.create_default_context(cafile=str(self.dir / "pki" / "apiserver.crt"))
        request = urllib.request.Request(
            self.server + "/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as answer:
                return bool(answer.status == 200)
        except (OSError, urllib.error.URLError, ssl.SSLError):
            return False

    def start(self) -> Path:
        """Start every component; the admin kubeconfig's path. Raises ``RuntimeError``."""
        for sub in ("logs", "pki", "etcd"):
            (self.dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        pki = self.dir / "pki"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (pki / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')

        client_port, peer_port = free_port(), free_port()
        etcd = f"http://127.0.0.1:{client_port}"
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd}",
                f"--advertise-client-urls={etcd}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"{etcd}/health"))

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                # The default plugins are always on; kubeadm clusters add NodeRestriction.
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._wait("kube-apiserver", self._api_ready)

        ca = pki / "apiserver.crt"
        admin = self.dir / "kubeconfig.tmp"
        admin.write_text(kubeconfig(self.server, ca, self.token))
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={admin}",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={ca}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--concurrent-replicaset-syncs=10",
                "--v=0",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={admin}",
                f"--authentication-kubeconfig={admin}",
                f"--authorization-kubeconfig={admin}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=0",
            ],
        )
        (self.dir / "kwok-stages.yaml").write_text(STAGES + "\n")
        self._spawn(
            "kwok",
            [
                f"--kubeconfig={admin}",
                f"--config={self.dir / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
        )
        nodes = [_node(f"kwok-node-{i}") for i in range(NODES)]
        crds = [(self.bin / "istio-crds.yaml").read_text()]
        crds += [path.read_text() for path in sorted((REPO / "crds").glob("*.yaml"))]
        self._kubectl("apply", "--server-side", "-f", "-", stdin="\n---\n".join(crds))
        self._kubectl(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}),
        )
        self._kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        self._wait("the fake nodes", self._nodes_ready)
        self._wait("the default service account", self._default_service_account)
        final = self.dir / "kubeconfig"
        os.replace(admin, final)
        (self.dir / "kubeconfig.tmp").write_text(final.read_text())
        return final

    def _nodes_ready(self) -> bool:
        out = self._kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{' '}{end}",
        )
        return out.split() == ["True"] * NODES

    def _default_service_account(self) -> bool:
        try:
            self._kubectl("get", "serviceaccount", "default", "-n", "default")
        except RuntimeError:
            return False
        return True

    def stop(self) -> None:
        """Stop every component, newest first: SIGTERM, then SIGKILL after ``STOP_TIMEOUT``."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.children.clear()


def _node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
        },
    }


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


# -- the supervisor and its commands ---------------------------------------------------------


def supervise(workdir: Path, parent_pid: int | None, remove_dir: bool = False) -> int:
    """Run a control plane until SIGTERM/SIGINT or until ``parent_pid`` is gone; exit code.

    With ``remove_dir`` (a temporary folder made for the process it serves), the folder is
    removed when that process is gone without having stopped the control plane itself (a test
    session killed with SIGKILL or SIGTERM): nothing is left behind.
    """
    stop = False
    orphaned = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    plane: ControlPlane | None = None
    try:
        plane = ControlPlane(workdir, build())
        started = time.monotonic()
        plane.start()
        (workdir / "started").write_text(f"{time.monotonic() - started:.1f}\n")
        while not stop:
            if parent_pid is not None and not _alive(parent_pid):
                orphaned = True
                break
            plane._check_alive()
            time.sleep(0.5)
        return 0
    except Exception as error:  # noqa: BLE001 - reported to whoever waits on the folder
        (workdir / "failed").write_text(f"{error}\n")
        return 1
    finally:
        if plane is not None:
            plane.stop()
        (workdir / "pids.json").unlink(missing_ok=True)
        if orphaned and remove_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock(workdir: Path) -> int:
    """An open descriptor holding ``DIR/lock`` exclusively; ``RuntimeError`` if a supervisor has it.

    The supervisor inherits the descriptor, so the lock lives exactly as long as it does (a
    ``flock`` belongs to the open file, not to a process): a second ``kube-up DIR`` is refused
    at once instead of starting a second etcd on the same data and orphaning the first.
    """
    fd = os.open(workdir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (
            (workdir / "supervisor.pid").read_text().strip()
            if (workdir / "supervisor.pid").exists()
            else "?"
        )
        raise RuntimeError(
            f"a control plane already runs in {workdir} (supervisor PID {pid}); "
            f"stop it first with scripts/kube-down {shlex.quote(str(workdir))}"
        ) from None
    return fd


def start_background(
    workdir: Path,
    parent_pid: int | None = None,
    timeout: float = 1800.0,
    remove_dir: bool = False,
) -> Path:
    """Start a supervisor for ``workdir`` in its own session; its kubeconfig once ready.

    ``timeout`` covers a cold build of the binaries (minutes on 2 cores) plus start-up. Raises
    ``RuntimeError`` with the supervisor's reason when it fails, or at once, changing nothing,
    when a supervisor already runs in ``workdir``. Interrupted (``KeyboardInterrupt``), it
    stops the supervisor it started before re-raising. ``remove_dir``: see ``supervise``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    lock = _lock(workdir)
    try:
        for stale in ("kubeconfig", "failed", "started", "pids.json"):
            (workdir / stale).unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.kube.controlplane", "supervise", str(workdir)]
        if parent_pid is not None:
            command += ["--parent-pid", str(parent_pid)]
        if remove_dir:
            command += ["--remove-dir"]
        log = open(workdir / "supervisor.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            pass_fds=(lock,),
        )
        log.close()
    finally:
        os.close(lock)
    (workdir / "supervisor.pid").write_text(f"{process.pid}\n")
    try:
        return _wait_started(workdir, process, timeout)
    except KeyboardInterrupt:
        stop_background(workdir)
        raise


def _wait_started(workdir: Path, process: subprocess.Popen[bytes], timeout: float) -> Path:
    """Wait for the supervisor's ``started`` (its kubeconfig) or ``failed`` (``RuntimeError``)."""
    deadline = time.monotonic() + timeout
    while not (workdir / "started").exists():
        if (workdir / "failed").exists() or process.poll() is not None:
            process.wait(timeout=STOP_TIMEOUT * 6)
            reason = (workdir / "failed").read_text() if (workdir / "failed").exists() else ""
            log_tail = (workdir / "supervisor.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the control plane did not start: {reason or log_tail}")
        if time.monotonic() > deadline:
            stop_background(workdir)
            raise RuntimeError(f"the control plane did not start within {timeout:.0f} s")
        time.sleep(0.2)
    return workdir / "kubeconfig"


def failure(kubeconfig: Path) -> str | None:
    """Why the control plane serving ``kubeconfig`` stopped (a component exited), or ``None``."""
    failed = kubeconfig.parent / "failed"
    try:
        return failed.read_text().strip() or "the supervisor gave no reason"
    except OSError:
        return None


def stop_background(workdir: Path) -> bool:
    """Stop the supervisor of ``workdir`` (SIGTERM, then SIGKILL) and any component left."""
    pid_file = workdir / "supervisor.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT * 6
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    leftovers = workdir / "pids.json"
    if leftovers.exists():
        for child in json.loads(leftovers.read_text()).values():
            # A PID from a supervisor killed long ago may now be someone else's process: only
            # one whose command line names this folder is ours.
            if _alive(int(child)) and _names(int(child), workdir):
                os.kill(int(child), signal.SIGKILL)
        leftovers.unlink(missing_ok=True)
    pid_file.unlink(missing_ok=True)
    (workdir / "kubeconfig").unlink(missing_ok=True)
    return True


def _names(pid: int, workdir: Path) -> bool:
    """Whether process ``pid``'s command line mentions ``workdir`` (every component's does)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(workdir).encode() in cmdline


def main(argv: Sequence[str] | None = None) -> int:
    """``up DIR`` / ``down DIR`` / ``supervise DIR [--parent-pid N]``; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.kube.controlplane")
    parser.add_argument("command", choices=["up", "down", "supervise"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--remove-dir", action="store_true")
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()
    if args.command == "supervise":
        return supervise(workdir, args.parent_pid, args.remove_dir)
    if args.command == "down":
        if not stop_background(workdir):
            print(f"kube-down: no control plane runs in {workdir}", file=sys.stderr)
            return 1
        print(f"control plane in {workdir} stopped")
        return 0
    try:
        started = time.monotonic()
        config = start_background(workdir)
    except RuntimeError as error:
        print(f"kube-up: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # DIR is a file, not writable, ...
        print(f"kube-up: cannot use {workdir}: {error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kube-up: interrupted; the control plane it was starting is stopped", file=sys.stderr)
        return 130
    print(f"control plane up in {time.monotonic() - started:.1f} s")
    quoted = shlex.quote(str(config))
    print(f"kubeconfig written to {config} (export KUBECONFIG={quoted})")
    print(f"stop it with: scripts/kube-down {shlex.quote(str(workdir))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
