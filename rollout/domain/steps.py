"""Every strategy as one ordered list of steps, so one step engine runs them all. Pure.

- canary: the user's steps;
- blueGreen: preview at 0% (wait ready), pre-promotion gate, pause (``autoPromotionSeconds``
  or until ``rollout promote``), switch 0 -> 100, post-promotion gate;
- mirror: mirror ``percent`` of live traffic, the gate over ``duration`` (one measurement per
  interval), stop mirroring.

After the last step comes promotion: the canary scales to full size, takes 100% of traffic and
becomes the stable revision. ``traffic_at`` folds the steps up to an index into the traffic the
canary should then receive: a pure function of the step index, so nothing but the index has to
be remembered across restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rollout.api.duration import format_duration
from rollout.api.rollout import RolloutSpec
from rollout.api.status import PAUSE_BLUE_GREEN, PAUSE_CANARY_STEP
from rollout.api.strategy import CanaryStep, SetHeaderRoute


@dataclass(frozen=True)
class SetWeight:
    weight: int


@dataclass(frozen=True)
class Switch(SetWeight):
    """Blue-green: all live traffic to the preview, which becomes the active version. Routed
    as ``SetWeight(100)``; described in blue-green's own terms."""

    weight: int = 100


@dataclass(frozen=True)
class Preview:
    """Blue-green: bring up the preview with ``replicas`` at 0% of traffic."""

    replicas: int


@dataclass(frozen=True)
class Pause:
    duration: int | None
    reason: str


@dataclass(frozen=True)
class Analyze:
    count: int
    label: str = "analysis"


@dataclass(frozen=True)
class HeaderRoute:
    route: SetHeaderRoute


@dataclass(frozen=True)
class Mirror:
    percent: float


Step = SetWeight | Switch | Preview | Pause | Analyze | HeaderRoute | Mirror


@dataclass(frozen=True)
class Traffic:
    """What the canary should receive at a step: weight, mirror share, header routes."""

    weight: int = 0
    mirror: float = 0
    header_routes: tuple[SetHeaderRoute, ...] = ()
    preview_replicas: int = 0


def steps_of(spec: RolloutSpec) -> list[Step]:
    strategy = spec.strategy
    if strategy.canary is not None:
        return [_canary_step(s) for s in strategy.canary.steps]
    if strategy.blue_green is not None:
        bg = strategy.blue_green
        steps: list[Step] = [Preview(bg.preview_replica_count or spec.replicas)]
        if bg.pre_promotion_analysis is not None:
            steps.append(Analyze(bg.pre_promotion_analysis.count, "pre-promotion analysis"))
        steps.append(Pause(bg.auto_promotion_seconds, PAUSE_BLUE_GREEN))
        steps.append(Switch())
        if bg.post_promotion_analysis is not None:
            steps.append(Analyze(bg.post_promotion_analysis.count, "post-promotion analysis"))
        return steps
    mirror = strategy.mirror
    assert mirror is not None
    interval = spec.analysis.interval if spec.analysis is not None else mirror.duration
    count = max(1, math.ceil(mirror.duration / interval))
    return [Mirror(mirror.percent), Analyze(count, "mirror analysis"), Mirror(0)]


def _canary_step(step: CanaryStep) -> Step:
    if step.set_weight is not None:
        return SetWeight(step.set_weight)
    if step.pause is not None:
        return Pause(step.pause.duration, PAUSE_CANARY_STEP)
    if step.analysis is not None:
        return Analyze(step.analysis.count)
    if step.set_header_route is not None:
        return HeaderRoute(step.set_header_route)
    assert step.set_mirror is not None
    return Mirror(step.set_mirror.percent)


def traffic_at(steps: list[Step], index: int) -> Traffic:
    """The canary's traffic once steps ``0..index`` (inclusive) have been applied."""
    traffic = Traffic()
    for step in steps[: index + 1]:
        match step:
            case SetWeight(weight):
                traffic = Traffic(weight, traffic.mirror, traffic.header_routes)
            case Mirror(percent):
                traffic = Traffic(traffic.weight, percent, traffic.header_routes)
            case HeaderRoute(route):
                others = tuple(r for r in traffic.header_routes if r.name != route.name)
                traffic = Traffic(traffic.weight, traffic.mirror, (*others, route))
            case Preview(replicas):
                traffic = Traffic(traffic.weight, traffic.mirror, traffic.header_routes, replicas)
    return traffic


def canary_replicas(replicas: int, traffic: Traffic) -> int:
    """Canary replicas for ``traffic``: proportional to its share, at least one, at most all.

    The canary gets ceil(replicas x share) where share is the larger of its weight and its
    mirror percentage; a preview gets its own count; header routes need one. At least one
    replica exists from the start so that it is available before any traffic moves to it.
    """
    if replicas == 0:
        return 0
    share = max(traffic.weight, traffic.mirror)
    wanted = max(1, math.ceil(replicas * share / 100), traffic.preview_replicas)
    return min(replicas, wanted)


def describe(step: Step) -> str:
    match step:
        case Switch():
            return "switch: the preview becomes active"
        case SetWeight(weight):
            return f"setWeight {weight}%"
        case Preview(replicas):
            return f"preview with {replicas} replicas"
        case Pause(duration, _):
            return (
                f"pause {format_duration(duration)}"
                if duration is not None
                else "pause until promoted"
            )
        case Analyze(count, label):
            return f"{label} x{count}"
        case HeaderRoute(route):
            return f"header route {route.name}"
        case Mirror(percent):
            return f"mirror {percent:g}%"
    raise AssertionError(step)


def step_number(index: int | None, count: int) -> str:
    """The one step numbering a person reads: ``"i/n"``, 1-based, of the step being executed.

    ``index`` is ``status.currentStepIndex`` (0-based: the number of steps already completed),
    ``count`` the number of steps. While step ``index`` runs it shows ``index + 1``; once every
    step is done (``index >= count``: promoting or promoted) it shows ``count/count``. ``None``
    (no step yet, e.g. a first deployment) gives ``"-"``. Used by the status message, Events,
    ``rollout get/list/status``, the CRD's printer column (via ``status.step``), the demo
    timeline and plots, so they never disagree.
    """
    if index is None or count <= 0:
        return "-"
    return f"{min(index + 1, count)}/{count}"
