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
from collections.abc import Iterator
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
