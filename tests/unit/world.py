"""A tiny pure world for driving the planner tick by tick in tests.

It stands in for the executor and the cluster at our own seam (the planner's Observed/Plan
types): ReplicaSets become available as soon as they are scaled (unless a revision is marked
broken), the router applies routes exactly, and the gate's outcome per check is a function the
test chooses; ``preflight`` is what observe's preflight reports for a canary with a gate and no
traffic yet (None: it passes). Operator actions edit the status as the CLI does through the
status subresource.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from analysis import measurement as gate
from rollout.api.manifest import InvalidManifest, parse_rollout
from rollout.api.status import (
    PAUSE_USER,
    Measurement,
    MeasurementPhase,
    PauseCondition,
    RolloutStatus,
)
from rollout.domain import planner
from rollout.domain.observed import Observed, Preflight, ReplicaSetView, RouteState
from rollout.domain.plan import (
    DeleteReplicaSet,
    EmitEvent,
    MarkScaleDown,
    Plan,
    ScaleReplicaSet,
    SetRoute,
)
from rollout.domain.revision import pod_template_hash

EXAMPLES = Path(__file__).resolve().parents[2] / "crds" / "examples"
T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)

Outcome = Callable[[str, str], MeasurementPhase]  # (check name, canary revision) -> phase


def example(name: str) -> dict[str, Any]:
    """The first document (the Rollout) of ``crds/examples/<name>.yaml``."""
    docs = list(yaml.safe_load_all((EXAMPLES / f"{name}.yaml").read_text()))
    return copy.deepcopy(docs[0])


def passing(check: str, revision: str) -> MeasurementPhase:
    return "Successful"


@dataclass
class World:
    doc: dict[str, Any]
    now: datetime = T0
    generation: int = 1
    status: RolloutStatus = field(default_factory=RolloutStatus)
    replica_sets: dict[str, ReplicaSetView] = field(default_factory=dict)
    route: RouteState | None = field(default_factory=lambda: RouteState(None, None))
    broken: set[str] = field(default_factory=set)  # revisions whose pods never become ready
    outcome: Outcome = passing
    preflight: Preflight | None = None
    route_error: str | None = None
    events: list[EmitEvent] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    observations: list[Observed] = field(default_factory=list)

    # -- the cluster ---------------------------------------------------------------------

    @property
    def revision(self) -> str:
        return pod_template_hash(self.doc["spec"]["template"])

    def observe(self) -> Observed:
        try:
            rollout = parse_rollout(self.doc)
        except InvalidManifest as invalid:
            return Observed(
                name=self.doc["metadata"]["name"],
                namespace="shop",
                generation=self.generation,
                spec=None,
                status=self.status,
                revision=None,
                problems=tuple(str(p) for p in invalid.problems),
            )
        preflight = self._preflight(rollout.spec.analysis)
        held = preflight is not None and not preflight.ok
        return Observed(
            name=rollout.metadata.name,
            namespace=rollout.namespace,
            generation=self.generation,
            spec=rollout.spec,
            status=self.status,
            revision=self.revision,
            replica_sets=tuple(self.replica_sets.values()),
            route=self.route,
            measurements=() if held else self._measure(rollout.spec.analysis),
            route_error=self.route_error,
            preflight=preflight,
        )

    def _preflight(self, analysis: Any) -> Preflight | None:
        """As observe: checked for a canary with a gate that has no traffic yet."""
        revision, route, status = self.revision, self.route, self.status
        if self.preflight is None or analysis is None or route is None:
            return None
        if status.stable_revision in (None, revision):
            return None
        if status.abort and status.canary_revision == revision:
            return None
        if route.canary_revision == revision and route.sends_canary_traffic:
            return None
        return self.preflight

    def _measure(self, analysis: Any) -> tuple[tuple[str, Measurement], ...]:
        run = self.status.analysis
        if run is None or analysis is None:
            return ()
        canary = self.status.canary_revision or ""
        taken = []
        for name in gate.due_checks(run, analysis, self.now):
            phase = self.outcome(name, canary)
            value = None if phase in ("Inconclusive", "Error") else 0.001
            taken.append((name, Measurement(at=self.now, phase=phase, value=value)))
        return tuple(taken)

    def apply(self, plan: Plan) -> None:
        for action in plan.actions:
            match action:
                case ScaleReplicaSet(revision, replicas):
                    old = self.replica_sets.get(revision)
                    ready = 0 if revision in self.broken else replicas
                    self.replica_sets[revision] = ReplicaSetView(
                        revision=revision,
                        replicas=replicas,
                        available=ready,
                        ready=ready,
                        created_at=old.created_at if old else self.now,
                        scale_down_at=old.scale_down_at if old else None,
                    )
                case MarkScaleDown(revision, at):
                    old = self.replica_sets[revision]
                    self.replica_sets[revision] = ReplicaSetView(
                        revision=old.revision,
                        replicas=old.replicas,
                        available=old.available,
                        ready=old.ready,
                        created_at=old.created_at,
                        scale_down_at=at,
                    )
                case DeleteReplicaSet(revision):
                    del self.replica_sets[revision]
                case SetRoute(route):
                    self.route = route
                case EmitEvent():
                    self.events.append(action)
        self.status = plan.status

    # -- driving -------------------------------------------------------------------------

    def tick(self) -> Plan:
        observed = self.observe()
        plan = planner.plan(observed, self.now)
        self.observations.append(observed)
        self.plans.append(plan)
        self.apply(plan)
        return plan

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def settle(self, max_ticks: int = 50) -> Plan:
        """Tick until a plan changes nothing and asks for no immediate requeue."""
        for _ in range(max_ticks):
            plan = self.tick()
            changes = [a for a in plan.actions if not isinstance(a, EmitEvent)]
            if not changes and plan.requeue_after != 0:
                return plan
        raise AssertionError("the planner did not settle")

    def run_for(self, seconds: float, max_ticks: int = 500) -> None:
        """Let time pass, waking when the planner asked to (as the controller's timers do)."""
        end = self.now + timedelta(seconds=seconds)
        for _ in range(max_ticks):
            plan = self.settle()
            if plan.requeue_after is None or self.now + timedelta(seconds=plan.requeue_after) > end:
                self.now = end
                self.settle()
                return
            self.advance(max(plan.requeue_after, 0.001))
        raise AssertionError("too many ticks")

    # -- users ---------------------------------------------------------------------------

    def set_image(self, image: str) -> None:
        self.doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
        self.generation += 1

    def promote(self) -> None:
        self.status = self.status.model_copy(update={"pause_conditions": []})

    def promote_full(self) -> None:
        self.status = self.status.model_copy(update={"promote_full": True})

    def abort(self) -> None:
        self.status = self.status.model_copy(update={"abort": True})

    def retry(self) -> None:
        self.status = self.status.model_copy(update={"abort": False})

    def pause(self) -> None:
        pause = PauseCondition(reason=PAUSE_USER, start_time=self.now)
        conditions = [*self.status.pause_conditions, pause]
        self.status = self.status.model_copy(update={"pause_conditions": conditions})

    def resume(self) -> None:
        kept = [p for p in self.status.pause_conditions if p.reason != PAUSE_USER]
        self.status = self.status.model_copy(update={"pause_conditions": kept})

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]
