"""The planner: ``plan(observed, now) -> Plan``. Pure; the whole behaviour of every strategy.

One call decides one reconcile, reading like a checklist:

1. an invalid spec, or routing objects that do not fit it, change nothing and say why;
2. the revision decides the mode: first revision (deploy at once), template reverted to stable
   (fast rollback, no steps), a new revision (start at step 0 against the current stable, even
   mid-rollout), or the same revision as before;
3. the mode decides the work: steady (all traffic on stable), aborted (traffic back to stable,
   canary scaled down after a delay), retry, or progressing through the steps and promotion;
4. retired ReplicaSets scale to zero after their delay and old ones are pruned;
5. the status is derived once (``domain/status.py``): weights as read back, phase, message,
   conditions.

Invariants that the property tests check: canary weight in 0..100 (stable gets the rest); no
canary traffic while the canary has no available replica; no promotion while the gate is
Failed, Error or Inconclusive; no step completes while the gate holds (``_gate_holds``); the
plan depends on its inputs only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from analysis import measurement as gate
from rollout.api.rollout import RolloutSpec
from rollout.api.status import (
    PAUSE_BLUE_GREEN,
    PAUSE_CANARY_STEP,
    PAUSE_INCONCLUSIVE,
    PAUSE_USER,
    AnalysisStatus,
    PauseCondition,
    RolloutStatus,
    Weights,
)
from rollout.domain.observed import Observed, Preflight, RouteState
from rollout.domain.plan import (
    Action,
    DeleteReplicaSet,
    EmitEvent,
    MarkScaleDown,
    Plan,
    ScaleReplicaSet,
    SetRoute,
)
from rollout.domain.status import (
    Progress,
    blocked,
    derive_status,
    invalid_spec,
    stalled,
    with_progress_message,
)
from rollout.domain.steps import (
    Analyze,
    Pause,
    Step,
    Traffic,
    canary_replicas,
    describe,
    step_number,
    steps_of,
    traffic_at,
)

STEP_PAUSES = frozenset({PAUSE_CANARY_STEP, PAUSE_BLUE_GREEN, PAUSE_INCONCLUSIVE})
ABORT_OPERATOR = "RolloutAborted"
ABORT_ANALYSIS = "AnalysisFailed"
ABORT_DEADLINE = "ProgressDeadlineExceeded"


def whole_second_after(now: datetime) -> datetime:
    """``now`` rounded up to a whole second: the time to store for a start or a deadline.

    The status and the scale-down annotation keep seconds only (metav1.Time), so a start
    stored as ``now`` would be read back up to a second early, and a 1 s pause could end at
    once. Rounded up, what the next reconcile reads is what this one decided, and every wait
    lasts at least as long as asked.
    """
    if now.microsecond == 0:
        return now
    return now.replace(microsecond=0) + timedelta(seconds=1)


def plan(observed: Observed, now: datetime) -> Plan:
    """Decide one reconcile of ``observed`` at ``now``."""
    if observed.spec is None:
        return blocked(observed, now, "; ".join(observed.problems))
    if observed.route_error is not None or observed.route is None:
        # The routing objects do not fit the spec: as invalid as a bad field, and as inert,
        # except that a canary nobody can judge or abort any more keeps no traffic.
        message = observed.route_error or "traffic routing unreadable"
        if observed.route is None:
            return blocked(observed, now, message)
        return _blocked_routing(observed, observed.route, now, message)
    return _Planner(observed, observed.spec, observed.route, now).run()


def _blocked_routing(observed: Observed, route: RouteState, now: datetime, message: str) -> Plan:
    """Routing that can be read but no longer fits the steps (someone else's mirror on the
    managed route, a match the header route cannot be combined with, a route named like a
    header step): InvalidSpec, and the canary's traffic drained to stable as at an abort
    (weight 0, no header route or mirror, the canary subset following stable), since no
    gate measures it and no abort could move it while the routing is refused.
    """
    plan = blocked(observed, now, message)
    weights = Weights(
        stable=route.stable_weight, canary=route.canary_weight, mirror=route.mirror_percent
    )
    status = plan.status.model_copy(update={"weights": weights})
    stable = observed.status.stable_revision
    drained = stable is None or (
        not route.sends_canary_traffic and route.canary_revision in (None, stable)
    )
    if drained:
        return Plan(plan.actions, status, plan.requeue_after)
    drain = (
        SetRoute(RouteState(stable, stable)),
        EmitEvent(
            "Warning",
            "TrafficDrained",
            f"canary traffic drained to stable revision {stable} until the routing fits again",
        ),
    )
    return Plan((*plan.actions, *drain), status, plan.requeue_after)


class _Planner:
    """The mutable scratchpad of one ``plan`` call; nothing outlives it."""

    def __init__(self, observed: Observed, spec: RolloutSpec, route: RouteState, now: datetime):
        self.obs = observed
        self.spec = spec
        self.route = route
        self.now = now
        self.stamp = whole_second_after(now)
        self.steps: list[Step] = steps_of(spec)
        # What this reconcile decides, starting from the old status; the status is rebuilt at end.
        self.st: Progress = Progress.of(observed.status)
        self.actions: list[Action] = []
        self.wake: list[float] = []
        self.marked: set[str] = set()
        self.advanced = False
        # Set when the canary's first traffic waits for a preflight that has not passed.
        self.held: Preflight | None = None

    # -- entry ---------------------------------------------------------------------------

    def run(self) -> Plan:
        revision = self.obs.revision
        assert revision is not None
        stable, canary = self.st.stable_revision, self.st.canary_revision
        self._take_pause_request()
        idle = self.spec.replicas == 0 and not self._has_pause_from_user()
        if stable is None or (idle and revision != stable):
            self._deploy_at_once(revision)
        elif revision == stable and canary != stable:
            self._fast_rollback(revision, canary)
        elif revision != canary and revision != stable:
            self._start(revision, canary)

        if self.st.canary_revision == self.st.stable_revision:
            self._steady()
        elif self.st.abort:
            self._aborted()
        else:
            if self.st.aborted_at is not None:
                self._retry()
            self._progress()
        self._guard_canary_traffic()
        self._retire_and_prune()
        status = self._status()
        return Plan(tuple(self.actions), status, min(self.wake, default=None))

    # -- revision changes ----------------------------------------------------------------

    def _deploy_at_once(self, revision: str) -> None:
        previous = self.st.stable_revision
        self.st.stable_revision = self.st.canary_revision = revision
        self.st.analysis = None
        self._reset_progress()
        why = "first revision" if previous is None else "no replicas to shift traffic between"
        self._event("Normal", "Deployed", f"revision {revision} is stable ({why}: no steps)")

    def _fast_rollback(self, stable: str, canary: str | None) -> None:
        if canary is not None:
            self._retire(canary, self.spec.strategy.scale_down_delay_seconds)
        self.st.canary_revision = stable
        self.st.analysis = None
        self._reset_progress()
        self._event(
            "Normal",
            "FastRollback",
            f"template is back to stable revision {stable}: all traffic to stable, no steps",
        )

    def _start(self, revision: str, previous_canary: str | None) -> None:
        stable = self.st.stable_revision
        if previous_canary is not None and previous_canary != stable:
            self._retire(previous_canary, self.spec.strategy.scale_down_delay_seconds)
            self._event(
                "Normal",
                "RolloutRestarted",
                f"revision {revision} supersedes canary {previous_canary}: back to step 1",
            )
        self.st.canary_revision = revision
        self.st.analysis = None
        self._reset_progress()
        self.st.current_step_index = 0
        count = len(self.steps)
        self._event(
            "Normal",
            "RolloutStarted",
            f"new revision {revision} against stable {stable}: "
            f"{count} step{'' if count == 1 else 's'}; {self._where(0)}",
        )
        self._enter_step(0)

    def _reset_progress(self) -> None:
        self.st.current_step_index = len(self.steps)
        self.st.step_started_at = self.stamp
        self.st.abort = self.st.promote_full = False
        self.st.aborted_at = None
        self.st.abort_reason = None
        self.st.waiting_for_replicas_since = None
        self._drop_pauses(STEP_PAUSES)

    # -- modes ---------------------------------------------------------------------------

    def _steady(self) -> None:
        stable = self.st.stable_revision
        self._scale(stable, self.spec.replicas)
        self._set_route(RouteState(stable, stable))
        self._check_stable_deadline()
        if self.st.abort or self.st.promote_full:
            self._event("Normal", "NothingToDo", "no update in progress: operator flag cleared")
            self.st.abort = self.st.promote_full = False
        self.st.current_step_index = len(self.steps)

    def _check_stable_deadline(self) -> None:
        """With nothing to roll back to (a first revision, a deploy at once), a stable revision
        not available within progressDeadlineSeconds is reported (Degraded, Progressing=False
        ``ProgressDeadlineExceeded``, a Warning Event), as a Deployment's progress deadline is;
        it becomes Healthy once available. A user's pause stops the clock."""
        view = self.obs.replica_set(self.st.stable_revision)
        if (view is not None and view.available >= self.spec.replicas) or (
            self._has_pause_from_user()
        ):
            self.st.waiting_for_replicas_since = None
            return
        started: datetime = self.st.waiting_for_replicas_since or self.stamp
        self.st.waiting_for_replicas_since = started
        if not stalled(self.st, self.spec, self.now):
            self._wake_at(started + timedelta(seconds=self.spec.progress_deadline_seconds))
            return
        old = self.obs.status.condition("Progressing")
        if old is None or old.reason != ABORT_DEADLINE:
            available = 0 if view is None else view.available
            self._event(
                "Warning",
                ABORT_DEADLINE,
                f"revision {self.st.stable_revision} not available after "
                f"{self.spec.progress_deadline_seconds}s (progressDeadlineSeconds): "
                f"{available}/{self.spec.replicas} replicas available",
            )

    def _aborted(self) -> None:
        if self.st.aborted_at is None:  # the operator set status.abort
            self._abort(ABORT_OPERATOR, "aborted by the operator")
        stable, canary = self.st.stable_revision, self.st.canary_revision
        self._scale(stable, self.spec.replicas)
        # Everything back to stable, the canary subset (or Service) included: a user's route
        # to it must not reach the aborted revision, scaled to zero below. A retry re-pins it.
        self._set_route(RouteState(stable, stable))
        delay = timedelta(seconds=self.spec.strategy.abort_scale_down_delay_seconds)
        aborted_at = self.st.aborted_at
        assert aborted_at is not None  # set by the abort that began this mode
        scale_down_at = aborted_at + delay
        if self.now >= scale_down_at:
            self._scale(canary, 0)
        else:
            self._wake_at(scale_down_at)

    def _abort(self, reason: str, message: str) -> None:
        self.st.abort = True
        self.st.aborted_at = self.stamp
        self.st.abort_reason = reason
        self.st.promote_full = False
        self.st.waiting_for_replicas_since = None
        self._drop_pauses(STEP_PAUSES)
        index = self.st.current_step_index
        at = "" if index is None else f" (at step {step_number(index, len(self.steps))})"
        self._event("Warning", reason, f"rollback to stable{at}: {message}")

    def _retry(self) -> None:
        self.st.aborted_at = None
        self.st.abort_reason = None
        self.st.current_step_index = 0
        self.st.analysis = None
        self.st.waiting_for_replicas_since = None
        self.st.step_started_at = self.stamp
        self._event("Normal", "RolloutRetried", "retrying the update from step 1")
        self._enter_step(0)

    # -- progressing ---------------------------------------------------------------------

    def _progress(self) -> None:
        if self.st.promote_full and self._step_index() < len(self.steps):
            self._event("Normal", "PromotedFull", "operator skipped the remaining steps and gates")
            self.st.current_step_index = len(self.steps)
            self.st.step_started_at = self.stamp
            self.st.analysis = None
            self._drop_pauses(STEP_PAUSES)
            # Promote on the next tick, from a state with no gate verdict at all.
            self.wake.append(0)
            return
        if not self._first_traffic_allowed():
            self._hold_before_first_traffic()
            return
        if not self._gate_allows():
            return
        if self._has_pause_from_user():
            # A paused rollout does not time out (as a paused Deployment): the deadline
            # starts afresh when it resumes.
            self.st.waiting_for_replicas_since = None
            return
        index = self._step_index()
        if index < len(self.steps):
            self._run_step(index)
        else:
            self._promote()

    def _step_index(self) -> int:
        index = self.st.current_step_index
        assert index is not None  # set on every revision change, and by steady mode
        return index

    def _gate_allows(self) -> bool:
        """Fold new measurements; abort on Failed or Error, pause on Inconclusive. False: aborted.

        An Inconclusive run pauses the rollout (``InconclusiveAnalysis``) but goes on being
        measured, so a Failed measurement still aborts it; whether the step may advance is
        ``_gate_holds``'s to say.
        """
        run: AnalysisStatus | None = self.st.analysis
        analysis = self.spec.analysis
        if run is None or analysis is None:
            return True
        was = run.phase
        run = gate.record(run, analysis, self.obs.measurements)
        self.st.analysis = run
        if run.phase in ("Failed", "Error"):
            self._abort(ABORT_ANALYSIS, f"gate {run.phase}: {gate.why(run)}")
            self._aborted()
            return False
        if run.phase == "Inconclusive" and not self._has_pause(PAUSE_INCONCLUSIVE):
            if was == "Inconclusive":  # the operator promoted: measure again, do not skip
                self.st.analysis = gate.rerun(run, analysis, self.now)
                self._event("Normal", "AnalysisRestarted", "operator promoted: gate measures again")
            else:
                self._add_pause(PAUSE_INCONCLUSIVE)
                self._event("Warning", "AnalysisInconclusive", f"gate inconclusive: {run.message}")
        self._wake_for_gate()  # paused or not, the gate keeps measuring
        return True

    def _gate_holds(self) -> bool:
        """The gate keeps the canary where it is: the run is Inconclusive, or some check's latest
        measurement is not Successful (a check not yet measured does not hold)."""
        run: AnalysisStatus | None = self.st.analysis
        if run is None or run.phase == "Successful":  # a counted run's verdict stands
            return False
        return run.phase == "Inconclusive" or not gate.latest_passed(run)

    def _first_traffic_allowed(self) -> bool:
        """Whether the canary may be given traffic for the first time (a weight, a mirror, a
        header route, the blue-green switch, promotion): only once preflight — every check of
        the gate resolved and its query accepted by Prometheus — has passed (issue 12, §3).

        ``observed.preflight`` is None when observe did not check (no gate; or the canary
        already has traffic, which this also allows so that a gate going bad mid-rollout is
        judged by the gate itself, never by a frozen route)."""
        preflight = self.obs.preflight
        if preflight is None or preflight.ok:
            return True
        route = self.route
        return route.canary_revision == self.st.canary_revision and route.sends_canary_traffic

    def _hold_before_first_traffic(self) -> None:
        """Preflight has not passed: the canary is scaled for its step, gets no traffic, and
        no step advances. Invalid input waits for a fix (the status says InvalidSpec);
        an unreachable Prometheus is asked again soon, until the progress deadline."""
        preflight = self.obs.preflight
        assert preflight is not None
        stable, canary = self.st.stable_revision, self.st.canary_revision
        index = self._step_index()
        if index < len(self.steps):
            self._ready_for(traffic_at(self.steps, index))
        else:
            self._scale(stable, self.spec.replicas)
            self._scale(canary, self.spec.replicas)
        self._set_route(RouteState(stable, canary))
        self.held = preflight
        if preflight.recheck_after is not None:
            self.wake.append(preflight.recheck_after)
        if preflight.outcome == "unreachable":
            self._check_deadline(preflight.message)
        else:
            self.st.waiting_for_replicas_since = None

    def _run_step(self, index: int) -> None:
        step = self.steps[index]
        target = traffic_at(self.steps, index)
        ready = self._ready_for(target)
        held = self._gate_holds()
        # Held by the gate, the canary keeps the traffic it has: a step's traffic not yet in
        # place is not applied (the previous step's holds), one in place is not taken back.
        at_target = self.route == self._route_for(target)
        traffic = target if ready and (at_target or not held) else traffic_at(self.steps, index - 1)
        applied = self._set_route(self._route_for(traffic))
        if not ready or held:
            # No progress: the canary is not available, or the gate will not let it move on.
            self._check_deadline()
            self._wake_for_gate()
            return
        self.st.waiting_for_replicas_since = None
        if not applied:
            return
        if not isinstance(step, Analyze) and self.route.sends_canary_traffic:
            self._ensure_background_run()
        if isinstance(step, Pause):
            if not self._pause_done(step):
                return
        elif isinstance(step, Analyze):
            run: AnalysisStatus | None = self.st.analysis
            if run is None or run.count is None:  # e.g. the step began before a restart
                self._start_run(step.count)
                return
            if run.phase != "Successful":
                self._wake_for_gate()
                return
        self._advance(index)

    def _ready_for(self, traffic: Traffic) -> bool:
        """Scale the canary for ``traffic``; True once enough of it is available."""
        stable, canary = self.st.stable_revision, self.st.canary_revision
        self._scale(stable, self.spec.replicas)
        wanted = canary_replicas(self.spec.replicas, traffic)
        self._scale(canary, wanted)
        view = self.obs.replica_set(canary)
        return view is not None and wanted > 0 and view.available >= wanted

    def _route_for(self, traffic: Traffic) -> RouteState:
        return RouteState(
            self.st.stable_revision,
            self.st.canary_revision,
            traffic.weight,
            traffic.mirror,
            traffic.header_routes,
        )

    def _pause_done(self, step: Pause) -> bool:
        pause = next((p for p in self.st.pause_conditions if p.reason == step.reason), None)
        if pause is None:
            return True  # `rollout promote` cleared it
        if step.duration is None:
            return False
        end: datetime = pause.start_time + timedelta(seconds=step.duration)
        if self.now >= end:
            return True
        self._wake_at(end)
        return False

    def _advance(self, index: int) -> None:
        self._drop_pauses({PAUSE_CANARY_STEP, PAUSE_BLUE_GREEN})
        nxt = index + 1
        self.st.current_step_index = nxt
        self.st.step_started_at = self.stamp
        total = len(self.steps)
        done = f"step {step_number(index, total)} done: {describe(self.steps[index])}"
        self._event("Normal", "StepCompleted", f"{done}; {self._where(nxt)}")
        self._enter_step(nxt)
        if self.advanced:
            self.wake.append(0)  # one step per reconcile at most: the next one comes at once
            return
        # Begin the next step in this same plan (scale for it, ask for its traffic), so a
        # step costs one status write, not two. It completes on a later reconcile at the
        # earliest: its traffic is applied only once read back.
        self.advanced = True
        if nxt < total:
            self._run_step(nxt)
        else:
            self._promote()

    def _where(self, index: int) -> str:
        """Where the rollout now is, numbered as the status message and ``status.step`` say:
        ``now step 3/6: pause 30s``, or ``promoting`` after the last step."""
        total = len(self.steps)
        if index >= total:
            return "promoting"
        return f"now step {step_number(index, total)}: {describe(self.steps[index])}"

    def _enter_step(self, index: int) -> None:
        if index >= len(self.steps):
            return
        step = self.steps[index]
        if isinstance(step, Pause):
            self._add_pause(step.reason)
        elif isinstance(step, Analyze):
            self._start_run(step.count)

    def _promote(self) -> None:
        """All steps done: full size, 100% to the canary, then it becomes stable."""
        stable, canary = self.st.stable_revision, self.st.canary_revision
        assert stable is not None and canary is not None  # run() settles both revisions first
        if not self.st.promote_full:
            if self._gate_holds():
                self._check_deadline()
                self._wake_for_gate()
                return
            if not self._background_gate_passed():
                return
        self._scale(stable, self.spec.replicas)
        self._scale(canary, self.spec.replicas)
        view = self.obs.replica_set(canary)
        if view is None or view.available < max(1, self.spec.replicas):
            self._set_route(self._route_while_scaling_up(stable, canary))
            self._check_deadline()
            return
        self.st.waiting_for_replicas_since = None
        if not self._set_route(RouteState(stable, canary, 100)):
            return
        self.st.stable_revision = canary
        self.st.promote_full = False
        self._drop_pauses(STEP_PAUSES)
        self._set_route(RouteState(canary, canary))
        self._retire(stable, self.spec.strategy.scale_down_delay_seconds)
        self._event("Normal", "Promoted", f"revision {canary} is stable and serves 100%")

    def _route_while_scaling_up(self, stable: str, canary: str) -> RouteState:
        """The traffic to hold while the canary scales to full size before the switch.

        After the last step, that step's traffic: the canary is sized for it. After
        ``promote --full`` the steps in between were skipped, and the canary is sized only for
        the traffic it has: that is held (never the last step's, which could send a preview
        of one pod all the traffic) until every replica is available.
        """
        if not self.st.promote_full:
            return self._route_for(traffic_at(self.steps, len(self.steps) - 1))
        route = self.route
        if route.canary_revision != canary:
            return RouteState(stable, canary)
        return RouteState(
            stable, canary, route.canary_weight, route.mirror_percent, route.header_routes
        )

    # -- gate helpers ----------------------------------------------------------------------

    def _background_gate(self) -> bool:
        canary = self.spec.strategy.canary
        return self.spec.analysis is not None and canary is not None and canary.background_analysis

    def _ensure_background_run(self) -> None:
        """Once the canary has traffic, the background gate runs (anew after a counted run)."""
        run: AnalysisStatus | None = self.st.analysis
        if self._background_gate() and (run is None or run.count is not None):
            self._start_run(None)
        else:
            self._wake_for_gate()

    def _background_gate_passed(self) -> bool:
        """Before promotion the background gate must have passed every check at least once."""
        if not self._background_gate():
            return True
        run: AnalysisStatus | None = self.st.analysis
        if run is None or run.count is not None:
            self._start_run(None)
            return False
        if gate.passed_once(run) and run.phase not in gate.BLOCKING:
            return True
        self._wake_for_gate()
        return False

    def _start_run(self, count: int | None) -> None:
        assert self.spec.analysis is not None
        self.st.analysis = gate.new_run(self.spec.analysis, self.now, count)
        self._wake_for_gate()

    def _wake_for_gate(self) -> None:
        run: AnalysisStatus | None = self.st.analysis
        if run is not None and self.spec.analysis is not None:
            due = gate.next_due_at(run, self.spec.analysis)
            if due is not None:
                self._wake_at(due)

    def _check_deadline(self, why: str = "") -> None:
        """The canary must become available within progressDeadlineSeconds of being asked
        (and a preflight held by an unreachable Prometheus must pass within it)."""
        started: datetime = self.st.waiting_for_replicas_since or self.stamp
        self.st.waiting_for_replicas_since = started
        deadline = started + timedelta(seconds=self.spec.progress_deadline_seconds)
        if self.now >= deadline:
            text = f"no progress for {self.spec.progress_deadline_seconds}s"
            self._abort(ABORT_DEADLINE, f"{text}: {why}" if why else text)
            self._aborted()
        else:
            self._wake_at(deadline)

    # -- pauses ----------------------------------------------------------------------------

    def _has_pause(self, reason: str) -> bool:
        return any(p.reason == reason for p in self.st.pause_conditions)

    def _has_pause_from_user(self) -> bool:
        return any(p.reason not in STEP_PAUSES for p in self.st.pause_conditions)

    def _add_pause(self, reason: str) -> None:
        if not self._has_pause(reason):
            pause = PauseCondition(reason=reason, start_time=self.stamp)
            self.st.pause_conditions = [*self.st.pause_conditions, pause]

    def _take_pause_request(self) -> None:
        """``status.pausedByUser`` (the Argo CD pause action's request, which grows no array)
        becomes the PausedByUser pause condition, as ``rollout pause`` adds it; the flag goes."""
        if self.st.paused_by_user:
            self._add_pause(PAUSE_USER)
        self.st.paused_by_user = None

    def _drop_pauses(self, reasons: set[str] | frozenset[str]) -> None:
        kept = [p for p in self.st.pause_conditions if p.reason not in reasons]
        self.st.pause_conditions = kept

    # -- actions ---------------------------------------------------------------------------

    def _scale(self, revision: str | None, replicas: int) -> None:
        if revision is None:
            return
        view = self.obs.replica_set(revision)
        if view is None:
            if revision == self.obs.revision:  # only the current template can be created
                self._replace(ScaleReplicaSet(revision, replicas))
            return
        if view.replicas != replicas:
            self._replace(ScaleReplicaSet(revision, replicas))
        if view.scale_down_at is not None and revision not in self.marked:
            self.actions.append(MarkScaleDown(revision, None))

    def _replace(self, action: ScaleReplicaSet) -> None:
        # A later decision about the same ReplicaSet in this plan wins.
        self.actions = [
            a
            for a in self.actions
            if not (isinstance(a, ScaleReplicaSet) and a.revision == action.revision)
        ]
        self.actions.append(action)

    def _set_route(self, route: RouteState) -> bool:
        """Ask for ``route``; True when it is already what the router reads back."""
        self.actions = [a for a in self.actions if not isinstance(a, SetRoute)]
        if route == self.route:
            return True
        self.actions.append(SetRoute(route))
        return False

    def _guard_canary_traffic(self) -> None:
        """Whatever else was decided (or held, while paused): no traffic to a canary without
        an available replica. The one place that enforces this invariant."""
        routes = [a.route for a in self.actions if isinstance(a, SetRoute)]
        route = routes[-1] if routes else self.route
        canary = route.canary_revision
        if canary == route.stable_revision or not route.sends_canary_traffic:
            return
        view = self.obs.replica_set(canary)
        if view is None or view.available == 0:
            self._set_route(RouteState(route.stable_revision, canary))

    def _retire(self, revision: str, delay: int) -> None:
        view = self.obs.replica_set(revision)
        if view is None or view.replicas == 0 or revision in self.marked:
            return
        self.marked.add(revision)
        self.actions = [
            a for a in self.actions if not (isinstance(a, MarkScaleDown) and a.revision == revision)
        ]
        self.actions.append(MarkScaleDown(revision, self.stamp + timedelta(seconds=delay)))

    def _retire_and_prune(self) -> None:
        active = {self.st.stable_revision, self.st.canary_revision}
        idle = []
        for view in self.obs.replica_sets:
            if view.revision in active:
                continue
            if view.replicas == 0:
                idle.append(view)
            elif view.scale_down_at is None:
                self._retire(view.revision, self.spec.strategy.scale_down_delay_seconds)
            elif self.now >= view.scale_down_at:
                self.actions.append(ScaleReplicaSet(view.revision, 0))
                self.actions.append(MarkScaleDown(view.revision, None))
            else:
                self._wake_at(view.scale_down_at)
        idle.sort(key=lambda v: (v.created_at or datetime.min, v.revision), reverse=True)
        for view in idle[self.spec.revision_history_limit :]:
            self.actions.append(DeleteReplicaSet(view.revision))

    def _event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.actions.append(EmitEvent(type_, reason, message))

    def _wake_at(self, when: datetime) -> None:
        self.wake.append(max(0.0, (when - self.now).total_seconds()))

    # -- status ----------------------------------------------------------------------------

    def _status(self) -> RolloutStatus:
        status = derive_status(self.st, self.obs, self.spec, self.steps, self.route, self.now)
        held = self.held
        if held is None or self.st.abort:
            return status
        if held.outcome == "invalid":
            status, events = invalid_spec(self.obs, status, self.now, held.message)
            self.actions.extend(events)
            return status
        return with_progress_message(status, held.message)
