"""PrometheusProvider against small fake Prometheus servers on 127.0.0.1.

Each fake is the stdlib's HTTP server in a thread, answering /api/v1/query as a test says and
recording every request, so retries and headers are counted at the wire. Nothing of ours is
patched: the provider under test talks real HTTP.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from analysis.prometheus import PrometheusAuth, PrometheusProvider
from analysis.provider import BadQuery, BadResponse, Sample, Unreachable

# Unreachable is retried until the budget is spent; a bound, with room for a slow CI machine.
BUDGET = 1.0
MARGIN = 1.0


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


Reply = tuple[int, bytes]


@dataclass
class FakePrometheus:
    """Answers every request with ``reply(seen)``; ``requests`` lists what arrived."""

    reply: Callable[[Seen], Reply]
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                url = urlsplit(self.path)
                seen = Seen(
                    url.path,
                    {k: v[-1] for k, v in parse_qs(url.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                )
                fake.requests.append(seen)
                status, body = fake.reply(seen)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[Seen], Reply]], FakePrometheus]]:
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(reply: Callable[[Seen], Reply]) -> FakePrometheus:
        prometheus = FakePrometheus(reply)
        server = ThreadingHTTPServer(("127.0.0.1", 0), prometheus.handler())
        prometheus.server = server
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((server, thread))
        return prometheus

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def success(result_type: str, result: Any) -> Reply:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return 200, json.dumps(body).encode()


def vector(*values: str) -> Reply:
    series = [
        {"metric": {"pod": f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)
    ]
    return success("vector", series)


def error(status: int, kind: str, message: str) -> Reply:
    body = {"status": "error", "errorType": kind, "error": message}
    return status, json.dumps(body).encode()


def provider(url: str, **options: Any) -> PrometheusProvider:
    options.setdefault("timeout", 2.0)
    options.setdefault("budget", BUDGET)
    return PrometheusProvider(url, **options)


# --- answers ---------------------------------------------------------------------------------


def test_a_vector_is_its_samples_with_labels_and_the_time_is_sent(fake: Any) -> None:
    prometheus = fake(lambda _: vector("0.25", "3"))
    at = datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=UTC)
    samples = provider(prometheus.url).query('sum(up{job="x"})', at=at)
    assert samples == [Sample(0.25, {"pod": "p0"}), Sample(3.0, {"pod": "p1"})]
    (seen,) = prometheus.requests
    assert seen.path == "/api/v1/query"
    assert seen.params == {"query": 'sum(up{job="x"})', "time": f"{at.timestamp():.3f}"}


def test_nan_and_infinities_are_values_never_no_data(fake: Any) -> None:
    prometheus = fake(lambda _: vector("NaN", "+Inf", "0.5", "-Inf"))
    samples = provider(prometheus.url).query("x")
    assert [s.labels for s in samples] == [{"pod": f"p{i}"} for i in range(4)]
    values = [s.value for s in samples]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, 0.5, -math.inf]
    nan_only = fake(lambda _: vector("NaN"))
    (nan,) = provider(nan_only.url).query("x")
    assert math.isnan(nan.value)


def test_a_scalar_result_is_one_unlabelled_sample(fake: Any) -> None:
    prometheus = fake(lambda _: success("scalar", [1700000000.0, "2.5"]))
    assert provider(prometheus.url).query("scalar(x)") == [Sample(2.5)]
    infinite = fake(lambda _: success("scalar", [1700000000.0, "+Inf"]))
    assert provider(infinite.url).query("scalar(x)") == [Sample(math.inf)]


@pytest.mark.parametrize(
    "reply",
    [
        vector("0.5", "abc"),
        vector(""),
        success("vector", [{"metric": {}, "value": [1700000000.0, None]}]),
        success("vector", [{"metric": {}, "value": [1700000000.0, True]}]),
        success("vector", [{"metric": {}, "value": [1700000000.0, {"v": 1}]}]),
        success("scalar", [1700000000.0, "many"]),
    ],
)
def test_a_value_that_is_not_a_number_is_a_bad_response(fake: Any, reply: Reply) -> None:
    prometheus = fake(lambda _: reply)
    with pytest.raises(BadResponse, match="not a number"):
        provider(prometheus.url).query("x")
    assert len(prometheus.requests) == 1


def test_an_empty_vector_is_no_samples(fake: Any) -> None:
    prometheus = fake(lambda _: success("vector", []))
    assert provider(prometheus.url).query("x") == []


# --- failures: typed, with the backend's message, counted at the wire -------------------------


def test_http_500_is_a_bad_response_and_not_retried(fake: Any) -> None:
    prometheus = fake(lambda _: error(500, "internal", "query processing would load too many"))
    with pytest.raises(BadResponse, match="HTTP 500: query processing would load too many"):
        provider(prometheus.url).query("x")
    assert len(prometheus.requests) == 1


def test_http_503_with_a_non_json_body_keeps_the_body(fake: Any) -> None:
    prometheus = fake(lambda _: (503, b"Service Unavailable"))
    with pytest.raises(BadResponse, match="HTTP 503: Service Unavailable$"):
        provider(prometheus.url).query("x")
    assert len(prometheus.requests) == 1


def test_garbage_is_a_bad_response(fake: Any) -> None:
    prometheus = fake(lambda _: (200, b"<html>not prometheus</html>"))
    with pytest.raises(BadResponse, match="not a result"):
        provider(prometheus.url).query("x")
    assert len(prometheus.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        success("matrix", [{"metric": {}, "values": [[1700000000.0, "1"]]}]),
        success("vector", [{"metric": {}, "value": []}]),
        success("vector", [{"metric": {}, "value": None}]),
        success("vector", ["not a series"]),
        success("vector", {"not": "a list"}),
        (200, json.dumps({"status": "success", "data": {}}).encode()),
    ],
)
def test_an_unexpected_shape_is_a_bad_response(fake: Any, reply: Reply) -> None:
    prometheus = fake(lambda _: reply)
    with pytest.raises(BadResponse):
        provider(prometheus.url).query("x")
    assert len(prometheus.requests) == 1


def test_bad_data_is_a_bad_query_with_prometheus_message(fake: Any) -> None:
    message = 'invalid parameter "query": 1:18: parse error: unclosed left parenthesis'
    prometheus = fake(lambda _: error(400, "bad_data", message))
    with pytest.raises(BadQuery) as raised:
        provider(prometheus.url).query("sum(rate(foo[5s])")
    assert str(raised.value) == f"Prometheus refused the query: {message}"
    assert len(prometheus.requests) == 1


def test_an_execution_error_is_a_bad_query_and_keeps_non_ascii_and_quotes(fake: Any) -> None:
    message = "1:5: parse error: unexpected character: 'é' in \"x\\y\""
    prometheus = fake(lambda _: error(422, "execution", message))
    with pytest.raises(BadQuery) as raised:
        provider(prometheus.url).query("x")
    assert str(raised.value) == f"Prometheus refused the query: {message}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_is_unreachable_after_retrying_within_the_budget() -> None:
    # A bound socket that never listens: the kernel refuses every connection to it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(Unreachable, match="unreachable"):
            provider(url).query("x")
        elapsed = time.monotonic() - started
    assert elapsed <= BUDGET + MARGIN


def test_dropped_connections_are_retried_until_the_budget_is_spent() -> None:
    """A server that accepts and hangs up at once: each retry is one accepted connection."""
    attempts: list[float] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            attempts.append(time.monotonic())
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(Unreachable):
            provider(f"http://127.0.0.1:{listener.getsockname()[1]}").query("x")
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert len(attempts) >= 3  # retried, with back-off
    assert attempts[-1] - started <= BUDGET  # no attempt starts after the budget
    assert elapsed <= BUDGET + MARGIN


# --- authentication and headers ----------------------------------------------------------------


def test_the_bearer_token_file_is_read_at_every_query(fake: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    prometheus = fake(lambda _: vector("1"))
    client = provider(prometheus.url, auth=PrometheusAuth(bearer_token_file=str(token)))
    client.query("x")
    token.write_text("rotated-token\n")
    client.query("x")
    authorizations = [seen.headers.get("authorization") for seen in prometheus.requests]
    assert authorizations == ["Bearer first-token", "Bearer rotated-token"]


def test_a_given_bearer_token_is_sent(fake: Any) -> None:
    prometheus = fake(lambda _: vector("1"))
    provider(prometheus.url, auth=PrometheusAuth(bearer_token="s3cret")).query("x")
    assert prometheus.requests[0].headers["authorization"] == "Bearer s3cret"


def test_basic_auth_and_custom_headers_are_sent(fake: Any) -> None:
    prometheus = fake(lambda _: vector("1"))
    auth = PrometheusAuth(
        basic_auth=("gate", "pa:ss"), headers={"X-Scope-OrgID": "team-a", "X-Extra": "1"}
    )
    provider(prometheus.url, auth=auth).query("x")
    headers = prometheus.requests[0].headers
    assert headers["authorization"] == "Basic " + base64.b64encode(b"gate:pa:ss").decode()
    assert headers["x-scope-orgid"] == "team-a"
    assert headers["x-extra"] == "1"


def test_no_authorization_header_without_auth(fake: Any) -> None:
    prometheus = fake(lambda _: vector("1"))
    provider(prometheus.url).query("x")
    assert "authorization" not in prometheus.requests[0].headers


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_fake(fake: Any, tmp_path: Path) -> Iterator[tuple[FakePrometheus, Path]]:
    """A fake on HTTPS with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    prometheus = fake(lambda _: vector("1"))
    assert prometheus.server is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    prometheus.server.socket = context.wrap_socket(prometheus.server.socket, server_side=True)
    yield prometheus, cert


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_needs_the_ca_bundle_or_the_insecure_flag(
    tls_fake: tuple[FakePrometheus, Path],
) -> None:
    prometheus, cert = tls_fake
    url = prometheus.url.replace("http://", "https://")
    with pytest.raises(Unreachable, match="(?i)certificate"):
        provider(url, budget=0.2).query("x")
    assert provider(url, auth=PrometheusAuth(ca_file=str(cert))).query("x") == [
        Sample(1.0, {"pod": "p0"})
    ]
    assert provider(url, auth=PrometheusAuth(insecure=True)).query("x") == [
        Sample(1.0, {"pod": "p0"})
    ]
