"""``Rollout.status``: everything the planner must remember, written only by the controller.

The operator flags (``abort``, ``promoteFull``, ``pausedByUser``, ``pauseConditions``) are the
exception: the CLI and Argo CD actions set them through the status subresource, so that Git
never sees drift in ``spec``. Phases: Healthy | Progressing | Paused | Degraded.
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
    """Percent of traffic to the stable revision."""
    canary: int = Field(default=0, ge=0, le=100)
    """Percent of traffic to the new revision."""
    mirror: float = Field(default=0, ge=0, le=100)
    """Percent of live traffic copied to the new revision."""


class PauseCondition(ApiModel):
    reason: str = Field(min_length=1)
    """Why the Rollout is paused: CanaryPauseStep, BlueGreenPause, InconclusiveAnalysis or
    PausedByUser."""
    start_time: Timestamp
    """When the pause began."""


class Condition(ApiModel):
    """A ``metav1.Condition``."""

    type: str = Field(min_length=1)
    """The condition's type, such as Progressing, Available or InvalidSpec."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(min_length=1)
    """A one-word CamelCase reason for the last transition."""
    message: str = ""
    """Details for people."""
    last_transition_time: Timestamp
    """When the status last changed."""
    observed_generation: int | None = None
    """The spec generation the condition was set for."""


class Measurement(ApiModel):
    at: Timestamp
    """When the measurement was taken."""
    phase: MeasurementPhase
    """Successful, Failed, Inconclusive or Error."""
    value: float | None = None
    """The measured value: a ratio for errorRate, milliseconds for latencyP99, the query's result
    for a template."""
    message: str | None = None
    """Why the measurement has its phase, such as too few requests or a value above its bound."""
    unit: str | None = Field(default=None, max_length=16)
    """The unit of the value: "ms" for latencyP99; empty for a ratio or a template's number."""
    threshold: str | None = Field(default=None, max_length=256)
    """What the value was judged against, as text: "max 250", "max 0.006 (stable 0.001 +
    0.005)", "min 0.9, max 1"."""


class CheckStatus(ApiModel):
    name: str
    """The check's name."""
    phase: AnalysisPhase = "Pending"
    """The check's verdict so far in this run."""
    successful: int = 0
    """Successful measurements in this run."""
    failed: int = 0
    """Failed measurements in this run."""
    inconclusive: int = 0
    """Inconclusive measurements in this run."""
    errors: int = 0
    """Measurements that could not be taken, in this run."""
    consecutive_errors: int = 0
    """Measurements in a row that could not be taken."""
    dry_run: bool = False
    """Whether the check is dry-run: reported, never failing the gate."""
    measurements: list[Measurement] = Field(default_factory=list)
    """The latest measurements, oldest first (at most analysis.measurementsKept)."""


class AnalysisStatus(ApiModel):
    """The gate's current run: a step's counted run, or the background run (no count)."""

    phase: AnalysisPhase = "Pending"
    """The gate's verdict: Pending, Running, Successful, Failed, Inconclusive or Error."""
    started_at: Timestamp | None = None
    """When this run of the gate began."""
    count: int | None = None
    """Passing measurements each check needs in this run (an analysis step's count); absent for the
    background run."""
    message: str = ""
    """Why the gate is in this phase."""
    checks: list[CheckStatus] = Field(default_factory=list)
    """Each check's counts and latest measurements."""


class RolloutStatus(ApiModel):
    observed_generation: int | None = None
    """The spec generation the controller last acted on."""
    phase: Phase | None = None
    """Healthy, Progressing, Paused or Degraded."""
    message: str = ""
    """What the Rollout is doing or waiting for, for people."""
    strategy: str | None = None
    """The strategy in use: canary, blueGreen or mirror."""
    stable_revision: str | None = None
    """Pod-template hash of the revision that serves users."""
    canary_revision: str | None = None
    """Pod-template hash of the revision being rolled out."""
    current_step_index: int | None = None
    """Index of the step being executed, counted from 0; equal to stepCount once every step is
    done."""
    step_count: int | None = None
    """Number of steps of the rollout."""
    step: str | None = None
    """The step being executed, as "i/n": counted from 1, "n/n" once every step is done, "-"
    when the strategy has no steps. The Step column of kubectl get."""
    step_started_at: Timestamp | None = None
    """When the current step began."""
    # Set while a step or the promotion makes no progress (the canary not available, or the
    # gate holding it), or while a stable revision is not available: the progress deadline
    # runs from here, so pauses and waits for the next measurement never count against it.
    waiting_for_replicas_since: Timestamp | None = None
    """Since when the rollout has been waiting for available pods or a passing gate;
    progressDeadlineSeconds counts from here."""
    weights: Weights | None = None
    """Traffic as last read back from the VirtualService."""
    pause_conditions: list[PauseCondition] = Field(default_factory=list)
    """Why the Rollout is paused; rollout promote removes them."""
    abort: bool = False
    """Set by rollout abort: send all traffic back to the stable revision. rollout retry clears
    it."""
    promote_full: bool = False
    """Set by rollout promote --full: skip the remaining steps and gates."""
    paused_by_user: bool | None = None
    """Set to true by the Argo CD pause action: the controller turns it into a PausedByUser pause
    condition and removes it (an action that appended to pauseConditions would make Argo CD
    before 3.0.13 / 3.1.1 panic)."""
    aborted_at: Timestamp | None = None
    """When the update was aborted."""
    abort_reason: str | None = None
    """Why the update was aborted, such as AnalysisFailed."""
    analysis: AnalysisStatus | None = None
    """The gate's current run."""
    replicas: int = 0
    """Pods of every revision."""
    ready_replicas: int = 0
    """Ready pods of every revision."""
    available_replicas: int = 0
    """Available pods of every revision (ready for at least minReadySeconds)."""
    selector: str = ""
    """The pods' label selector as a string, for the scale subresource and autoscalers."""
    conditions: list[Condition] = Field(default_factory=list)
    """The latest observations of the Rollout's state (Progressing, Available, InvalidSpec, ...)."""

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)
