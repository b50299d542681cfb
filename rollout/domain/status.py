"""Deriving ``Rollout.status`` from what the planner decided (a ``Progress``). Pure.

Phase rules: Degraded after an abort, for bad input, or while a stable revision with nothing
to roll back to is not available past ``progressDeadlineSeconds``; Paused while any pause
condition holds; Progressing while a new revision is not promoted or stable is not fully available;
otherwise Healthy. Weights are always the ones read back from the router, never the ones asked
for. A condition's ``lastTransitionTime`` moves only when its status changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rollout.api.rollout import RolloutSpec
from rollout.api.status import (
    AnalysisStatus,
    Condition,
    PauseCondition,
    Phase,
    RolloutStatus,
    Timestamp,
    Weights,
)
from rollout.domain.observed import Observed, RouteState
from rollout.domain.plan import Action, EmitEvent, Plan
from rollout.domain.steps import Step, describe, step_number


@dataclass
class Progress:
    """What the planner decides in one reconcile, field by field; the status is derived from it
    once at the end. Each field is the ``RolloutStatus`` field of the same name and type."""

    stable_revision: str | None
    canary_revision: str | None
    current_step_index: int | None
    step_started_at: Timestamp | None
    waiting_for_replicas_since: Timestamp | None
    pause_conditions: list[PauseCondition]
    abort: bool
    promote_full: bool
    paused_by_user: bool | None
    aborted_at: Timestamp | None
    abort_reason: str | None
    analysis: AnalysisStatus | None

    @classmethod
    def of(cls, status: RolloutStatus) -> Progress:
        """The fields of ``status`` as they stand (its own list, so no change reaches it)."""
        return cls(
            stable_revision=status.stable_revision,
            canary_revision=status.canary_revision,
            current_step_index=status.current_step_index,
            step_started_at=status.step_started_at,
            waiting_for_replicas_since=status.waiting_for_replicas_since,
            pause_conditions=list(status.pause_conditions),
            abort=status.abort,
            promote_full=status.promote_full,
            paused_by_user=status.paused_by_user,
            aborted_at=status.aborted_at,
            abort_reason=status.abort_reason,
            analysis=status.analysis,
        )


def stalled(progress: Progress, spec: RolloutSpec, now: datetime) -> bool:
    """Steady state (nothing to roll back to) whose stable revision has not become available
    within ``progressDeadlineSeconds`` of being asked for (``waiting_for_replicas_since``)."""
    since = progress.waiting_for_replicas_since
    if since is None or progress.canary_revision != progress.stable_revision:
        return False
    return now >= since + timedelta(seconds=spec.progress_deadline_seconds)


def derive_status(
    progress: Progress,
    observed: Observed,
    spec: RolloutSpec,
    steps: list[Step],
    route: RouteState,
    now: datetime,
) -> RolloutStatus:
    """The new status: the fields of ``progress``, and those derived from it and ``observed``."""
    views = observed.replica_sets
    stable_view = observed.replica_set(progress.stable_revision)
    available = stable_view is not None and stable_view.available >= spec.replicas
    phase: Phase
    stuck = stalled(progress, spec, now)
    if progress.abort or stuck:
        phase = "Degraded"
    elif progress.pause_conditions:
        phase = "Paused"
    elif progress.canary_revision != progress.stable_revision or not available:
        phase = "Progressing"
    else:
        phase = "Healthy"
    message = _message(progress, phase, steps)
    fields = {
        **{f.name: getattr(progress, f.name) for f in dataclasses.fields(progress)},
        "observed_generation": observed.generation,
        "phase": phase,
        "message": message,
        "strategy": spec.strategy.name,
        "step_count": len(steps),
        "step": step_number(progress.current_step_index, len(steps)),
        "weights": Weights(
            stable=route.stable_weight, canary=route.canary_weight, mirror=route.mirror_percent
        ),
        # The pods that exist, as the scale subresource (and an HPA) expects, not the asked.
        "replicas": sum(v.replicas if v.pods is None else v.pods for v in views),
        "ready_replicas": sum(v.ready for v in views),
        "available_replicas": sum(v.available for v in views),
        "selector": spec.selector.as_query(),
    }
    if stuck:
        progressing = (False, "ProgressDeadlineExceeded")
    elif phase == "Degraded":
        progressing = (False, progress.abort_reason or "RolloutAborted")
    elif progress.canary_revision != progress.stable_revision:
        progressing = (True, "RolloutProgressing")
    else:
        progressing = (True, "RolloutCompleted")
    pauses = ", ".join(p.reason for p in progress.pause_conditions)
    gen = observed.generation
    fields["conditions"] = with_conditions(
        observed.status.conditions,
        [
            condition("Progressing", *progressing, message, now, gen),
            condition(
                "Available",
                available,
                "StableAvailable" if available else "StableUnavailable",
                "",
                now,
                gen,
            ),
            condition("Healthy", phase == "Healthy", phase, "", now, gen),
            condition("Paused", bool(pauses), pauses or "NotPaused", "", now, gen),
            condition("InvalidSpec", False, "SpecValid", "", now, gen),
        ],
    )
    return RolloutStatus.model_validate(fields)


def _message(progress: Progress, phase: Phase, steps: list[Step]) -> str:
    run: AnalysisStatus | None = progress.analysis
    gate_text = f", gate {run.phase}: {run.message}" if run is not None else ""
    if phase == "Degraded" and not progress.abort:
        return (
            f"revision {progress.stable_revision} is not available after "
            f"progressDeadlineSeconds: no stable revision to roll back to"
        )
    if phase == "Degraded":
        stable = progress.stable_revision
        return f"aborted ({progress.abort_reason}): all traffic on stable {stable}"
    if phase == "Healthy":
        return f"revision {progress.stable_revision} is stable and serves 100%"
    index, total = progress.current_step_index, len(steps)
    assert index is not None  # set on every revision change, and by steady mode
    number = step_number(index, total)  # the same "i/n" as status.step, list, get and Events
    if index < total:
        where = f"step {number}: {describe(steps[index])}"
    else:
        where = "promoting" if total == 0 else f"step {number} done: promoting"
    # The weights are status.weights; repeating them here would make every read-back of a
    # route change the message, and cost a status write per step.
    text = f"{where}{gate_text}"
    if phase == "Paused":
        reasons = ", ".join(p.reason for p in progress.pause_conditions)
        return f"paused ({reasons}) at {text}"
    return text


def blocked(observed: Observed, now: datetime, message: str, reason: str = "InvalidSpec") -> Plan:
    """Bad input: say why (InvalidSpec) on the status and, once, in an Event; change nothing.

    ``reason`` (of the condition and the Event): ``InvalidSpec``, or ``ApiRejected`` when the
    API refused a write the plan needed (``rollout.controller.reconcile``)."""
    status, events = invalid_spec(observed, observed.status, now, message, reason)
    return Plan(events, status, None)


def invalid_spec(
    observed: Observed,
    status: RolloutStatus,
    now: datetime,
    message: str,
    reason: str = "InvalidSpec",
) -> tuple[RolloutStatus, tuple[Action, ...]]:
    """``status`` marked as bad input: phase Degraded, condition InvalidSpec (True) and
    Progressing (False) saying ``message`` with ``reason``; a Warning Event when the problem
    first appears (or its message or reason changes), none on the reconciles after. Transition
    times are kept from the old status (``observed.status``), so an unchanged problem costs no
    status write."""
    old = observed.status
    previous = old.condition("InvalidSpec")
    actions: tuple[Action, ...] = ()
    if (
        previous is None
        or previous.status != "True"
        or previous.message != message
        or previous.reason != reason
    ):
        actions = (EmitEvent("Warning", reason, message),)
    gen = observed.generation
    new = [
        condition("InvalidSpec", True, reason, message, now, gen),
        condition("Progressing", False, reason, message, now, gen),
    ]
    timed = {c.type: c for c in with_conditions(old.conditions, new) if c.type in _INVALID}
    conditions = [timed.pop(c.type, c) for c in status.conditions] + list(timed.values())
    marked = status.model_copy(
        update={
            "observed_generation": gen,
            "phase": "Degraded",
            "message": f"{reason}: {message}",
            "conditions": conditions,
        }
    )
    return marked, actions


_INVALID = ("InvalidSpec", "Progressing")


def with_progress_message(status: RolloutStatus, message: str) -> RolloutStatus:
    """``status`` whose message (and Progressing condition's message) says what it waits for."""
    text = f"{status.message}: {message}" if status.message else message
    conditions = [
        c.model_copy(update={"message": text}) if c.type == "Progressing" else c
        for c in status.conditions
    ]
    return status.model_copy(update={"message": text, "conditions": conditions})


def condition(
    type_: str, status: bool, reason: str, message: str, now: datetime, generation: int
) -> Condition:
    return Condition(
        type=type_,
        status="True" if status else "False",
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )


def with_conditions(conditions: list[Condition], new: Iterable[Condition]) -> list[Condition]:
    """Set each of ``new``, keeping the old transition time where the status is unchanged."""
    out = list(conditions)
    for cond in new:
        for i, old in enumerate(out):
            if old.type == cond.type:
                if old.status == cond.status:
                    cond = cond.model_copy(
                        update={"last_transition_time": old.last_transition_time}
                    )
                out[i] = cond
                break
        else:
            out.append(cond)
    return out
