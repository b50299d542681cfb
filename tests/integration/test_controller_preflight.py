"""Preflight on the sandbox with a real Prometheus: no canary gets traffic before its gate's
every check resolves and its query is accepted (issue 12, section 3).

Each test deploys v1 (at once: the first revision), then v2 whose steps start at 20%, and
records every version of the VirtualService: a bad gate must leave it at 100/0 throughout.
A small HTTP proxy in front of Prometheus counts the queries the controller sends.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollout.sandbox.prometheus import PrometheusServer, free_port
from tests.integration.controller_helpers import (
    Cluster,
    ControllerHandle,
    Recorder,
    canary_weight,
    condition,
    consistently,
    destination_rule,
    rollout_manifest,
    virtual_service,
)
from tests.integration.prometheus_fixtures import start_prometheus
from tests.integration.sandbox_helpers import GROUP, VERSION, Obj

pytestmark = pytest.mark.integration

TEMPLATE_QUERY = (
    'sum(rate(istio_requests_total{destination_workload_namespace="{{namespace}}"}[{{interval}}]))'
)


class QueryLog(ThreadingHTTPServer):
    """A proxy in front of Prometheus that keeps every PromQL query it forwards."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream
        self.queries: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def seen(self, fragment: str) -> int:
        with self.lock:
            return sum(fragment in q for q in self.queries)


class _Forward(BaseHTTPRequestHandler):
    server: QueryLog

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _forward(self, body: bytes | None) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        form = urllib.parse.parse_qs(parsed.query)
        if body:
            form.update(urllib.parse.parse_qs(body.decode()))
        with self.server.lock:
            self.server.queries.extend(form.get("query", []))
        request = urllib.request.Request(
            self.server.upstream + self.path, data=body, method=self.command
        )
        if body:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                status, data = reply.status, reply.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))


class Failing(ThreadingHTTPServer):
    """A "Prometheus" that answers every request with HTTP 503, and counts them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Unavailable)
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Unavailable(BaseHTTPRequestHandler):
    server: Failing

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _fail(self) -> None:
        self.server.requests += 1  # one handler thread at a time is enough here
        data = b'{"status":"error","errorType":"unavailable","error":"overloaded"}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _fail


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    server = start_prometheus([])  # no targets: preflight asks whether a query is accepted
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def query_log(prometheus: PrometheusServer) -> Iterator[QueryLog]:
    proxy = QueryLog(prometheus.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def start_controller(kubeconfig: Path, namespace: str, url: str | None) -> ControllerHandle:
    handle = ControllerHandle(kubeconfig, namespace, prometheus_url=url)
    handle.start()
    return handle


@pytest.fixture
def proxied_controller(
    sandbox_kubeconfig: Path, namespace: str, query_log: QueryLog
) -> Iterator[ControllerHandle]:
    handle = start_controller(sandbox_kubeconfig, namespace, query_log.url)
    try:
        yield handle
    finally:
        handle.stop()


def gate(*checks: Obj, **prometheus: Any) -> Obj:
    return {
        "interval": "2s",
        "prometheus": {"scrapeInterval": "1s", "timeout": "1s", **prometheus},
        "checks": list(checks),
    }


TEMPLATED = {"name": "custom", "templateRef": {"name": "requests"}}


def template(name: str = "requests", query: str = TEMPLATE_QUERY, args: Any = None) -> Obj:
    spec: Obj = {"query": query, "max": 1000000}
    if args is not None:
        spec["args"] = args
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": spec,
    }


def create_template(cluster: Cluster, body: Obj) -> None:
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "analysistemplates", body
    )


def start_update(
    cluster: Cluster, recorder: Callable[..., Recorder], analysis: Obj, deadline: int = 600
) -> Recorder:
    """v1 deployed and Healthy, then v2 (steps: 20%, pause): the recorder running from v1."""
    manifest = rollout_manifest(steps=[{"setWeight": 20}, {"pause": {}}], replicas=2)
    manifest["spec"]["analysis"] = analysis
    manifest["spec"]["progressDeadlineSeconds"] = deadline
    cluster.create_istio("virtualservices", virtual_service())
    cluster.create_istio("destinationrules", destination_rule())
    cluster.create_rollout(manifest)
    cluster.wait_healthy()
    rec = recorder()
    template_ = manifest["spec"]["template"]
    template_["spec"]["containers"][0]["image"] = "example.com/reviews:2"
    cluster.set_template(template_)
    return rec


def wait_invalid(cluster: Cluster, *fragments: str) -> Obj:
    """The status once InvalidSpec is True with every fragment in its message."""

    def invalid(s: Obj) -> bool:
        conditions = {c["type"]: c for c in s.get("conditions") or []}
        cond = conditions.get("InvalidSpec") or {}
        return cond.get("status") == "True" and all(f in cond["message"] for f in fragments)

    status = cluster.wait_status(invalid, timeout=20)
    assert status["phase"] == "Degraded"
    assert condition(status, "Progressing")["status"] == "False"
    return status


def never_had_traffic(cluster: Cluster, rec: Recorder) -> None:
    rec.catch_up()
    assert rec.weights() == [0], rec.weights()
    assert canary_weight(cluster.vs()) == 0


def invalid_events(cluster: Cluster) -> list[Obj]:
    return [e for e in cluster.events() if e["reason"] == "InvalidSpec"]


def test_a_missing_template_holds_the_canary_with_invalid_spec_until_it_is_created(
    cluster: Cluster,
    recorder: Callable[..., Recorder],
    query_log: QueryLog,
    proxied_controller: ControllerHandle,
) -> None:
    rec = start_update(cluster, recorder, gate(TEMPLATED))
    status = wait_invalid(
        cluster, "spec.analysis.checks[0].templateRef", "AnalysisTemplate", "requests", "not found"
    )
    canary = str(status["canaryRevision"])
    assert status["stableRevision"] != canary
    # Replicas are not traffic: the canary is scaled up meanwhile; no traffic for 3 s.
    cluster.wait_status(lambda s: s.get("availableReplicas", 0) >= 3)
    consistently(lambda: None, 3.0, interval=0.5)
    never_had_traffic(cluster, rec)
    events = cluster.wait_events("InvalidSpec")
    assert len(invalid_events(cluster)) == 1 and events[0]["type"] == "Warning"
    assert "spec.analysis.checks[0].templateRef" in events[0]["message"]

    create_template(cluster, template())  # the fix: the template's watch event brings it back
    cluster.wait_status(lambda s: (s.get("weights") or {}).get("canary") == 20, timeout=20)
    assert canary_weight(cluster.vs()) == 20
    status = cluster.status()
    assert condition(status, "InvalidSpec")["status"] == "False"
    assert query_log.seen("istio_requests_total") >= 1


@pytest.mark.parametrize(
    ("args", "rollout_args", "fragment"),
    [
        ([{"name": "service"}], {}, "gives no value for arg(s) service"),
        ([], {"service": "reviews"}, "passes arg 'service', which the template lacks"),
        ([], {}, "unknown template variable {{args.typo}}"),
    ],
    ids=["missing-arg", "unknown-arg", "undeclared-variable"],
)
def test_a_template_that_cannot_be_resolved_is_invalid_spec(
    cluster: Cluster,
    recorder: Callable[..., Recorder],
    query_log: QueryLog,
    proxied_controller: ControllerHandle,
    args: list[Obj],
    rollout_args: dict[str, str],
    fragment: str,
) -> None:
    query = (
        TEMPLATE_QUERY
        if fragment != "unknown template variable {{args.typo}}"
        else ('sum(rate(istio_requests_total{destination_canonical_service="{{args.typo}}"}[1m]))')
    )
    create_template(cluster, template(query=query, args=args))
    check = {"name": "custom", "templateRef": {"name": "requests", "args": rollout_args}}
    rec = start_update(cluster, recorder, gate(check))
    wait_invalid(cluster, "spec.analysis.checks[0].templateRef", fragment)
    consistently(lambda: None, 2.0, interval=0.5)
    never_had_traffic(cluster, rec)
    assert len(invalid_events(cluster)) == 1
    assert query_log.seen("istio_requests_total") == 0  # nothing sent that cannot resolve


def test_a_query_prometheus_refuses_is_invalid_spec_and_not_retried(
    cluster: Cluster,
    recorder: Callable[..., Recorder],
    query_log: QueryLog,
    proxied_controller: ControllerHandle,
) -> None:
    create_template(cluster, template(query="sum(rate(foo[5m]"))
    rec = start_update(cluster, recorder, gate(TEMPLATED))
    wait_invalid(cluster, "spec.analysis.checks[0]", "Prometheus refused the query", "parse error")
    cluster.wait_status(lambda s: s.get("availableReplicas", 0) >= 3)  # replicas settled
    sent = query_log.seen("foo[5m]")
    assert sent >= 1
    consistently(lambda: None, 6.0, interval=0.5)  # three gate intervals
    assert query_log.seen("foo[5m]") == sent, "a refused query was sent again"
    never_had_traffic(cluster, rec)
    assert len(invalid_events(cluster)) == 1


def test_an_unreachable_prometheus_holds_without_traffic_until_the_progress_deadline(
    sandbox_kubeconfig: Path,
    cluster: Cluster,
    namespace: str,
    recorder: Callable[..., Recorder],
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    create_template(cluster, template(query="vector(1)"))  # a short URL, all in the error text
    handle = start_controller(sandbox_kubeconfig, namespace, None)
    try:
        rec = start_update(cluster, recorder, gate(TEMPLATED, address=closed), deadline=10)
        status = cluster.wait_status(
            lambda s: f"waiting for Prometheus at {closed}" in s.get("message", ""), timeout=20
        )
        assert status["phase"] == "Progressing"
        progressing = condition(status, "Progressing")
        assert progressing["status"] == "True" and closed in progressing["message"]
        assert condition(status, "InvalidSpec")["status"] == "False"

        # Held quietly: the status does not change at every try (no write, no watch event,
        # no immediate reconcile: no storm of connection attempts).
        # Counted in statuses, not versions: the Rollout's revision number annotation is one
        # more metadata write per revision, whenever it lands.
        def statuses() -> int:
            return len(rec.states("Rollout", "reviews", lambda o: o.get("status")))

        versions = statuses()
        consistently(lambda: None, 3.0, interval=0.5)
        assert statuses() - versions <= 2  # replica counts while the canary's pods come up
        status = cluster.wait_status(lambda s: s.get("phase") == "Degraded", timeout=30)
        assert status["abortReason"] == "ProgressDeadlineExceeded"
        aborted = cluster.wait_events("ProgressDeadlineExceeded")
        assert "waiting for Prometheus" in aborted[0]["message"]
        never_had_traffic(cluster, rec)
    finally:
        handle.stop()


def test_no_prometheus_address_at_all_is_invalid_spec(
    cluster: Cluster, recorder: Callable[..., Recorder], controller: ControllerHandle
) -> None:
    check = {"name": "error-rate", "errorRate": {"max": 0.02}}
    rec = start_update(cluster, recorder, gate(check))
    wait_invalid(cluster, "spec.analysis.prometheus.address", "--prometheus-url")
    consistently(lambda: None, 2.0, interval=0.5)
    never_had_traffic(cluster, rec)
    assert len(invalid_events(cluster)) == 1


def test_a_missing_credentials_secret_is_invalid_spec(
    cluster: Cluster,
    recorder: Callable[..., Recorder],
    query_log: QueryLog,
    proxied_controller: ControllerHandle,
) -> None:
    check = {"name": "error-rate", "errorRate": {"max": 0.02}}
    analysis = gate(check, bearerTokenSecret={"name": "prometheus-token", "key": "token"})
    rec = start_update(cluster, recorder, analysis)
    wait_invalid(
        cluster,
        "spec.analysis.prometheus.bearerTokenSecret",
        f"Secret {cluster.namespace}/prometheus-token not found",
    )
    consistently(lambda: None, 2.0, interval=0.5)
    never_had_traffic(cluster, rec)
    assert query_log.seen("istio_requests_total") == 0


def test_a_prometheus_answering_5xx_holds_without_a_retry_storm_then_the_deadline_aborts(
    sandbox_kubeconfig: Path,
    cluster: Cluster,
    namespace: str,
    recorder: Callable[..., Recorder],
) -> None:
    failing = Failing()
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    check = {"name": "error-rate", "errorRate": {"max": 0.02}}
    handle = start_controller(sandbox_kubeconfig, namespace, failing.url)
    try:
        rec = start_update(cluster, recorder, gate(check), deadline=15)
        status = cluster.wait_status(
            lambda s: f"waiting for Prometheus at {failing.url}" in s.get("message", ""),
            timeout=20,
        )
        assert "HTTP 503" in status["message"] and status["phase"] == "Progressing"
        cluster.wait_status(lambda s: s.get("availableReplicas", 0) >= 3)  # replicas settled
        before, versions = failing.requests, len(rec.of("Rollout", "reviews"))
        consistently(lambda: None, 6.0, interval=0.5)
        # Asked again every 5 s, not at every reconcile: the held status does not change.
        assert failing.requests - before <= 3, failing.requests - before
        assert len(rec.of("Rollout", "reviews")) - versions <= 2
        status = cluster.wait_status(lambda s: s.get("phase") == "Degraded", timeout=30)
        assert status["abortReason"] == "ProgressDeadlineExceeded"
        never_had_traffic(cluster, rec)
    finally:
        handle.stop()
        failing.shutdown()
        failing.server_close()
