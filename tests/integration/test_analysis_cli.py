"""``rollout analyze``: the command a user runs, against a real Prometheus (``world``).

Gates are measured by the installed console script in its own process; bad input is checked
in-process through typer's runner, since it never reaches Prometheus.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rollout.cli import app
from tests.integration.prometheus_fixtures import (
    NAMESPACE,
    PrometheusWorld,
    start_world,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> Iterator[PrometheusWorld]:
    yield from start_world()


ROLLOUT = str(Path(sys.executable).parent / "rollout")
COMMAND_TIMEOUT = 60


def rollout_doc(name: str, checks: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1"}]},
            },
            "trafficRouting": {
                "istio": {
                    "virtualServices": [{"name": name}],
                    "destinationRule": {
                        "name": name,
                        "stableSubset": "stable",
                        "canarySubset": "canary",
                    },
                }
            },
            "analysis": {
                "interval": "5s",
                "prometheus": {
                    # in-cluster, unreachable from here: --prometheus-url replaces it
                    "address": "http://prometheus.istio-system:9090",
                    "scrapeInterval": "1s",
                    "timeout": "1s",
                },
                "checks": checks,
                **analysis,
            },
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {"count": 2}}]}},
        },
    }


def template_doc(name: str, query: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"query": query, **spec},
    }


ERROR_RATE = {"name": "error-rate", "errorRate": {"max": 0.01}}
LATENCY = {"name": "latency", "latencyP99": {"maxMs": 300}}
VERSUS_STABLE = {"name": "versus-stable", "errorRate": {"maxIncreaseOverStable": 0.005}}


def write(path: Path, *docs: Any) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROLLOUT, "analyze", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def revisions(canary: str = "c1", stable: str = "s1") -> list[str]:
    return ["--canary-revision", canary, "--stable-revision", stable]


# --- against Prometheus --------------------------------------------------------------------


def test_a_healthy_canary_exits_0_and_prints_every_check(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    # No namespace in the file: -n gives it. The Istio service is the canonical-name label.
    doc = rollout_doc("web", [ERROR_RATE, LATENCY, VERSUS_STABLE])
    del doc["metadata"]["namespace"]
    doc["spec"]["template"]["metadata"]["labels"]["service.istio.io/canonical-name"] = "cli-healthy"
    manifest = write(tmp_path / "web.yaml", doc)
    done = analyze("-f", manifest, "-n", NAMESPACE, "--prometheus-url", world.url,
                   *revisions())  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"Rollout {NAMESPACE}/web: service cli-healthy, canary c1, stable s1, "
        f"Prometheus {world.url}"
    )
    assert lines[1].startswith("round 1/1 at ")
    assert any(line.startswith("  error-rate: Successful (value 0): error rate") for line in lines)
    assert any(line.startswith("  latency: Successful (value ") for line in lines)
    assert any(line.startswith("  versus-stable: Successful") for line in lines)
    assert 'destination_canonical_service="cli-healthy"' in done.stdout
    assert f'destination_workload_namespace="{NAMESPACE}"' in done.stdout
    assert lines[-1] == "result: Successful: error-rate 1, latency 1, versus-stable 1"
    assert done.stderr == ""


def test_five_percent_errors_exit_1_with_json_and_stop_early(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    doc = rollout_doc("cli-errors", [ERROR_RATE, LATENCY])
    doc["spec"]["analysis"]["prometheus"]["bearerTokenSecret"] = {"name": "prom", "key": "token"}
    manifest = write(tmp_path / "errors.yaml", doc)
    done = analyze("-f", manifest, "--prometheus-url", world.url, *revisions(),
                   "--json", "--count", "3", "--interval", "30s")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Failed" and report["exitCode"] == 1
    assert report["rollout"] == "cli-errors" and report["namespace"] == NAMESPACE
    assert report["interval"] == "30s" and report["count"] == 3
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["error-rate"]["phase"] == "Failed"
    (measured,) = checks["error-rate"]["measurements"]  # decided after one round: no 30 s wait
    assert 0.02 < measured["value"] < 0.1
    assert measured["phase"] == "Failed"
    assert "above max 0.01" in measured["message"]
    assert 'response_code=~"5.."' in measured["query"]
    assert measured["seconds"] >= 0
    assert "bearerTokenSecret names a Secret" in done.stderr


def test_no_canary_traffic_exits_2(world: PrometheusWorld, tmp_path: Path) -> None:
    manifest = write(tmp_path / "quiet.yaml", rollout_doc("quiet", [ERROR_RATE]))
    done = analyze("-f", manifest, "--prometheus-url", world.url, *revisions())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error-rate: Inconclusive (value -): the canary served 0 requests" in done.stdout
    assert done.stdout.splitlines()[-1] == "result: Inconclusive: error-rate Inconclusive"


def test_invalid_promql_is_an_error_after_count_rounds(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    rollout = rollout_doc(
        "cli-healthy", [ERROR_RATE, {"name": "broken", "templateRef": {"name": "broken"}}]
    )
    broken = template_doc("broken", "sum(rate(istio_requests_total[{{interval}}])", max=1)
    manifest = write(tmp_path / "broken.yaml", rollout, broken)
    done = analyze("-f", manifest, "--prometheus-url", world.url, *revisions(),
                   "--json", "--count", "2", "--interval", "1s")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Error"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["error-rate"]["phase"] == "Successful"
    assert [m["round"] for m in checks["error-rate"]["measurements"]] == [1, 2]
    assert checks["broken"]["errors"] == 2
    last = checks["broken"]["measurements"][-1]
    assert last["query"] == "sum(rate(istio_requests_total[5s])"
    assert "parse error: unclosed left parenthesis" in last["message"]


# --- broken numbers: an Error naming the value, never a pass (issue 12) ----------------------


def test_nan_with_no_data_pass_is_an_error_naming_nan_and_exits_3(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    rollout = rollout_doc("cli-errors", [{"name": "ratio", "templateRef": {"name": "ratio"}}])
    nan = template_doc("ratio", "vector(0) / vector(0)", max=0.01, noData="pass")
    manifest = write(tmp_path / "nan.yaml", rollout, nan)
    done = analyze("-f", manifest, "--prometheus-url", world.url, *revisions())
    assert done.returncode == 3, done.stdout + done.stderr
    assert "  ratio: Error (value -): the query returned NaN: " in done.stdout
    assert "no data" not in done.stdout.replace("noData", "")
    assert done.stdout.splitlines()[-1].startswith(
        "result: Error: ratio Error: the query returned NaN"
    )
    as_json = analyze("-f", manifest, "--prometheus-url", world.url, *revisions(), "--json")
    assert as_json.returncode == 3, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)  # strict JSON: no bare NaN in it
    (measured,) = report["checks"][0]["measurements"]
    assert (measured["phase"], measured["value"]) == ("Error", None)
    assert measured["message"].startswith("the query returned NaN")


def test_an_infinite_ratio_is_an_error_naming_inf_and_exits_3(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    # canary 5xx / stable 5xx; cli-errors' stable serves no 5xx: +Inf
    ratio = (
        'sum(increase(istio_requests_total{destination_canonical_service="cli-errors",'
        'destination_canonical_revision="{{canary.revision}}",response_code=~"5.."}'
        "[{{interval}}])) / (sum(increase(istio_requests_total{"
        'destination_canonical_service="cli-errors",'
        'destination_canonical_revision="{{stable.revision}}",response_code=~"5.."}'
        "[{{interval}}])) or vector(0))"
    )
    rollout = rollout_doc("cli-errors", [{"name": "ratio", "templateRef": {"name": "ratio"}}])
    manifest = write(tmp_path / "inf.yaml", rollout, template_doc("ratio", ratio, max=2))
    done = analyze("-f", manifest, "--prometheus-url", world.url, *revisions(),
                   "--count", "2", "--interval", "1s")  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("  ratio: ")]
    assert len(errors) == 2, done.stdout
    assert all(
        line.startswith("  ratio: Error (value -): the query returned +Inf: ") for line in errors
    )


class RewritingProxy:
    """Forwards queries to a real Prometheus and rewrites the values of chosen ``part`` series.

    It stands for a broken recording rule, exporter or proxy: Prometheus' own answer, with
    e.g. ``canary_errors`` replaced by ``"-5"``.
    """

    def __init__(self, upstream: str, rewrites: dict[str, str]) -> None:
        self.upstream = upstream
        self.rewrites = rewrites
        self.rewritten: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                try:
                    with urllib.request.urlopen(proxy.upstream + self.path, timeout=10) as up:
                        status, body = up.status, up.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                if status == 200 and self.path.startswith("/api/v1/query"):
                    body = proxy.rewrite(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def rewrite(self, body: bytes) -> bytes:
        document = json.loads(body)
        for series in document.get("data", {}).get("result", []):
            part = series.get("metric", {}).get("part")
            if part in self.rewrites:
                series["value"][1] = self.rewrites[part]
                self.rewritten.append(part)
        return json.dumps(document).encode()

    def __enter__(self) -> RewritingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_a_rewritten_negative_count_and_p99_are_errors_not_a_promotion(
    world: PrometheusWorld, tmp_path: Path
) -> None:
    # The issue's example: canary_errors = -5 and p99 = -1 promoted a failing, slow canary.
    # "slow" serves a ~900 ms p99; cli-errors' canary 5% errors.
    checks = [ERROR_RATE, LATENCY]
    for service in ("cli-errors", "slow"):
        manifest = write(tmp_path / f"{service}.yaml", rollout_doc(service, checks))
        honest = analyze("-f", manifest, "--prometheus-url", world.url, *revisions())
        assert honest.returncode == 1, honest.stdout + honest.stderr  # Failed, as it should
    rewrites = {"canary_errors": "-5", "canary_p99": "-1"}
    with RewritingProxy(world.url, rewrites) as proxy:
        done = analyze("-f", tmp_path / "cli-errors.yaml", "--prometheus-url", proxy.url,
                       *revisions(), "--json")  # fmt: skip
        slow = analyze("-f", tmp_path / "slow.yaml", "--prometheus-url", proxy.url, *revisions())
    assert {"canary_errors", "canary_p99"} <= set(proxy.rewritten)
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["phase"] == "Error"
    checks_by_name = {c["name"]: c for c in report["checks"]}
    (errors,) = checks_by_name["error-rate"]["measurements"]
    assert errors["phase"] == "Error"
    assert errors["message"] == "canary_errors is -5: a request count cannot be negative"
    assert slow.returncode == 3, slow.stdout + slow.stderr
    assert "latency: Error (value -): canary_p99 is -1 ms: a latency cannot be negative" in (
        slow.stdout
    )
    assert "served 0 requests" not in done.stdout + slow.stdout


@pytest.mark.parametrize(
    ("rewrites", "check", "message"),
    [
        ({"canary_requests": "NaN"}, "error-rate", "the query returned NaN for canary_requests"),
        ({"canary_errors": "+Inf"}, "error-rate", "the query returned +Inf for canary_errors"),
        ({"canary_requests": "-Inf"}, "error-rate", "the query returned -Inf for canary_requests"),
        ({"canary_errors": "100000"}, "error-rate", "error rate "),
        (
            {"canary_errors": "abc"},
            "error-rate",
            "Prometheus answered a value that is not a number",
        ),
        ({"canary_p99": "NaN"}, "latency", "the query returned NaN for canary_p99"),
        ({"canary_requests": "-100"}, "error-rate", "canary_requests is -100"),
    ],
)
def test_other_broken_numbers_are_errors_naming_them(
    world: PrometheusWorld, tmp_path: Path, rewrites: dict[str, str], check: str, message: str
) -> None:
    # cli-errors' canary has a 5xx series to rewrite; cli-healthy passes both checks otherwise
    service = "cli-errors" if "canary_errors" in rewrites else "cli-healthy"
    manifest = write(tmp_path / "r.yaml", rollout_doc(service, [ERROR_RATE, LATENCY]))
    with RewritingProxy(world.url, rewrites) as proxy:
        done = analyze("-f", manifest, "--prometheus-url", proxy.url, *revisions())
    assert set(proxy.rewritten) == set(rewrites)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"  {check}: Error (value -): {message}" in done.stdout, done.stdout
    assert "served 0 requests" not in done.stdout


def test_an_unreachable_prometheus_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        manifest = write(tmp_path / "r.yaml", rollout_doc("cli-healthy", [ERROR_RATE]))
        done = analyze("-f", manifest, "--prometheus-url", url, *revisions())
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"rollout analyze: error: Prometheus at {url} unreachable")


# --- bad input: exit 4, one clear line, before any query ------------------------------------


def run_in_process(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def options(*files: Path) -> list[str | Path]:
    flags: list[str | Path] = []
    for file in files:
        flags += ["-f", file]
    return [*flags, "--prometheus-url", "http://127.0.0.1:1", *revisions()]


def test_a_missing_file_exits_4(tmp_path: Path) -> None:
    result = run_in_process(*options(tmp_path / "nowhere.yaml"))
    assert result.exit_code == 4
    assert f"{tmp_path / 'nowhere.yaml'}: no such file or directory" in result.stderr
    assert "rollout analyze: invalid input" in result.stderr


def test_an_invalid_manifest_exits_4_with_lint_lines(tmp_path: Path) -> None:
    doc = rollout_doc("bad", [{"name": "e", "errorRate": {"max": 2}}])
    manifest = write(tmp_path / "bad.yaml", doc)
    result = run_in_process(*options(manifest))
    assert result.exit_code == 4
    assert f"{manifest}: Rollout/bad: spec.analysis.checks[0].errorRate.max: must be <= 1" in (
        result.stderr
    )


def test_several_rollouts_need_rollout_and_unknown_names_exit_4(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "two.yaml",
        rollout_doc("one", [ERROR_RATE]),
        rollout_doc("two", [ERROR_RATE]),
    )
    several = run_in_process(*options(manifest))
    assert several.exit_code == 4
    assert f"2 Rollouts match ({NAMESPACE}/one, {NAMESPACE}/two): choose one with --rollout" in (
        several.stderr
    )
    unknown = run_in_process(*options(manifest), "--rollout", "three")
    assert unknown.exit_code == 4
    assert "no Rollout three in the given files (Rollouts found: analysis/one, analysis/two)" in (
        unknown.stderr
    )
    elsewhere = run_in_process(*options(manifest), "--rollout", "one", "-n", "other")
    assert elsewhere.exit_code == 4
    assert "no Rollout one in namespace other" in elsewhere.stderr


def test_a_rollout_without_a_gate_exits_4(tmp_path: Path) -> None:
    doc = copy.deepcopy(rollout_doc("plain", [ERROR_RATE]))
    del doc["spec"]["analysis"]
    doc["spec"]["strategy"] = {"canary": {"steps": [{"setWeight": 10}]}}
    result = run_in_process(*options(write(tmp_path / "plain.yaml", doc)))
    assert result.exit_code == 4
    assert f"Rollout {NAMESPACE}/plain has no spec.analysis" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--interval", "soon"], "--interval: invalid duration 'soon'"),
        (["--count", "0"], "--count"),
        (["--canary-revision", 'c"1'], "--canary-revision 'c\"1' is not a label value"),
    ],
)
def test_bad_options_exit_4(tmp_path: Path, extra: list[str], message: str) -> None:
    manifest = write(tmp_path / "r.yaml", rollout_doc("r", [ERROR_RATE]))
    result = run_in_process(*options(manifest), *extra)
    assert result.exit_code == 4, result.output
    assert message in result.stderr


def test_a_missing_option_exits_4_not_2() -> None:
    result = run_in_process("-f", "x.yaml")
    assert result.exit_code == 4
    assert "--prometheus-url" in result.output
