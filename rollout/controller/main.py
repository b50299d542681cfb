"""``rollout controller``: the long-running process, with health, metrics and leader election.

Start-up: connect (in-cluster, else kubeconfig), serve ``/healthz`` and ``/readyz`` and the
metrics, fill the watch caches, then reconcile — at once, or once this replica holds the Lease.
SIGTERM or Ctrl-C: stop taking work, let running reconciles finish, release the Lease, exit 0.

With leader election every write but the Lease's goes through a ``WriteFence`` (the
``FencedAccess`` wrapper, and ``KubeAccess`` before each retry): it is refused unless this
replica renewed the Lease within the renew deadline. A replica that loses the Lease stops its
workers and exits 1 (client-go's default), so that it restarts clean and campaigns again.

Sharding: ``--shard-selector`` (a label selector, checked as Kubernetes parses it before
anything starts: a bad one is exit 2) limits this controller to the Rollouts it selects, and
gives it a Lease of its own (``--lease-name``, by default derived from the selector), so that
several controller Deployments split the Rollouts while the replicas of each elect one leader.
Each Event it records names it (``reportingInstance``: the identity it holds the Lease with).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

log = logging.getLogger("rollout.controller")
# The field manager of every write (managedFields; a GitOps tool's apply conflicts name it).
FIELD_MANAGER = "rollout-controller"


@dataclass
class Options:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    workers: int = 4
    metrics_port: int = 8080
    health_port: int = 8081
    bind_address: str = "127.0.0.1"
    leader_elect: bool = True
    lease_namespace: str = "default"
    lease_name: str | None = None  # default: leader.lease_name_for(shard_selector)
    shard_selector: str | None = None
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    prometheus_url: str | None = None
    log_format: str = "text"
    log_level: str = "info"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # apscheduler logs every job it adds and runs at INFO: one per timer, not worth a line.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))


def serve_health(address: str, port: int, ready: threading.Event) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                code = 200
            elif self.path == "/readyz":
                code = 200 if ready.is_set() else 503
            else:
                code = 404
            body = (b"ok" if code == 200 else b"not ready") if code != 404 else b"not found"
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer((address, port), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def run_controller(options: Options) -> int:
    setup_logging(options.log_format, options.log_level)
    from rollout.cluster.access import ClusterAccess, ClusterError
    from rollout.cluster.fence import FencedAccess, WriteFence
    from rollout.cluster.kube import KubeAccess, load_api_client
    from rollout.cluster.selector import SelectorError, parse
    from rollout.controller.leader import (
        LeaderElector,
        check_durations,
        check_lease_name,
        default_identity,
        lease_name_for,
    )
    from rollout.controller.metrics import Metrics
    from rollout.controller.runtime import Controller

    try:
        check_durations(options.lease_duration, options.renew_deadline, options.retry_period)
        selector = None if options.shard_selector is None else parse(options.shard_selector)
        if selector is not None and not selector.requirements:
            raise SelectorError("it is empty (leave --shard-selector out to own every Rollout)")
        lease_name = options.lease_name or lease_name_for(str(selector) if selector else None)
        check_lease_name(lease_name)
    except SelectorError as error:
        print(f"rollout controller: --shard-selector: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"rollout controller: {error}", file=sys.stderr)
        return 2
    shard = str(selector) if selector is not None else None
    identity = default_identity()
    fence = WriteFence(options.renew_deadline) if options.leader_elect else None
    try:
        api_client = load_api_client(options.kubeconfig, options.context)
        # The Lease has its own client: one attempt per retry period (the elector is the
        # retry loop), bounded as client-go's users bound it (renew deadline / 2), never
        # queued behind the workers' requests, and never fenced.
        lease_access = KubeAccess(
            load_api_client(options.kubeconfig, options.context),
            attempts=1,
            request_timeout=max(options.renew_deadline / 2, 0.5),
            field_manager=FIELD_MANAGER,
        )
    except Exception as error:  # a bad kubeconfig: one clear line, not a traceback
        print(f"rollout controller: cannot load cluster configuration: {error}", file=sys.stderr)
        return 1
    kube = KubeAccess(
        api_client,
        before_write=fence.check if fence is not None else None,
        field_manager=FIELD_MANAGER,
        reporting_instance=identity,
    )
    access: ClusterAccess = FencedAccess(kube, fence) if fence is not None else kube
    metrics = Metrics()
    metrics.shard.labels(shard or "", lease_name if options.leader_elect else "").set(1)
    controller = Controller(
        access,
        namespace=options.namespace,
        workers=options.workers,
        metrics=metrics,
        prometheus_url=options.prometheus_url,
        shard_selector=shard,
    )
    try:
        if options.metrics_port:
            metrics.serve(options.metrics_port, options.bind_address)
        health = (
            serve_health(options.bind_address, options.health_port, controller.ready)
            if options.health_port
            else None
        )
    except OSError as error:
        print(f"rollout controller: cannot listen: {error}", file=sys.stderr)
        return 1
    stop = threading.Event()
    lost = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "starting as %s: namespace=%s shard=%s workers=%d",
        identity,
        options.namespace or "(all)",
        shard or "(all Rollouts)",
        options.workers,
    )
    if not controller.start_caches():
        log.error("watch caches did not fill; is the API reachable and are the CRDs installed?")
        return 1
    if shard is not None:
        # Rollouts that no shard selects are reconciled by nobody: say what this one owns.
        owned = len(controller.informers["rollouts"].list())
        log.info("shard %s owns %d Rollouts (Lease %s)", shard, owned, lease_name)
    elector = None
    if options.leader_elect:
        elector = LeaderElector(
            lease_access,
            options.lease_namespace,
            lease_name,
            identity=identity,
            lease_duration=options.lease_duration,
            renew_deadline=options.renew_deadline,
            retry_period=options.retry_period,
            fence=fence,
        )

        def on_lost() -> None:
            lost.set()
            stop.set()

        thread = threading.Thread(
            target=elector.run, args=(controller.start_workers, on_lost, stop), daemon=True
        )
        thread.start()
    else:
        controller.start_workers()
    stop.wait()
    log.info("stopping")
    controller.stop()
    if elector is not None:
        try:
            elector.release()
        except ClusterError:
            pass
    if health is not None:
        health.shutdown()
    return 1 if lost.is_set() else 0
