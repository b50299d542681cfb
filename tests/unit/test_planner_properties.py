"""Property tests of the planner: random strategies and random event sequences, every tick checked.

Manifests start from ``crds/examples`` and get random steps, replicas, deadlines and a simple gate
(``error-rate`` and/or ``latency``). Event sequences mix time passing, operator actions (promote,
promote --full, abort, retry, pause, resume), new images, reverts to the stable image, pods that
break or heal and gate outcomes that change. After every tick the invariants below hold:

1. routes and weights stay within 0..100, stable + canary == 100;
2. no route sends traffic to a canary without an available pod, nor more traffic than its
   available pods are sized for;
3. no promotion while the gate is Failed, Error or Inconclusive;
4. no promotion on missing data (every measurement Inconclusive or Error);
5. the plan is a function of (observed, now);
6. the status validates and round-trips; the step index is in range;
7. an aborted rollout sends the canary nothing and is Degraded;
8. a user pause holds the step index and the stable revision;
9. with passing gates, promoting repeatedly reaches Healthy on the template's revision;
10. an invalid spec only emits events and is Degraded;
11. never advance while any latest measurement is not Successful: while the run (with this
    tick's measurements folded in) is Inconclusive or has a check whose latest measurement
    is Failed, Error or Inconclusive, no step completes, nothing is promoted and the canary's
    share of traffic does not rise above what it had (or the previous step gave it).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from analysis import measurement as gate
from analysis.measurement import BLOCKING
from rollout.api.manifest import parse_rollout
from rollout.api.status import PAUSE_INCONCLUSIVE, PAUSE_USER, MeasurementPhase, RolloutStatus
from rollout.domain import planner
from rollout.domain.observed import Observed, RouteState
from rollout.domain.plan import EmitEvent, Plan, SetRoute
from rollout.domain.steps import Traffic, canary_replicas, steps_of, traffic_at
from tests.unit.world import World, example

# PLANNER_EXAMPLES_FACTOR=10 for a deeper (slower) search than CI's; derandomized either way.
FACTOR = float(os.environ.get("PLANNER_EXAMPLES_FACTOR", "1"))


def properties(examples: int) -> settings:
    return settings(
        max_examples=max(1, round(examples * FACTOR)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


PHASES: tuple[MeasurementPhase, ...] = ("Successful", "Failed", "Inconclusive", "Error")
NO_DATA: tuple[MeasurementPhase, ...] = ("Inconclusive", "Error")
CHECKS: dict[str, dict[str, Any]] = {
    "error-rate": {"name": "error-rate", "errorRate": {"max": 0.01}},
    "latency": {"name": "latency", "latencyP99": {"maxMs": 500}},
}
STATUS_PHASES = {"Healthy", "Progressing", "Paused", "Degraded"}


# -- manifests ---------------------------------------------------------------------------------


def _analysis(
    checks: list[str], interval: int, failures: int, inconclusive: int, errors: int
) -> dict[str, Any]:
    return {
        "interval": interval,
        "failureLimit": failures,
        "inconclusiveLimit": inconclusive,
        "consecutiveErrorLimit": errors,
        "prometheus": {"address": "http://prometheus.istio-system:9090"},
        "checks": [copy.deepcopy(CHECKS[name]) for name in checks],
    }


@st.composite
def gates(draw: st.DrawFn, inconclusive_limit: int | None = None) -> dict[str, Any]:
    checks = draw(st.sampled_from([["error-rate"], ["latency"], ["error-rate", "latency"]]))
    limit = draw(st.integers(0, 1)) if inconclusive_limit is None else inconclusive_limit
    return _analysis(
        checks,
        interval=draw(st.sampled_from([10, 30, 60])),
        failures=draw(st.integers(0, 1)),
        inconclusive=limit,
        errors=draw(st.integers(0, 2)),
    )


def _header_route(name: str, user: str) -> dict[str, Any]:
    match = [{"headers": {"end-user": {"exact": user}}}]
    return {"setHeaderRoute": {"name": name, "match": match}}


PAUSE_BODIES: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.integers(0, 300).map(lambda s: {"duration": s}),
    st.sampled_from(["30s", "1m", "2m30s"]).map(lambda d: {"duration": d}),
)
ANALYSIS_STEPS: st.SearchStrategy[dict[str, Any]] = st.integers(1, 3).map(
    lambda n: {"analysis": {"count": n}}
)
TRAFFIC_STEPS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.integers(0, 100).map(lambda w: {"setWeight": w}),
    PAUSE_BODIES.map(lambda p: {"pause": p}),
    st.builds(_header_route, st.sampled_from(["testers", "beta"]), st.sampled_from(["jason", "a"])),
    st.integers(0, 100).map(lambda p: {"setMirror": {"percent": p}}),
)


def _base(name: str, replicas: int, analysis: dict[str, Any] | None) -> dict[str, Any]:
    doc = example(name)
    spec = doc["spec"]
    spec["replicas"] = replicas
    if analysis is None:
        spec.pop("analysis", None)
    else:
        spec["analysis"] = analysis
    return doc


@st.composite
def canaries(
    draw: st.DrawFn, gated: bool = False, inconclusive_limit: int | None = None
) -> dict[str, Any]:
    """A canary with 0..8 random steps; ``gated``: spec.analysis and at least one analysis step."""
    with_gate = gated or draw(st.booleans())
    step_kinds = st.one_of(TRAFFIC_STEPS, ANALYSIS_STEPS) if with_gate else TRAFFIC_STEPS
    steps = draw(st.lists(step_kinds, max_size=8))
    if gated and not any("analysis" in s for s in steps):
        at = draw(st.integers(0, len(steps)))
        steps.insert(at, draw(ANALYSIS_STEPS))
    analysis = draw(gates(inconclusive_limit)) if with_gate else None
    doc = _base("canary", draw(st.integers(1 if gated else 0, 6)), analysis)
    spec = doc["spec"]
    spec["progressDeadlineSeconds"] = draw(st.integers(60, 600))
    canary = spec["strategy"]["canary"]
    canary["steps"] = steps
    canary["backgroundAnalysis"] = draw(st.booleans())
    canary["abortScaleDownDelaySeconds"] = draw(st.sampled_from([0, 30]))
    return doc


@st.composite
def blue_greens(
    draw: st.DrawFn, gated: bool = False, inconclusive_limit: int | None = None
) -> dict[str, Any]:
    """Blue-green; ``gated``: spec.analysis and a pre-promotion analysis."""
    pre = draw(st.integers(1, 3)) if gated else draw(st.none() | st.integers(1, 3))
    post = draw(st.none() | st.integers(1, 3))
    with_gate = pre is not None or post is not None or draw(st.booleans())
    analysis = draw(gates(inconclusive_limit)) if with_gate else None
    doc = _base("blue-green", draw(st.integers(1 if gated else 0, 6)), analysis)
    spec = doc["spec"]
    spec["progressDeadlineSeconds"] = draw(st.integers(60, 600))
    bg: dict[str, Any] = {"scaleDownDelaySeconds": draw(st.sampled_from([0, 30]))}
    preview = draw(st.none() | st.integers(1, 3))
    if preview is not None:
        bg["previewReplicaCount"] = preview
    auto = draw(st.none() | st.integers(0, 120))
    if auto is not None:
        bg["autoPromotionSeconds"] = auto
    if pre is not None:
        bg["prePromotionAnalysis"] = {"count": pre}
    if post is not None:
        bg["postPromotionAnalysis"] = {"count": post}
    spec["strategy"] = {"blueGreen": bg}
    return doc


@st.composite
def mirrors(
    draw: st.DrawFn, gated: bool = False, inconclusive_limit: int | None = None
) -> dict[str, Any]:
    """The mirror strategy (it always has a gate)."""
    doc = _base("mirror", draw(st.integers(1 if gated else 0, 6)), draw(gates(inconclusive_limit)))
    spec = doc["spec"]
    spec["progressDeadlineSeconds"] = draw(st.integers(60, 600))
    percent = draw(st.integers(1, 100))
    spec["strategy"] = {"mirror": {"percent": percent, "duration": draw(st.integers(1, 240))}}
    return doc


def manifests(
    gated: bool = False, inconclusive_limit: int | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        canaries(gated, inconclusive_limit),
        blue_greens(gated, inconclusive_limit),
        mirrors(gated, inconclusive_limit),
    )


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str
    seconds: int = 0
    check: str | None = None  # for "outcome": None sets every check
    phase: MeasurementPhase = "Successful"

    def __repr__(self) -> str:
        if self.kind in ("run_for", "advance"):
            return f"{self.kind}({self.seconds})"
        if self.kind == "outcome":
            return f"outcome({self.check or '*'}={self.phase})"
        return self.kind


OPERATOR = ["promote", "promote_full", "abort", "retry", "pause", "resume"]
CHANGES = ["tick", "new_image", "revert", "break", "heal"]


def events(
    phases: tuple[MeasurementPhase, ...] = PHASES,
    actions: list[str] | None = None,
    max_size: int = 40,
) -> st.SearchStrategy[list[Event]]:
    kinds = OPERATOR + CHANGES if actions is None else actions
    time: st.SearchStrategy[Event] = st.builds(
        Event, st.sampled_from(["run_for", "run_for", "advance"]), st.integers(0, 200)
    )
    one: st.SearchStrategy[Event] = st.one_of(
        time,
        time,
        st.sampled_from(kinds).map(Event),
        st.sampled_from(kinds).map(Event),
        st.builds(
            lambda check, phase: Event("outcome", check=check, phase=phase),
            st.sampled_from([None, "error-rate", "latency"]),
            st.sampled_from(phases),
        ),
    )
    return st.lists(one, min_size=1, max_size=max_size)


# -- the checked world -------------------------------------------------------------------------


def check_tick(observed: Observed, plan: Plan, now: datetime) -> None:
    """Invariants 1-3 and 5-8, and 10, of one plan against what it observed."""
    # 5: determinism: the same input plans the same (so the first call mutated nothing it reads).
    assert planner.plan(observed, now) == plan

    status = plan.status
    routes = [a.route for a in plan.actions if isinstance(a, SetRoute)]

    # 6: the status is valid and round-trips through its wire form.
    wire = status.model_dump(by_alias=True, mode="json")
    assert RolloutStatus.model_validate(wire).model_dump(by_alias=True, mode="json") == wire
    assert status.phase in STATUS_PHASES

    # 10: an invalid spec only says why.
    if observed.spec is None:
        assert all(isinstance(a, EmitEvent) for a in plan.actions), plan.actions
        assert status.phase == "Degraded"
        return

    steps = len(steps_of(observed.spec))
    assert status.current_step_index is not None
    assert 0 <= status.current_step_index <= steps

    # 1: weights in range, stable + canary == 100.
    for route in routes:
        assert 0 <= route.canary_weight <= 100, route
        assert 0 <= route.mirror_percent <= 100, route
    assert status.weights is not None
    assert status.weights.stable + status.weights.canary == 100

    # 2: no canary traffic without an available canary pod.
    for route in routes:
        if route.sends_canary_traffic and route.canary_revision != route.stable_revision:
            view = observed.replica_set(route.canary_revision)
            assert view is not None and view.available > 0, (route, observed.replica_sets)

    # 2, stronger: nor does the route left in place, even while a pause holds the rollout
    # (see test_paused_rollout_keeps_traffic_on_a_dead_canary).
    in_effect = routes[-1] if routes else observed.route
    if in_effect is not None and in_effect.sends_canary_traffic:
        if in_effect.canary_revision != in_effect.stable_revision:
            view = observed.replica_set(in_effect.canary_revision)
            assert view is not None and view.available > 0, (in_effect, observed.replica_sets)

    # 2, sized: traffic to a canary only grows once enough of it is available for the new
    # share (ceil(replicas x share), all of them for the 100% of a promotion), whatever
    # skipped the steps (promote --full) or how the canary got there.
    before = observed.route
    for route in routes:
        if route.canary_revision == route.stable_revision:
            continue
        share = max(route.canary_weight, route.mirror_percent)
        held = 0.0
        if before is not None and before.canary_revision == route.canary_revision:
            held = max(before.canary_weight, before.mirror_percent)
        if share > held:
            needed = canary_replicas(
                observed.spec.replicas, Traffic(route.canary_weight, route.mirror_percent)
            )
            view = observed.replica_set(route.canary_revision)
            assert view is not None and view.available >= needed, (route, before, view)
        before = route

    # 3: no promotion on a blocking gate, not even through promote --full (which first
    # discards the verdict, then promotes on a later tick).
    old = observed.status
    promoted = old.stable_revision is not None and status.stable_revision != old.stable_revision
    if promoted:
        for run in (old.analysis, status.analysis):
            assert run is None or run.phase not in BLOCKING, run

    # 7: an aborted rollout sends the canary nothing.
    if status.abort:
        for route in routes:
            assert route.canary_weight == 0 and route.mirror_percent == 0, route
            assert route.header_routes == (), route
        assert status.phase == "Degraded"

    # 11: a gate that holds lets nothing move on.
    if _gate_held(observed):
        index = old.current_step_index
        assert index is not None
        assert status.current_step_index <= index, (old, status)
        assert status.stable_revision == old.stable_revision
        before = observed.route
        share = _share(traffic_at(steps_of(observed.spec), index - 1))
        if before is not None and before.canary_revision == old.canary_revision:
            share = max(share, before.canary_weight, before.mirror_percent)
        for route in routes:
            if route.canary_revision == old.canary_revision != route.stable_revision:
                assert max(route.canary_weight, route.mirror_percent) <= share, (route, before)

    # 8: a user pause holds the step and the stable revision.
    if any(p.reason == PAUSE_USER for p in old.pause_conditions):
        # Exempt: promote --full (an operator override) and no update in progress (a fast
        # rollback or a deploy at once), where the index is len(steps) by convention.
        steady = status.canary_revision == status.stable_revision
        if old.current_step_index is not None and not old.promote_full and not steady:
            assert status.current_step_index <= old.current_step_index, (old, status)
        assert status.stable_revision == old.stable_revision


def _share(traffic: Traffic) -> float:
    return max(traffic.weight, traffic.mirror)


def _gate_held(observed: Observed) -> bool:
    """Invariant 11 applies: a rollout under way (same canary, no operator override, no abort)
    whose run, with this tick's measurements, holds the canary where it is."""
    old, spec = observed.status, observed.spec
    run = old.analysis
    if spec is None or spec.analysis is None or run is None or old.current_step_index is None:
        return False
    under_way = old.stable_revision is not None and old.canary_revision != old.stable_revision
    if not under_way or observed.revision != old.canary_revision or spec.replicas == 0:
        return False
    if old.promote_full or old.abort or old.aborted_at is not None:
        return False
    promoted = run.phase == "Inconclusive" and all(
        p.reason != PAUSE_INCONCLUSIVE for p in old.pause_conditions
    )  # `rollout promote` on an Inconclusive gate: a new run starts
    folded = gate.record(run, spec.analysis, observed.measurements)
    if promoted or folded.phase == "Successful":  # a counted run's verdict stands
        return False
    return folded.phase == "Inconclusive" or not gate.latest_passed(folded)


class CheckedWorld(World):
    """A World that checks every plan as it is made."""

    def tick(self) -> Plan:
        plan = super().tick()
        check_tick(self.observations[-1], plan, self.now)
        return plan


class Harness:
    """A CheckedWorld plus what the events need: images per revision, gate outcomes."""

    def __init__(self, doc: dict[str, Any], outcome: MeasurementPhase = "Successful") -> None:
        parse_rollout(doc)  # every generated manifest is valid
        self.world = CheckedWorld(doc)
        self.default: MeasurementPhase = outcome
        self.outcomes: dict[str, MeasurementPhase] = {}
        self.world.outcome = self._outcome
        self.images: dict[str, str] = {self.world.revision: self._image()}
        self.tags = itertools.count(1)
        self.world.settle()

    def _outcome(self, check: str, revision: str) -> MeasurementPhase:
        return self.outcomes.get(check, self.default)

    def _image(self) -> str:
        image: str = self.world.doc["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def set_image(self, image: str) -> None:
        self.world.set_image(image)
        self.images[self.world.revision] = image

    def set_available(self, revision: str | None, available: bool) -> None:
        """Pods of ``revision`` crash (or recover) now, not only when next scaled."""
        w = self.world
        if revision is None:
            return
        if available:
            w.broken.discard(revision)
        else:
            w.broken.add(revision)
        view = w.replica_sets.get(revision)
        if view is not None:
            ready = view.replicas if available else 0
            w.replica_sets[revision] = dataclasses.replace(view, available=ready, ready=ready)

    def canary_target(self) -> str | None:
        """The revision a break/heal event hits: the template's, or the canary, never stable."""
        stable = self.world.status.stable_revision
        for revision in (self.world.revision, self.world.status.canary_revision):
            if revision is not None and revision != stable:
                return revision
        return None

    def apply(self, event: Event) -> None:
        w = self.world
        match event.kind:
            case "run_for":
                w.run_for(event.seconds)
            case "advance":
                w.advance(event.seconds)
                w.tick()
            case "tick":
                w.tick()
            case "promote":
                w.promote()
            case "promote_full":
                w.promote_full()
            case "abort":
                w.abort()
            case "retry":
                w.retry()
            case "pause":
                w.pause()
            case "resume":
                w.resume()
            case "new_image":
                self.start()
            case "revert":
                stable = w.status.stable_revision
                if stable is not None and stable in self.images:
                    self.set_image(self.images[stable])
            case "break":
                self.set_available(self.canary_target(), False)
            case "heal":
                self.set_available(self.canary_target(), True)
            case "outcome":
                if event.check is None:
                    self.default = event.phase
                    self.outcomes.clear()
                else:
                    self.outcomes[event.check] = event.phase
            case _:
                raise AssertionError(event)

    def start(self) -> None:
        """A new image: an update begins."""
        self.set_image(f"example.com/shop/app:{next(self.tags)}")

    def run(self, sequence: list[Event]) -> None:
        for event in sequence:
            self.apply(event)
        self.world.run_for(0)


# -- properties --------------------------------------------------------------------------------


@properties(1000)
@given(doc=manifests(), sequence=events())
def test_invariants_hold_on_every_tick(doc: dict[str, Any], sequence: list[Event]) -> None:
    """Invariants 1-3, 5-8 after every tick of a random run (checked inside CheckedWorld)."""
    harness = Harness(doc)
    harness.start()
    harness.run(sequence)


@properties(600)
@given(
    doc=manifests(gated=True),
    first=st.sampled_from(NO_DATA),
    sequence=events(NO_DATA, [k for k in OPERATOR + CHANGES if k != "promote_full"]),
)
def test_never_promotes_on_missing_data(
    doc: dict[str, Any], first: MeasurementPhase, sequence: list[Event]
) -> None:
    """4: every measurement Inconclusive or Error, no promote --full: stable never moves."""
    harness = Harness(doc, outcome=first)
    stable = harness.world.status.stable_revision
    assert stable is not None
    harness.start()
    harness.run(sequence)
    assert {p.status.stable_revision for p in harness.world.plans} == {stable}


@properties(400)
@given(
    doc=manifests(),
    sequence=events(("Successful",), ["tick", "promote", "new_image", "revert"], max_size=15),
)
def test_promoting_with_passing_gates_reaches_healthy(
    doc: dict[str, Any], sequence: list[Event]
) -> None:
    """9: passing gates, healthy pods, only promote: Healthy on the template's revision."""
    # A gate interval as long as the deadline aborts at promotion: see
    # test_progress_deadline_does_not_count_the_wait_for_the_gate.
    spec = doc["spec"]
    assume("analysis" not in spec or spec["progressDeadlineSeconds"] > spec["analysis"]["interval"])
    harness = Harness(doc)
    harness.run(sequence)
    harness.set_image("example.com/shop/app:final")
    world = harness.world
    for _ in range(30):
        world.promote()
        world.run_for(600)
        if world.status.phase == "Healthy" and world.status.stable_revision == world.revision:
            break
    assert world.status.phase == "Healthy", world.status.message
    assert world.status.stable_revision == world.revision
    assert world.route == RouteState(world.revision, world.revision)


def _make_invalid(doc: dict[str, Any], how: str) -> None:
    spec = doc["spec"]
    strategy = spec["strategy"]
    if how == "step" and "canary" in strategy:
        strategy["canary"]["steps"].append({"setWeight": 150})
    elif how == "step" and "mirror" in strategy:
        strategy["mirror"]["percent"] = 150
    elif how == "step":
        strategy["blueGreen"]["previewReplicaCount"] = 0
    elif how == "replicas":
        spec["replicas"] = -1
    else:
        strategy["unknownStrategy"] = {}


@properties(300)
@given(
    doc=manifests(),
    before=events(max_size=10),
    how=st.sampled_from(["step", "replicas", "strategy"]),
    after=events(max_size=10),
)
def test_invalid_spec_only_emits_events(
    doc: dict[str, Any], before: list[Event], how: str, after: list[Event]
) -> None:
    """10: an invalid spec: EmitEvent only, Degraded, and nothing in the world moves."""
    harness = Harness(doc)
    harness.start()
    harness.run(before)
    world = harness.world
    valid = copy.deepcopy(world.doc)
    _make_invalid(world.doc, how)
    world.generation += 1
    replica_sets, route, ticks = dict(world.replica_sets), world.route, len(world.plans)
    for seconds in (0, 30, 600):
        world.advance(seconds)
        world.tick()
    assert world.replica_sets == replica_sets and world.route == route
    assert all(p.status.phase == "Degraded" for p in world.plans[ticks:])
    world.doc = valid  # fixed: the run goes on, still checked on every tick
    world.generation += 1
    harness.run(after)


# -- invariant violations found, as minimal examples -------------------------------------------


def _canary(
    steps: list[dict[str, Any]],
    replicas: int,
    analysis: dict[str, Any] | None,
    background: bool = True,
) -> Harness:
    doc = _base("canary", replicas, analysis)
    doc["spec"]["strategy"]["canary"]["steps"] = steps
    doc["spec"]["strategy"]["canary"]["backgroundAnalysis"] = background
    return Harness(doc)


def test_inconclusive_limit_does_not_turn_missing_data_into_a_pass() -> None:
    gate = _analysis(["error-rate"], 30, 0, 1, 0)  # inconclusiveLimit 1, analysis count 1
    harness = _canary([{"analysis": {"count": 1}}], 1, gate, background=False)
    stable = harness.world.status.stable_revision
    harness.default = "Inconclusive"
    harness.start()
    harness.world.run_for(300)
    assert harness.world.status.stable_revision == stable, harness.world.reasons()


def test_progress_deadline_does_not_count_the_wait_for_the_gate() -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"count": 1}}]
    harness = _canary(steps, 4, _analysis(["error-rate"], 60, 0, 0, 0))
    harness.world.doc["spec"]["progressDeadlineSeconds"] = 60
    harness.start()
    harness.world.run_for(600)
    assert harness.world.status.phase == "Healthy", harness.world.reasons()


def test_paused_rollout_keeps_traffic_on_a_dead_canary() -> None:
    harness = _canary([{"setWeight": 50}, {"pause": {}}], 2, None)
    harness.start()
    world = harness.world
    world.run_for(0)
    assert world.route is not None and world.route.canary_weight == 50
    world.pause()
    harness.set_available(world.status.canary_revision, False)
    world.run_for(60)
    assert world.route.canary_weight == 0, world.route


def test_user_pause_holds_zero_replicas() -> None:
    harness = _canary([], 0, None)
    stable = harness.world.status.stable_revision
    harness.world.pause()
    harness.start()
    harness.world.run_for(0)
    assert harness.world.status.stable_revision == stable
