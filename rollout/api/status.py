"""``Rollout.status``: everything the planner must remember, written only by the controller.

The operator flags (``abort``, ``promoteFull``, ``pauseConditions``) are the exception: the CLI
and Argo CD actions set them through the status subresource, so that Git never sees drift in
``spec``. Phases: Healthy | Progressing | Paused | Degraded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer

from rollout.api.base import ApiModel


def _rfc3339(value: datetime) -> str:
    # metav1.Time is second precision and always UTC with a "Z".
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str)]

Phase = Literal["Healthy", "Progressing", "Paused", "Degraded"]
AnalysisPhase = Literal["Pending", "Running", "Successful", "Failed", "Inconclusive", "Error"]
MeasurementPhase = Literal["Successful", "Failed", "Inconclusive", "Error"]
ConditionStatus = Literal["True", "False", "Unknown"]

# Pause reasons, as Argo Rollouts names them where it has a name.
PAUSE_CANARY_STEP = "CanaryPauseStep"
PAUSE_BLUE_GREEN = "BlueGreenPause"
PAUSE_INCONCLUSIVE = "InconclusiveAnalysis"
PAUSE_USER = "PausedByUser"


class Weights(ApiModel):
    """Traffic as read back from the VirtualService: stable + canary = 100."""

    stable: int = Field(default=100, ge=0, le=100)
    canary: int = Field(default=0, ge=0, le=100)
    mirror: float = Field(default=0, ge=0, le=100)


class PauseCondition(ApiModel):
    reason: str = Field(min_length=1)
    start_time: Timestamp


class Condition(ApiModel):
    """A ``metav1.Condition``."""

    type: str = Field(min_length=1)
    status: ConditionStatus
    reason: str = Field(min_length=1)
    message: str = ""
    last_transition_time: Timestamp
    observed_generation: int | None = None


class Measurement(ApiModel):
    at: Timestamp
    phase: MeasurementPhase
    value: float | None = None
    message: str | None = None
    # What the value was judged against, for people reading it (``rollout get``): the value's
    # unit ("ms"; none for a ratio or a template's number) and the threshold as text ("max 250",
    # "max 0.006 (stable 0.001 + 0.005)", "min 0.9, max 1").
    unit: str | None = Field(default=None, max_length=16)
    threshold: str | None = Field(default=None, max_length=256)


class CheckStatus(ApiModel):
    name: str
    phase: AnalysisPhase = "Pending"
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    dry_run: bool = False
    measurements: list[Measurement] = Field(default_factory=list)


class AnalysisStatus(ApiModel):
    """The gate's current run: a step's counted run, or the background run (no count)."""

    phase: AnalysisPhase = "Pending"
    started_at: Timestamp | None = None
    count: int | None = None
    message: str = ""
    checks: list[CheckStatus] = Field(default_factory=list)


class RolloutStatus(ApiModel):
    observed_generation: int | None = None
    phase: Phase | None = None
    message: str = ""
    strategy: str | None = None
    stable_revision: str | None = None
    canary_revision: str | None = None
    current_step_index: int | None = None
    step_count: int | None = None
    step_started_at: Timestamp | None = None
    # Set while a step or the promotion makes no progress (the canary not available, or the
    # gate holding it), or while a stable revision is not available: the progress deadline
    # runs from here, so pauses and waits for the next measurement never count against it.
    waiting_for_replicas_since: Timestamp | None = None
    weights: Weights | None = None
    pause_conditions: list[PauseCondition] = Field(default_factory=list)
    abort: bool = False
    promote_full: bool = False
    aborted_at: Timestamp | None = None
    abort_reason: str | None = None
    analysis: AnalysisStatus | None = None
    replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    selector: str = ""
    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
