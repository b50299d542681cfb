"""What one reconcile observed, as frozen data: the planner's only input besides ``now``.

``observe`` (in the controller) fills it from the watch cache, the traffic router's read-back
and the gate's due measurements. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from rollout.api.rollout import RolloutSpec
from rollout.api.status import Measurement, RolloutStatus
from rollout.api.strategy import SetHeaderRoute


@dataclass(frozen=True)
class ReplicaSetView:
    """One revision's ReplicaSet: desired and available replicas, pending scale-down."""

    revision: str
    replicas: int
    available: int
    ready: int = 0
    created_at: datetime | None = None
    pods: int | None = None  # status.replicas, the pods that exist (None: as many as asked)
    scale_down_at: datetime | None = None
    number: int | None = None  # its revision number (``rollout.dev/revision``); None: none yet


@dataclass(frozen=True)
class RouteEdit:
    """Something the router owns that was changed outside the controller.

    Found by the router's read-back: what it reads differs from what it last applied (recorded
    with the change, in the same write). ``what`` names it ("route primary of VirtualService
    shop/reviews"), ``found`` is what was read ("50/50", "edited", "deleted", a revision).
    """

    kind: Literal["weights", "header route", "mirror", "subset"]
    what: str
    found: str


def reverted_message(edits: tuple[RouteEdit, ...], desired: RouteState) -> str:
    """One sentence for the Normal Event sent when the controller undoes ``edits``.

    e.g. "reverted route primary of VirtualService shop/reviews: weights stable/canary 50/50 ->
    80/20 (edited outside the controller)".
    """
    parts = []
    for edit in edits:
        match edit.kind:
            case "weights":
                wanted = f"{desired.stable_weight}/{desired.canary_weight}"
                parts.append(f"{edit.what}: weights stable/canary {edit.found} -> {wanted}")
            case "subset":
                side = "canary" if edit.what.startswith("canary") else "stable"
                revision = desired.canary_revision if side == "canary" else desired.stable_revision
                parts.append(f"{edit.what}: revision {edit.found} -> {revision}")
            case _:
                parts.append(f"{edit.what} ({edit.found})")
    return f"reverted {'; '.join(parts)} (edited outside the controller)"


@dataclass(frozen=True)
class RouteState:
    """Traffic as the router applies it: which revision each side points at, and weights.

    ``canary_weight`` goes to the canary, the rest (``100 - canary_weight``) to stable.
    ``header_routes`` send matching requests to the canary whatever the weights say.
    """

    stable_revision: str | None
    canary_revision: str | None
    canary_weight: int = 0
    mirror_percent: float = 0
    header_routes: tuple[SetHeaderRoute, ...] = ()
    # False when the managed routes disagree (a write that was half applied): never equal to
    # a desired state, so the planner asks for the route again and the router repairs it.
    consistent: bool = True
    # What the read-back found changed outside the controller since its last write; not part
    # of the state (never compared), only reported when the controller reverts it.
    edits: tuple[RouteEdit, ...] = field(default=(), compare=False)
    # Set when the traffic could be read but the routing objects do not fit what the steps
    # ask for (something the user wrote is in the way): the Rollout is InvalidSpec, and its
    # canary's traffic is drained (``rollout.domain.planner.plan``).
    problem: str | None = field(default=None, compare=False)

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight

    @property
    def sends_canary_traffic(self) -> bool:
        return self.canary_weight > 0 or self.mirror_percent > 0 or bool(self.header_routes)


@dataclass(frozen=True)
class Preflight:
    """Whether every check of ``spec.analysis`` resolves and its query is accepted, tried once
    before the canary's first traffic (``rollout.controller.gates``; only acceptance counts,
    not the value: the canary has no traffic yet).

    ``ok``; ``invalid``: bad input the user must fix (a missing AnalysisTemplate or argument,
    an undeclared variable, no Prometheus address, a missing Secret or key, a query Prometheus
    refuses), ``message`` names the check or field and the reason; ``unreachable``: Prometheus
    did not answer usefully (refused connection, timeout, 5xx), ``message`` says where and why.
    ``recheck_after`` (seconds): when to look again without a watch event (None: only when
    the Rollout or an AnalysisTemplate changes).
    """

    outcome: Literal["ok", "invalid", "unreachable"]
    message: str = ""
    recheck_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


PREFLIGHT_OK = Preflight("ok")


@dataclass(frozen=True)
class Observed:
    """The Rollout and its world at one instant.

    ``spec`` is None when the spec is invalid; ``problems`` then says why, as
    ``field.path: reason`` lines. ``route_error`` is set when the router could not read the
    traffic (a missing VirtualService or route), or read it but found that the routing
    objects do not fit the steps (``RouteState.problem``): the planner then changes nothing
    but, when it can, drains the canary's traffic to stable.
    ``preflight`` is set while a canary with a gate has no traffic yet (None: not checked, as
    when there is no gate or the canary already has traffic).
    """

    name: str
    namespace: str
    generation: int
    spec: RolloutSpec | None
    status: RolloutStatus
    revision: str | None
    replica_sets: tuple[ReplicaSetView, ...] = ()
    route: RouteState | None = None
    measurements: tuple[tuple[str, Measurement], ...] = ()
    problems: tuple[str, ...] = ()
    route_error: str | None = None
    preflight: Preflight | None = None

    def replica_set(self, revision: str | None) -> ReplicaSetView | None:
        return next((rs for rs in self.replica_sets if rs.revision == revision), None)
