"""The planner's output: actions for the executor, the new status, when to look again.

Actions are idempotent desired states (scale this ReplicaSet to N, make traffic look like
this), so a reconcile that died halfway is repaired by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from rollout.api.status import RolloutStatus
from rollout.domain.observed import RouteState


@dataclass(frozen=True)
class ScaleReplicaSet:
    """Create the revision's ReplicaSet from the template if missing; set its replicas."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class MarkScaleDown:
    """Annotate when a retired ReplicaSet scales to zero (None clears the mark)."""

    revision: str
    at: datetime | None


@dataclass(frozen=True)
class DeleteReplicaSet:
    revision: str


@dataclass(frozen=True)
class SetRoute:
    """Make the traffic router apply ``route`` (idempotent)."""

    route: RouteState


@dataclass(frozen=True)
class EmitEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


T = TypeVar("T")

Action = ScaleReplicaSet | MarkScaleDown | DeleteReplicaSet | SetRoute | EmitEvent


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    status: RolloutStatus
    requeue_after: float | None  # seconds; None: only a watch event wakes this Rollout

    def of_type(self, kind: type[T]) -> list[T]:
        return [a for a in self.actions if isinstance(a, kind)]
