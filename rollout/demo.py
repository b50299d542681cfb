"""``rollout demo``: one command that shows a progressive delivery end to end.

Starts the sandbox cluster (API, workloads, simulated traffic through the VirtualServices), a
real Prometheus scraping the simulated Istio metrics, and the controller, all in-process. With
``--cluster-kubeconfig`` it uses an existing cluster instead of a sandbox (a real control plane
with kwok's pods, or a ``rollout sandbox up`` started by someone else): in a namespace it creates
and deletes on exit, with ``rollout sandbox traffic``'s mesh (``rollout.sandbox.mesh``, a client
of the API) in-process. Every object is written through the API, in both modes. Then it
deploys a Rollout (v1), lets it serve until Prometheus has data, updates it to v2 (whose pod
annotations make it good, failing or slow) and prints the progress each second until the
rollout is promoted or rolled back. ``--json`` writes the timeline, ``--plot`` draws it.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import shutil
import string
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


class Stopped(BaseException):  # like KeyboardInterrupt: not swallowed by `except Exception`
    """SIGTERM or Ctrl-C asked the demo to stop; ``code`` is the exit status (128 + signal)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# Set by the signal handlers (``rollout.demo_cli``); the demo's waits notice it. A handler that
# raised instead could land anywhere — inside the sandbox's store while it holds its lock, or a
# logging handler — and leave a lock held that the shutdown then waits on for ever.
STOP = threading.Event()
_stop_code = [0]


def request_stop(code: int) -> None:
    """Ask a running demo to stop at its next wait (signal-safe: sets an Event, raises nothing)."""
    _stop_code[0] = code
    STOP.set()


def pause(seconds: float) -> None:
    """Sleep ``seconds``, or raise ``Stopped`` as soon as a stop is requested."""
    if STOP.wait(max(0.0, seconds)):
        raise Stopped(_stop_code[0])


NAMESPACE = "demo"
APP = "reviews"
GROUP_VERSION = "rollout.dev/v1alpha1"
ISTIO = "networking.istio.io/v1beta1"
ERROR_RATE = "sandbox.rollout.dev/error-rate"
LATENCY_MS = "sandbox.rollout.dev/latency-ms"
LATENCY_P99_MS = "sandbox.rollout.dev/latency-p99-ms"
READY_AFTER = "sandbox.rollout.dev/ready-after"

MAX_ERROR_RATE = 0.05
MAX_P99_MS = 250.0
INTERVAL_S = 5
RPS = 100.0
TIMEOUT_S = 150.0
TAIL_S = 3.0  # seconds sampled after the outcome, so the timeline shows where traffic settled

GATE: Obj = {
    "interval": f"{INTERVAL_S}s",
    "prometheus": {"scrapeInterval": "1s", "timeout": "2s"},
    "checks": [
        {"name": "error-rate", "errorRate": {"max": MAX_ERROR_RATE, "minRequests": 10}},
        {"name": "latency", "latencyP99": {"maxMs": MAX_P99_MS, "minRequests": 10}},
    ],
}

CANARY_STEPS: list[Obj] = [
    {"setWeight": 20},
    {"analysis": {"count": 2}},
    {"setWeight": 50},
    {"analysis": {"count": 1}},
    {"setWeight": 80},
    {"pause": {"duration": "3s"}},
]
HEADER_STEPS: list[Obj] = [
    {
        "setHeaderRoute": {
            "name": "testers",
            "match": [{"headers": {"end-user": {"exact": "jason"}}}],
        }
    },
    {"analysis": {"count": 2}},
    {"setWeight": 50},
    {"analysis": {"count": 1}},
]
BAD = {ERROR_RATE: "0.3"}
SLOW = {LATENCY_MS: "150", LATENCY_P99_MS: "900"}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    strategy: Obj
    v2: dict[str, str]  # v2's behaviour: sandbox pod-template annotations
    expected: str  # Promoted | RolledBack
    host_routing: bool = False  # blue-green: a Service per version; else DestinationRule subsets


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "good-canary",
            "a healthy canary walks 20% -> 50% -> 80% and is promoted",
            {"canary": {"steps": CANARY_STEPS}},
            {},
            "Promoted",
        ),
        Scenario(
            "bad-canary",
            "a canary answering 30% errors fails its gate at 20% and is rolled back",
            {"canary": {"steps": CANARY_STEPS}},
            BAD,
            "RolledBack",
        ),
        Scenario(
            "slow-canary",
            "a canary with a 900 ms p99 fails its latency gate and is rolled back",
            {"canary": {"steps": CANARY_STEPS}},
            SLOW,
            "RolledBack",
        ),
        Scenario(
            "blue-green",
            "a healthy preview is gated, switched to at once, gated again and kept",
            {
                "blueGreen": {
                    "previewReplicaCount": 2,
                    "autoPromotionSeconds": 0,
                    "prePromotionAnalysis": {"count": 1},
                    "postPromotionAnalysis": {"count": 2},
                }
            },
            {},
            "Promoted",
            host_routing=True,
        ),
        Scenario(
            "bad-blue-green",
            "after the switch the new version fails its post-promotion gate: traffic switches back",
            {
                "blueGreen": {
                    "previewReplicaCount": 2,
                    "autoPromotionSeconds": 0,
                    "postPromotionAnalysis": {"count": 2},
                }
            },
            BAD,
            "RolledBack",
            host_routing=True,
        ),
        Scenario(
            "mirror",
            "live traffic is mirrored to the new version for 12 s, gated, then switched",
            {"mirror": {"percent": 100, "duration": "12s"}},
            {},
            "Promoted",
        ),
        Scenario(
            "bad-mirror",
            "the mirrored copy fails its gate: rejected before it serves any live request",
            {"mirror": {"percent": 100, "duration": "12s"}},
            BAD,
            "RolledBack",
        ),
        Scenario(
            "header-route",
            "testers (end-user: jason) reach the canary first, then 50% of everyone",
            {"canary": {"steps": HEADER_STEPS}},
            {},
            "Promoted",
        ),
    )
}


# -- manifests ---------------------------------------------------------------------------------


def _meta(name: str, namespace: str) -> Obj:
    return {"name": name, "namespace": namespace}


def services(scenario: Scenario, namespace: str = NAMESPACE) -> list[Obj]:
    names = [APP, f"{APP}-stable", f"{APP}-canary"] if scenario.host_routing else [APP]
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, namespace),
            "spec": {"selector": {"app": APP}, "ports": [{"name": "http", "port": 9080}]},
        }
        for name in names
    ]


def destination_rule(namespace: str = NAMESPACE) -> Obj:
    return {
        "apiVersion": ISTIO,
        "kind": "DestinationRule",
        "metadata": _meta(APP, namespace),
        "spec": {
            "host": APP,
            "subsets": [
                {"name": "stable", "labels": {"app": APP}},
                {"name": "canary", "labels": {"app": APP}},
            ],
        },
    }


def virtual_services(scenario: Scenario, namespace: str = NAMESPACE) -> list[Obj]:
    if scenario.host_routing:
        stable, canary = {"host": f"{APP}-stable"}, {"host": f"{APP}-canary"}
    else:
        stable, canary = {"host": APP, "subset": "stable"}, {"host": APP, "subset": "canary"}
    live = {
        "apiVersion": ISTIO,
        "kind": "VirtualService",
        "metadata": _meta(APP, namespace),
        "spec": {
            "hosts": [APP],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": stable, "weight": 100},
                        {"destination": canary, "weight": 0},
                    ],
                }
            ],
        },
    }
    if not scenario.host_routing:
        return [live]
    # Blue-green's preview: testers reach it on its own host before the switch.
    preview = {
        "apiVersion": ISTIO,
        "kind": "VirtualService",
        "metadata": _meta(f"{APP}-preview", namespace),
        "spec": {
            "hosts": [f"{APP}-canary"],
            "http": [{"route": [{"destination": {"host": f"{APP}-canary"}}]}],
        },
    }
    return [live, preview]


def template(version: int, annotations: dict[str, str]) -> Obj:
    return {
        "metadata": {
            "labels": {"app": APP},
            "annotations": {READY_AFTER: "0.5", **annotations},
        },
        "spec": {"containers": [{"name": APP, "image": f"example.com/shop/{APP}:{version}"}]},
    }


def rollout(scenario: Scenario, namespace: str = NAMESPACE) -> Obj:
    strategy = copy.deepcopy(scenario.strategy)
    for body in strategy.values():
        body.setdefault("scaleDownDelaySeconds", 2)
        body.setdefault("abortScaleDownDelaySeconds", 2)
    if scenario.host_routing:
        routing: Obj = {
            "virtualServices": [{"name": APP}],
            "stableService": f"{APP}-stable",
            "canaryService": f"{APP}-canary",
        }
    else:
        routing = {
            "virtualServices": [{"name": APP, "routes": ["primary"]}],
            "destinationRule": {"name": APP, "stableSubset": "stable", "canarySubset": "canary"},
        }
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Rollout",
        "metadata": _meta(APP, namespace),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": APP}},
            "template": template(1, {}),
            "trafficRouting": {"istio": routing},
            "analysis": copy.deepcopy(GATE),
            "strategy": strategy,
        },
    }


# -- Prometheus --------------------------------------------------------------------------------


def query(prometheus: str, promql: str) -> float | None:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            result = json.load(reply)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: no data


def _selector(revision: str, namespace: str) -> str:
    return (
        f'reporter="destination",destination_workload_namespace="{namespace}",'
        f'destination_canonical_service="{APP}",destination_canonical_revision="{revision}"'
    )


def error_rate(prometheus: str, revision: str | None, namespace: str = NAMESPACE) -> float | None:
    if not revision:
        return None
    sel, w = _selector(revision, namespace), f"{INTERVAL_S}s"
    return query(
        prometheus,
        f'(sum(increase(istio_requests_total{{{sel},response_code=~"5.."}}[{w}])) or vector(0))'
        f" / sum(increase(istio_requests_total{{{sel}}}[{w}]))",
    )


def p99_ms(prometheus: str, revision: str | None, namespace: str = NAMESPACE) -> float | None:
    if not revision:
        return None
    sel = _selector(revision, namespace)
    return query(
        prometheus,
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(istio_request_duration_milliseconds_bucket{{{sel}}}[{INTERVAL_S}s])))",
    )


def wait_for_data(
    prometheus: str, revision: str, timeout: float = 30.0, namespace: str = NAMESPACE
) -> None:
    deadline = time.monotonic() + timeout
    sel = _selector(revision, namespace)
    while time.monotonic() < deadline:
        total = query(prometheus, f"sum(increase(istio_requests_total{{{sel}}}[5s]))")
        if total is not None and total > 0:
            return
        pause(0.5)
    raise RuntimeError(f"Prometheus has no data for {APP}'s revision {revision} after {timeout}s")


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Sample:
    """One second of the ``--json`` timeline. ``step`` is ``status.currentStepIndex`` (0-based:
    the number of steps completed); ``stepLabel`` is the step as every view numbers it
    (``rollout.domain.steps.step_number``: ``"i/n"`` of the step being executed, ``"n/n"`` once
    all are done, ``"-"`` without steps), the text to show a person."""

    t: float
    phase: str | None
    step: int | None
    canaryWeight: int  # noqa: N815 - the JSON's field names
    stableWeight: int  # noqa: N815
    mirrorPercent: float  # noqa: N815
    canaryErrorRate: float | None  # noqa: N815
    canaryP99Ms: float | None  # noqa: N815
    stableErrorRate: float | None  # noqa: N815
    stableP99Ms: float | None  # noqa: N815
    stepLabel: str = "-"  # noqa: N815
    # One entry per version, v1 then v2 (``VersionTracker.record``): {version, image,
    # revision, roles, weight, mirrorPercent, errorRate, p99Ms}. The canary*/stable* fields
    # above are by role, which swaps at promotion; these are by version and do not.
    versions: list[Obj] = field(default_factory=list)


def step_label(status: Obj) -> str:
    """The step of a Rollout's ``status`` as every view shows it: ``status.step`` when the
    controller wrote it, else ``step_number(currentStepIndex, stepCount)``."""
    from rollout.domain.steps import step_number

    label = status.get("step")
    if isinstance(label, str):
        return label
    index, count = status.get("currentStepIndex"), status.get("stepCount")
    if not isinstance(index, int) or not isinstance(count, int):
        return "-"
    return step_number(index, count)


def step_change(sample: Sample, count: int | None = None) -> str:
    """The timeline event (and plot label) of a change of phase or step: ``Paused step 2/6``.

    ``count`` is the number of steps (None: unknown): once they are all done (``sample.step >=
    count``) a Progressing rollout is promoting, ``Progressing step 4/4 done: promoting`` as the
    status message says, so that it does not read as a second ``Progressing step 4/4``."""
    where = "" if sample.stepLabel == "-" else f" step {sample.stepLabel}"
    if promoting(sample, count):
        where += " done: promoting" if where else " promoting"
    return f"{sample.phase}{where}"


def promoting(sample: Sample, count: int | None) -> bool:
    """Whether ``sample`` is of a rollout past its last step (of ``count``; None: unknown) and
    not yet done: the controller is promoting the new version."""
    return (
        sample.phase == "Progressing"
        and sample.step is not None
        and count is not None
        and sample.step >= count
    )


@dataclass
class Result:
    scenario: str
    outcome: str
    durationSeconds: float  # noqa: N815
    expected: str
    thresholds: Obj
    timeline: list[Sample] = field(default_factory=list)
    # {t, what, kind}: kind "step" (a step or phase change; appended without a kind),
    # "gate-failed", "switch" (blue-green: v2 takes the live traffic), "promotion" (v2 becomes
    # stable), "rollback" (back to v1). ``as_json`` gives every event its kind.
    events: list[Obj] = field(default_factory=list)
    strategy: str = "canary"  # canary | blueGreen | mirror: blueGreen's roles are active/preview
    stepCount: int = 0  # noqa: N815 - the number of steps of the strategy, as the controller counts
    # {version: "v1"|"v2", image, revision (pod-template hash; None until the controller made it)}
    versions: list[Obj] = field(default_factory=list)

    def as_json(self) -> Obj:
        return {
            "scenario": self.scenario,
            "outcome": self.outcome,
            "expected": self.expected,
            "durationSeconds": round(self.durationSeconds, 2),
            "thresholds": self.thresholds,
            "strategy": self.strategy,
            "stepCount": self.stepCount,
            "versions": self.versions,
            "timeline": [vars(s) for s in self.timeline],
            "events": events_in_order(self.events),
        }


def events_in_order(events: list[Obj]) -> list[Obj]:
    """``events`` for the JSON: each with its ``kind`` (one appended without a kind is a change
    of phase or step: ``step``), in time order and, at the same second, the cause before the
    effect (``EVENT_ORDER``: a failed gate before the rollback it causes)."""
    kinded = [{**event, "kind": event.get("kind", "step")} for event in events]
    return sorted(kinded, key=lambda e: (e["t"], EVENT_ORDER.get(e["kind"], 0)))


EVENT_ORDER = {"step": 0, "gate-failed": 1, "switch": 2, "promotion": 3, "rollback": 4}


def image_of(version: int) -> str:
    """The container image of the demo's ``version`` (1 or 2), as ``template`` writes it."""
    return str(template(version, {})["spec"]["containers"][0]["image"])


def step_count(scenario: Scenario) -> int:
    """How many steps the controller runs for ``scenario``'s strategy (``steps_of``): the
    ``n`` of every ``i/n`` step label."""
    from rollout.api.rollout import RolloutSpec
    from rollout.domain.steps import steps_of

    return len(steps_of(RolloutSpec.model_validate(rollout(scenario)["spec"])))


class VersionTracker:
    """Turns each status the demo samples into per-version data: which version is stable or
    canary (blue-green: active or preview), its weight and metrics, and the moments a person
    looks for (v2 takes the live traffic, v2 becomes stable, rolled back to v1).

    Roles come from ``status.stableRevision`` / ``canaryRevision`` (pod-template hashes) and
    ``status.weights``; for blue-green, as ``kubectl argo rollouts get`` shows them: the
    version that has the live traffic is ``active``, the new one without it ``preview``, and
    ``stable`` stays on the version the rollout falls back to until the promotion ends.
    """

    def __init__(self, scenario: Scenario, result: Result, v1: str) -> None:
        self.result = result
        self.blue_green = scenario.host_routing
        result.strategy = next(iter(scenario.strategy))
        result.stepCount = step_count(scenario)
        result.versions = [
            {"version": "v1", "image": image_of(1), "revision": v1},
            {"version": "v2", "image": image_of(2), "revision": None},
        ]
        self.seen: set[str] = set()  # kinds of the one-off events already recorded

    def record(self, sample: Sample, status: Obj, v2: str | None) -> None:
        """Fill ``sample.stepLabel`` and ``sample.versions`` from ``status`` (the Rollout's
        status when ``sample`` was taken; ``v2`` its new revision once known) and append the
        switch, promotion and rollback events the first time each happens."""
        from rollout.domain.steps import step_number

        result = self.result
        identity_v1, identity_v2 = result.versions
        if v2 is not None:
            identity_v2["revision"] = v2
        if sample.stepLabel == "-":  # "i/n": the one numbering
            sample.stepLabel = step_number(sample.step, result.stepCount)
        stable, canary = status.get("stableRevision"), status.get("canaryRevision")
        sample.versions = []
        for identity, error, p99 in (
            (identity_v1, sample.stableErrorRate, sample.stableP99Ms),
            (identity_v2, sample.canaryErrorRate, sample.canaryP99Ms),
        ):
            revision = identity["revision"]
            is_stable = revision is not None and revision == stable
            is_canary = revision is not None and revision == canary and not is_stable
            weight = sample.stableWeight if is_stable else sample.canaryWeight if is_canary else 0
            sample.versions.append(
                {
                    **identity,
                    "roles": self._roles(is_stable, is_canary, weight),
                    "weight": weight,
                    "mirrorPercent": sample.mirrorPercent if is_canary else 0.0,
                    "errorRate": error,
                    "p99Ms": p99,
                }
            )
        roles_v2 = sample.versions[1]["roles"]
        if self.blue_green and "active" in roles_v2:
            self._once(sample.t, "switch", "v2 becomes active")
        if "stable" in roles_v2:
            self._once(sample.t, "promotion", "v2 becomes stable")
        if _outcome(status, str(identity_v1["revision"]), v2) == "RolledBack":
            self._once(sample.t, "rollback", "rolled back to v1")

    def _roles(self, is_stable: bool, is_canary: bool, weight: int) -> list[str]:
        if not self.blue_green:
            return ["stable"] if is_stable else ["canary"] if is_canary else []
        roles = ["active"] if weight > 0 else []
        if is_stable:
            roles.append("stable")
        elif is_canary and weight == 0:
            roles.append("preview")
        return roles

    def _once(self, t: float, kind: str, what: str) -> None:
        if kind not in self.seen:
            self.seen.add(kind)
            self.result.events.append({"t": t, "what": what, "kind": kind})


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gate_line(status: Obj) -> str:
    checks = ((status.get("analysis") or {}).get("checks")) or []
    parts = []
    for check in checks:
        last = (check.get("measurements") or [None])[-1]
        if not last:
            continue
        value = last.get("value")
        if check["name"] == "error-rate":
            shown = f"{_fmt(value)} (max {MAX_ERROR_RATE})"
        else:
            shown = f"{_fmt(value, 0)} ms (max {MAX_P99_MS:g})"
        parts.append(f"{check['name']} {shown} {last.get('phase')}")
    return "; ".join(parts)


def _step_name(spec: Obj, index: int | None) -> str:
    """The printed line's step: ``step 2/6 pause {}``; ``step 6/6 done`` after the last one."""
    from rollout.domain.steps import step_number

    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    if index is None or not steps:
        return ""
    number = step_number(index, len(steps))
    if index >= len(steps):
        return f"step {number} done"
    step = steps[index]
    action = next(iter(step))
    return f"step {number} {action} {json.dumps(step[action], separators=(',', ':'))}"


MANAGED_BY = "app.kubernetes.io/managed-by"  # on the namespace the demo creates
CLEANUP_TIMEOUT_S = 60.0  # how long the demo waits for its namespace to be gone on exit


class _Own:
    """What the demo started and must stop (last started, first stopped), and the namespace
    it created on an existing cluster (deleted on exit)."""

    def __init__(self) -> None:
        self.stops: list[Any] = []
        self.namespace: str | None = None
        self.access: Any = None

    def close(self, say: Any) -> None:
        while self.stops:
            self.stops.pop()()
        if self.namespace is not None and self.access is not None:
            _delete_namespace(self.access, self.namespace, say)


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _create_namespace(access: Any, wanted: str | None, say: Any) -> str:
    """Create the demo's own namespace on an existing cluster: ``wanted`` if given (it must not
    exist), else ``demo``, else a fresh ``demo-<5 letters>`` when ``demo`` exists (or is still
    terminating). Never adopts a namespace it did not create."""
    from rollout.cluster.access import NAMESPACES, Conflict

    names = [wanted] if wanted else [NAMESPACE] + [f"{NAMESPACE}-{_suffix()}" for _ in range(5)]
    for name in names:
        try:
            access.create(
                NAMESPACES,
                None,
                {"metadata": {"name": name, "labels": {MANAGED_BY: "rollout-demo"}}},
            )
        except Conflict:
            if wanted:
                raise RuntimeError(
                    f"namespace {name} already exists; the demo only uses a namespace it creates"
                ) from None
            continue
        say(f"namespace {name} created (deleted when the demo ends)")
        return name
    raise RuntimeError(f"no free namespace name among {', '.join(names)}")


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


def _delete_namespace(access: Any, namespace: str, say: Any) -> None:
    """Delete the demo's namespace and wait (``CLEANUP_TIMEOUT_S`` at most) until it is gone.

    Runs while the demo stops, so it sleeps plainly instead of ``pause`` (a stop is already
    under way); an API that fails here is reported, not raised.
    """
    from rollout.cluster.access import NAMESPACES, ClusterError, NotFound

    try:
        access.delete(NAMESPACES, None, namespace)
    except NotFound:
        return
    except ClusterError as error:
        say(f"could not delete namespace {namespace}: {_one_line(error)}")
        return
    deadline = time.monotonic() + CLEANUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            access.get(NAMESPACES, None, namespace)
        except NotFound:
            say(f"namespace {namespace} deleted")
            return
        except ClusterError:
            pass
        time.sleep(0.2)
    say(f"namespace {namespace} is still terminating after {CLEANUP_TIMEOUT_S:g}s")


def _start_sandbox(own: _Own, metrics: Any, workdir: Path, kubeconfig: Path | None) -> str:
    """The demo's own sandbox with its in-memory traffic simulator; its kubeconfig's path."""
    from rollout.sandbox.cluster import Sandbox
    from rollout.sandbox.traffic import StoreSource, TrafficSimulator

    sandbox = Sandbox(0)
    own.stops.append(sandbox.stop)
    sandbox.start()
    traffic = TrafficSimulator(StoreSource(sandbox.store, sandbox.registry), metrics, rps=RPS)
    own.stops.append(traffic.stop)
    traffic.start()
    sandbox.write_kubeconfig(workdir / "kubeconfig")
    if kubeconfig is not None:
        sandbox.write_kubeconfig(kubeconfig)
    return str(workdir / "kubeconfig")


def _connect_cluster(cluster_kubeconfig: Path) -> tuple[Any, str]:
    """A ``KubeAccess`` to an existing cluster, checked: it serves Rollouts and Istio's kinds.

    Raises ``RuntimeError`` with one line when the kubeconfig or the API cannot be used.
    """
    from rollout.cluster.access import ROLLOUTS, ClusterError, NotFound
    from rollout.cluster.kube import connect_cli
    from rollout.sandbox.mesh import ApiSource

    if not cluster_kubeconfig.is_file():
        raise RuntimeError(f"cannot read --cluster-kubeconfig {cluster_kubeconfig}: no such file")
    try:
        access, _ = connect_cli(str(cluster_kubeconfig))
        host = access.api.configuration.host
        ApiSource(access).check()  # Services, DestinationRules, ReplicaSets, VirtualServices
        access.list(ROLLOUTS)
    except NotFound as error:
        raise RuntimeError(
            f"the cluster does not serve rollouts.rollout.dev/v1alpha1 "
            f"(install the CRDs: kubectl apply -f crds/): {_one_line(error)}"
        ) from None
    except ClusterError as error:
        where = f"the cluster of {cluster_kubeconfig}"
        raise RuntimeError(f"{where}: {_one_line(error)}") from None
    return access, host


def _start_mesh(own: _Own, metrics: Any, access: Any, namespace: str) -> None:
    """``rollout sandbox traffic``'s mesh, in-process, reading ``namespace`` through the API."""
    from rollout.sandbox.mesh import SYNC_TIMEOUT, ApiSource
    from rollout.sandbox.traffic import TrafficSimulator

    source = ApiSource(access, namespace=namespace)
    own.stops.append(source.stop)
    source.check()
    source.start()
    if not source.wait_synced():
        raise RuntimeError(f"the API did not answer the first lists within {SYNC_TIMEOUT:g}s")
    traffic = TrafficSimulator(source, metrics, rps=RPS)
    own.stops.append(traffic.stop)
    traffic.start()


def run_demo(
    name: str,
    out: Any = None,
    kubeconfig: Path | None = None,
    *,
    cluster_kubeconfig: Path | None = None,
    namespace: str | None = None,
) -> Result:
    """Run scenario ``name``; print progress to ``out`` (stdout).

    Without ``cluster_kubeconfig`` the demo starts its own sandbox; ``kubeconfig``: also write
    the sandbox's kubeconfig there (atomically, once the API answers and before any object
    exists), so another client can watch the whole run.

    With ``cluster_kubeconfig`` it runs on that existing cluster instead (which must serve
    Rollouts and Istio's kinds): in a namespace of its own (``namespace``, which must not exist,
    else ``demo`` or a fresh ``demo-<suffix>``), with ``rollout sandbox traffic``'s simulated
    mesh reading that namespace through the API; on exit it deletes that namespace and nothing
    else. Every failure to use the cluster is a ``RuntimeError`` with one line.
    """
    from rollout.cluster.access import (
        DESTINATION_RULES,
        NAMESPACES,
        ROLLOUTS,
        SERVICES,
        VIRTUAL_SERVICES,
        ClusterError,
    )
    from rollout.cluster.kube import KubeAccess, load_api_client
    from rollout.controller.runtime import Controller
    from rollout.sandbox.istio_metrics import IstioMetrics
    from rollout.sandbox.prometheus import PrometheusServer

    out = out or sys.stdout
    scenario = SCENARIOS[name]

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    logging.getLogger("rollout").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="rollout-demo-"))
    metrics = IstioMetrics()
    own = _Own()
    try:
        if cluster_kubeconfig is None:
            access = KubeAccess(load_api_client(_start_sandbox(own, metrics, workdir, kubeconfig)))
            where = f"sandbox at {access.api.configuration.host}"
        else:
            access, host = _connect_cluster(cluster_kubeconfig)
            where = f"cluster at {host}"
        if cluster_kubeconfig is not None:
            own.access = access
            ns = _create_namespace(access, namespace, say)
            own.namespace = ns
            _start_mesh(own, metrics, access, ns)
        else:  # a fresh sandbox of its own: nobody else's namespace to avoid
            ns = namespace or NAMESPACE
            access.create(NAMESPACES, None, {"metadata": {"name": ns}})
        prometheus = PrometheusServer([f"127.0.0.1:{metrics.serve(0)}"], port=0)
        own.stops.append(prometheus.stop)
        prometheus.start()
        say(f"{where}, prometheus at {prometheus.url}")
        controller = Controller(access, namespace=ns, workers=2, prometheus_url=prometheus.url)
        own.stops.append(controller.stop)
        if not controller.start_caches(timeout=20):
            raise RuntimeError("the controller's watch caches did not fill")
        controller.start_workers()

        for svc in services(scenario, ns):
            access.create(SERVICES, ns, svc)
        if not scenario.host_routing:
            access.create(DESTINATION_RULES, ns, destination_rule(ns))
        for vs in virtual_services(scenario, ns):
            access.create(VIRTUAL_SERVICES, ns, vs)
        access.create(ROLLOUTS, ns, rollout(scenario, ns))
        say(f"scenario {scenario.name}: {scenario.description}")

        def status() -> Obj:
            found: Obj = access.get(ROLLOUTS, ns, APP).get("status") or {}
            return found

        def wait(predicate: Any, what: str, timeout: float = 60.0) -> Obj:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                current = status()
                if predicate(current):
                    return current
                pause(0.1)
            raise RuntimeError(f"timed out waiting for {what}")

        v1 = str(
            wait(lambda s: s.get("phase") == "Healthy" and s.get("stableRevision"), "v1")[
                "stableRevision"
            ]
        )
        say(f"v1 ({v1}) is Healthy; waiting for Prometheus to see its traffic")
        wait_for_data(prometheus.url, v1, namespace=ns)
        pause(INTERVAL_S)  # a full gate window of v1's traffic: stable's side is judged too

        updated = access.patch(
            ROLLOUTS,
            ns,
            APP,
            [{"op": "replace", "path": "/spec/template", "value": template(2, scenario.v2)}],
            patch_type="json",
        )
        generation = int(updated["metadata"]["generation"])
        behaviour = ", ".join(f"{k.rsplit('/', 1)[1]}={v}" for k, v in scenario.v2.items())
        say(f"updated to v2 ({behaviour or 'healthy'}); expecting {scenario.expected}")
        return _watch(scenario, prometheus.url, status, v1, generation, say, ns)
    except ClusterError as error:
        raise RuntimeError(f"the cluster refused a request: {_one_line(error)}") from None
    finally:
        own.close(say)
        metrics.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _watch(
    scenario: Scenario,
    prometheus: str,
    status: Any,
    v1: str,
    generation: int,
    say: Any,
    namespace: str = NAMESPACE,
) -> Result:
    start = time.monotonic()
    # Until the controller has seen v2 the status is still v1's: showing it would say "Healthy".
    while int(status().get("observedGeneration") or 0) < generation:
        if time.monotonic() - start > TIMEOUT_S:
            raise RuntimeError("the controller did not pick up v2")
        pause(0.05)
    result = Result(
        scenario.name,
        "Timeout",
        0.0,
        scenario.expected,
        {"errorRate": MAX_ERROR_RATE, "p99Ms": MAX_P99_MS},
    )
    versions = VersionTracker(scenario, result, v1)
    v2: str | None = None
    last_line = ""
    last_step: tuple[Any, Any] | None = None
    seen_failures = 0
    ended: float | None = None  # when the outcome was reached; a few more samples follow
    while time.monotonic() - start < TIMEOUT_S:
        tick = time.monotonic()
        current: Obj = status()
        t = round(tick - start, 2)
        v2 = v2 or (current.get("canaryRevision") if current.get("canaryRevision") != v1 else None)
        weights = current.get("weights") or {}
        sample = Sample(
            t=t,
            phase=current.get("phase"),
            step=current.get("currentStepIndex"),
            canaryWeight=int(weights.get("canary", 0)),
            stableWeight=int(weights.get("stable", 100)),
            mirrorPercent=float(weights.get("mirror", 0)),
            canaryErrorRate=error_rate(prometheus, v2, namespace),
            canaryP99Ms=p99_ms(prometheus, v2, namespace),
            stableErrorRate=error_rate(prometheus, v1, namespace),
            stableP99Ms=p99_ms(prometheus, v1, namespace),
            stepLabel=step_label(current),
        )
        result.timeline.append(sample)
        versions.record(sample, current, v2)
        step = (sample.phase, sample.step)
        if step != last_step:
            result.events.append({"t": t, "what": step_change(sample, result.stepCount)})
            last_step = step
        failures = sum(
            1
            for check in ((current.get("analysis") or {}).get("checks") or [])
            for m in check.get("measurements") or []
            if m.get("phase") == "Failed"
        )
        if failures > seen_failures:
            result.events.append({"t": t, "what": "gate failed", "kind": "gate-failed"})
            seen_failures = failures
        line = (
            f"{sample.phase or '-':<11} {_step_line(scenario, sample):<40} "
            + weights_text(sample, versions.blue_green)
            + (f" | {_gate_line(current)}" if _gate_line(current) else "")
        )
        if line != last_line:
            say(f"[{t:5.1f}s] {line}")
            last_line = line
        if ended is None:
            outcome = _outcome(current, v1, v2)
            if outcome is not None:
                result.outcome = outcome
                result.durationSeconds = time.monotonic() - start
                ended = time.monotonic()
        if ended is not None and time.monotonic() - ended >= TAIL_S:
            break
        pause(max(0.0, 1.0 - (time.monotonic() - tick)))
    if ended is None:
        result.durationSeconds = time.monotonic() - start
    reason = status().get("abortReason")
    say(
        f"{scenario.name}: {result.outcome} after {result.durationSeconds:.1f}s"
        + (f" ({reason})" if reason and result.outcome == "RolledBack" else "")
        + f" - expected {scenario.expected}: "
        + ("OK" if result.outcome == scenario.expected else "UNEXPECTED")
    )
    return result


def weights_text(sample: Sample, blue_green: bool = False) -> str:
    """The printed line's traffic, by version as the plot draws it (``stable`` and ``canary``
    swap at the promotion): ``traffic v1/v2 80/20``, with ``mirror 100%`` while v2 gets a
    copy; blue-green in its own terms: ``live traffic v1/v2 100/0 (active v1, preview v2)``.
    ``sample.versions`` comes from ``VersionTracker.record``; before it, the roles' weights."""
    if len(sample.versions) != 2:
        text = f"traffic stable/canary {sample.stableWeight}/{sample.canaryWeight}"
    else:
        v1, v2 = sample.versions
        text = f"traffic v1/v2 {v1['weight']}/{v2['weight']}"
        if blue_green:
            roles = [
                f"{role} {entry['version']}"
                for role in ("active", "preview")
                for entry in (v1, v2)
                if role in entry["roles"]
            ]
            text = f"live {text}" + (f" ({', '.join(roles)})" if roles else "")
    if sample.mirrorPercent:
        text += f" mirror {sample.mirrorPercent:g}%"
    return text


def _step_line(scenario: Scenario, sample: Sample) -> str:
    """The printed line's step: the canary step with its action, else (blue-green, mirror:
    steps the controller derives) the number alone."""
    named = _step_name(_spec_of(scenario), sample.step)
    if named or sample.stepLabel == "-":
        return named
    return f"step {sample.stepLabel}"


def _spec_of(scenario: Scenario) -> Obj:
    return {"strategy": scenario.strategy}


def _outcome(status: Obj, v1: str, v2: str | None) -> str | None:
    weights = status.get("weights") or {}
    if v2 and status.get("stableRevision") == v2 and status.get("phase") == "Healthy":
        return "Promoted"
    if (
        status.get("phase") == "Degraded"
        and status.get("stableRevision") == v1
        and int(weights.get("canary", 0)) == 0
        and float(weights.get("mirror", 0)) == 0
    ):
        return "RolledBack"
    return None


def write_json(result: Result, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_json(), indent=2) + "\n")
