"""``rollout analyze``: run a Rollout's analysis gate from manifests on disk, against a Prometheus.

The Rollout and its AnalysisTemplates are read and checked exactly as ``rollout lint`` reads them
(files, directories, ``-`` for standard input). The gate is measured ``count`` times,
``interval`` apart (default: the spec's interval), through the controller's own ``GateRunner``
and ``PrometheusProvider``, and the measurements are folded by ``analysis.measurement`` with the
spec's limits, as the controller folds an analysis step of ``count`` measurements. It stops early
once the run is decided.

Prometheus. ``--prometheus-url`` replaces ``spec.analysis.prometheus.address`` (usually an
in-cluster name; a port-forward is the usual way to reach it from a workstation). Timeout,
scrape interval, headers, ``bearerTokenFile``, ``caFile`` and ``insecureSkipVerify`` come from the
spec. Secrets (``bearerTokenSecret``, ``basicAuthSecret``, ``caSecret``) live in the cluster and
are not read here: the query goes without them, and a note says so on stderr.

Which service and revisions. The built-in checks select Istio's ``destination_canonical_service``
(the pod template's ``service.istio.io/canonical-name`` label, else the Rollout's name, or
``--service``) and ``destination_canonical_revision`` = ``--canary-revision`` /
``--stable-revision``, as Istio labels the pods.

Output. Per round and check: its name, phase, value, message and query; then the run's phase.
With ``--json``, one JSON document instead. Exit status: 0 Successful, 1 Failed, 2
Inconclusive, 3 Error (Prometheus unreachable or refusing a query, a missing template argument,
a value outside its check's domain — NaN, ±Inf, a negative count, more errors than requests, a
negative latency — or any run still undecided after ``count`` rounds because measurements
failed: the result line then names the last error), 4 bad input (unreadable or invalid
manifests, no such Rollout, no ``spec.analysis``, bad options). Bad input and an unreachable
Prometheus are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from analysis import measurement as gate
from analysis.prometheus import PrometheusAuth, PrometheusProvider
from analysis.provider import MetricError
from analysis.runner import GateContext, GateRunner, Taken
from rollout.api.duration import format_duration, parse_duration
from rollout.api.gate import Analysis, PrometheusConfig
from rollout.api.rollout import Rollout
from rollout.api.status import AnalysisPhase, AnalysisStatus
from rollout.api.template import AnalysisTemplate, AnalysisTemplateSpec
from rollout.lint import DEFAULT_NAMESPACE, Manifest, lint_paths

EXIT_CODES: dict[AnalysisPhase, int] = {
    "Successful": 0,
    "Failed": 1,
    "Inconclusive": 2,
    "Error": 3,
}
EXIT_BAD_INPUT = 4
# The label Istio reads a workload's canonical service from (the controller stamps it too).
CANONICAL_NAME = "service.istio.io/canonical-name"
PROBE = "vector(1)"


class BadInput(Exception):
    """Input that cannot be analysed; the message is the line printed."""


@dataclass(frozen=True)
class Options:
    files: Sequence[Path | str]
    prometheus_url: str
    canary_revision: str
    stable_revision: str
    rollout: str | None = None
    namespace: str | None = None
    service: str | None = None
    count: int = 1
    interval: str | None = None
    json: bool = False


@dataclass
class Target:
    """The Rollout to analyse, its gate, and the templates it may reference."""

    rollout: Rollout
    namespace: str
    analysis: Analysis
    templates: dict[tuple[str, str], AnalysisTemplateSpec] = field(default_factory=dict)

    def template(self, namespace: str, name: str) -> AnalysisTemplateSpec | None:
        return self.templates.get((namespace, name))


def run_analyze(
    options: Options,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Analyse, print, and return the exit status; never raises."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _analyze(options, out, err, sleep)
    except BadInput as bad:
        print(_one_line(f"rollout analyze: {bad}"), file=err)
        return EXIT_BAD_INPUT
    except Exception as error:  # the contract: one line, never a traceback
        print(_one_line(f"rollout analyze: error: {type(error).__name__}: {error}"), file=err)
        return EXIT_CODES["Error"]


def _analyze(options: Options, out: TextIO, err: TextIO, sleep: Callable[[float], None]) -> int:
    interval = _check_options(options)
    target = load_target(options, err)
    analysis = target.analysis
    interval = analysis.interval if interval is None else interval
    for note in unread_secrets(analysis.prometheus):
        print(f"rollout analyze: note: {note}", file=err)
    provider = provider_for(options.prometheus_url, analysis)
    try:
        provider.query(PROBE)
    except MetricError as error:
        print(_one_line(f"rollout analyze: error: {error}"), file=err)
        return EXIT_CODES["Error"]
    context = gate_context(target, options)
    report = Report(target, context, options, interval)
    runner = GateRunner(target.template)
    try:
        run = gate.new_run(analysis, datetime.now(UTC), options.count)
        for round_ in range(1, options.count + 1):
            if round_ > 1:
                sleep(interval)
            names = [c.name for c in run.checks if c.phase not in gate.TERMINAL]
            taken = runner.measure(analysis, context, provider, names, datetime.now(UTC))
            run = gate.record(run, analysis, [(t.check, t.measurement) for t in taken])
            report.add_round(round_, taken)
            if not options.json:
                report.print_round(out, round_, taken)
            if run.phase in gate.TERMINAL:
                break
    finally:
        runner.close()
    phase = final_phase(run)
    if options.json:
        print(json.dumps(report.document(run, phase), indent=2), file=out)
    else:
        print(f"result: {phase}: {final_message(run)}", file=out)
    return EXIT_CODES[phase]


def _check_options(options: Options) -> int | None:
    if options.count < 1:
        raise BadInput("--count must be at least 1")
    if not options.prometheus_url.startswith(("http://", "https://")):
        url = options.prometheus_url
        raise BadInput(f"--prometheus-url must start with http:// or https://, not {url!r}")
    for flag, value in (
        ("--canary-revision", options.canary_revision),
        ("--stable-revision", options.stable_revision),
        ("--service", options.service),
    ):
        if value is not None and (not value or any(c in value for c in '"\\\n')):
            raise BadInput(f"{flag} {value!r} is not a label value")
    if options.interval is None:
        return None
    try:
        return parse_duration(options.interval)
    except ValueError as error:
        raise BadInput(f"--interval: {error}") from None


# --- the input -----------------------------------------------------------------------------------


def _namespace(manifest: Manifest, default: str | None) -> str:
    metadata = manifest.body.get("metadata") if isinstance(manifest.body, dict) else None
    given = metadata.get("namespace") if isinstance(metadata, dict) else None
    return given if isinstance(given, str) and given else (default or DEFAULT_NAMESPACE)


def load_target(options: Options, err: TextIO) -> Target:
    """The chosen Rollout and the templates in its namespace; BadInput as lint reports it."""
    if not options.files:
        raise BadInput("no manifests: give at least one -f FILE")
    report = lint_paths(options.files)
    if report.exit_code() != 0:
        for line in report.lines():
            print(line, file=err)
        raise BadInput(f"invalid input: {report.summary()}")
    rollouts: list[tuple[str, Rollout]] = []
    templates: dict[tuple[str, str], AnalysisTemplateSpec] = {}
    for manifest in report.manifests:
        namespace = _namespace(manifest, options.namespace)
        if isinstance(manifest.parsed, Rollout):
            rollouts.append((namespace, manifest.parsed))
        elif isinstance(manifest.parsed, AnalysisTemplate):
            templates[(namespace, manifest.parsed.metadata.name)] = manifest.parsed.spec
    found = ", ".join(f"{ns}/{r.metadata.name}" for ns, r in rollouts) or "none"
    chosen = [
        (ns, r)
        for ns, r in rollouts
        if (options.namespace is None or ns == options.namespace)
        and (options.rollout is None or r.metadata.name == options.rollout)
    ]
    if not chosen:
        wanted = "Rollout" + (f" {options.rollout}" if options.rollout else "")
        where = f" in namespace {options.namespace}" if options.namespace else ""
        raise BadInput(f"no {wanted}{where} in the given files (Rollouts found: {found})")
    if len(chosen) > 1:
        names = ", ".join(f"{ns}/{r.metadata.name}" for ns, r in chosen)
        raise BadInput(f"{len(chosen)} Rollouts match ({names}): choose one with --rollout")
    namespace, rollout = chosen[0]
    if rollout.spec.analysis is None:
        raise BadInput(f"Rollout {namespace}/{rollout.metadata.name} has no spec.analysis")
    return Target(rollout, namespace, rollout.spec.analysis, templates)


def gate_context(target: Target, options: Options) -> GateContext:
    name = target.rollout.metadata.name
    labels = target.rollout.spec.template.metadata.labels
    return GateContext(
        rollout=name,
        namespace=target.namespace,
        service=options.service or labels.get(CANONICAL_NAME, name),
        canary_revision=options.canary_revision,
        stable_revision=options.stable_revision,
    )


# --- Prometheus ----------------------------------------------------------------------------------


def unread_secrets(config: PrometheusConfig) -> list[str]:
    notes = []
    for field_name, ref in (
        ("bearerTokenSecret", config.bearer_token_secret),
        ("basicAuthSecret", config.basic_auth_secret),
        ("caSecret", config.ca_secret),
    ):
        if ref is not None:
            notes.append(
                f"spec.analysis.prometheus.{field_name} names a Secret, which rollout analyze "
                "cannot read: querying without it"
            )
    return notes


def provider_for(url: str, analysis: Analysis) -> PrometheusProvider:
    config = analysis.prometheus
    auth = PrometheusAuth(
        headers=dict(config.headers),
        bearer_token_file=config.bearer_token_file,
        ca_file=config.ca_file,
        insecure=config.insecure_skip_verify,
    )
    # As the controller: retries stop well before the next measurement is due.
    budget = min(float(config.timeout), analysis.interval / 2)
    return PrometheusProvider(url, timeout=config.timeout, budget=budget, auth=auth)


# --- the result ----------------------------------------------------------------------------------


def final_phase(run: AnalysisStatus) -> AnalysisPhase:
    """The run's phase; a run errors kept from deciding within ``count`` rounds is an Error."""
    if run.phase in gate.TERMINAL:
        return run.phase
    deciding = [c for c in run.checks if not c.dry_run]
    if all(c.phase in gate.TERMINAL for c in deciding):
        return gate.run_phase(deciding)
    return "Error"


def final_message(run: AnalysisStatus) -> str:
    """The run's summary; a check left undecided by errors names its last error."""
    if run.phase in gate.TERMINAL:
        return run.message
    parts = []
    for check in run.checks:
        last = check.measurements[-1] if check.measurements else None
        if check.phase not in gate.TERMINAL and last is not None and last.phase == "Error":
            parts.append(f"{check.name} Error: {last.message}")
        else:
            parts.append(gate.summary([check]))
    return ", ".join(parts)


@dataclass
class Report:
    target: Target
    context: GateContext
    options: Options
    interval: int
    rounds: list[tuple[int, list[Taken]]] = field(default_factory=list)

    def add_round(self, round_: int, taken: list[Taken]) -> None:
        self.rounds.append((round_, taken))

    def print_round(self, out: TextIO, round_: int, taken: list[Taken]) -> None:
        if round_ == 1:
            c = self.context
            print(
                f"Rollout {c.namespace}/{c.rollout}: service {c.service}, canary "
                f"{c.canary_revision}, stable {c.stable_revision}, Prometheus "
                f"{self.options.prometheus_url}",
                file=out,
            )
        at = taken[0].measurement.at if taken else datetime.now(UTC)
        print(f"round {round_}/{self.options.count} at {_rfc3339(at)}", file=out)
        for t in taken:
            m = t.measurement
            value = "-" if m.value is None else f"{m.value:g}"
            print(f"  {t.check}: {m.phase} (value {value}): {m.message or ''}", file=out)
            if t.query:
                query = t.query.replace("\n", "\n           ")
                print(f"    query: {query}", file=out)

    def document(self, run: AnalysisStatus, phase: AnalysisPhase) -> dict[str, Any]:
        queries: dict[str, list[dict[str, Any]]] = {c.name: [] for c in run.checks}
        for round_, taken in self.rounds:
            for t in taken:
                m = t.measurement
                queries[t.check].append(
                    {
                        "round": round_,
                        "at": _rfc3339(m.at),
                        "phase": m.phase,
                        "value": m.value,
                        "message": m.message,
                        "query": t.query,
                        "seconds": round(t.seconds, 6),
                    }
                )
        c = self.context
        return {
            "rollout": c.rollout,
            "namespace": c.namespace,
            "service": c.service,
            "canaryRevision": c.canary_revision,
            "stableRevision": c.stable_revision,
            "prometheus": self.options.prometheus_url,
            "count": self.options.count,
            "interval": format_duration(self.interval),
            "phase": phase,
            "exitCode": EXIT_CODES[phase],
            "message": final_message(run),
            "checks": [
                {
                    "name": check.name,
                    "phase": check.phase,
                    "dryRun": check.dry_run,
                    "successful": check.successful,
                    "failed": check.failed,
                    "inconclusive": check.inconclusive,
                    "errors": check.errors,
                    "measurements": queries[check.name],
                }
                for check in run.checks
            ],
        }


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())
