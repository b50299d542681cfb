"""Strategies (``spec.strategy``): exactly one of canary, blueGreen, mirror.

A canary walks an ordered list of steps. Blue-green brings up a preview at 0% and switches all
traffic at once. Mirror copies live traffic to the new version for a while, then switches.
"""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from rollout.api.base import ApiModel
from rollout.api.cel import count_set, exactly_one, rules
from rollout.api.duration import Duration
from rollout.api.meta import DNS_LABEL

MAX_STEPS = 100


class PauseStep(ApiModel):
    """Wait ``duration``; without one, wait for ``rollout promote``."""

    duration: Duration | None = None
    """How long to wait: a duration such as 2m, or whole seconds. Without it, wait until rollout
    promote."""


class AnalysisStep(ApiModel):
    """Run the gate ``count`` times; move on when every check has passed that many times."""

    count: int = Field(default=1, ge=1, le=1000)
    """Passing measurements every check needs, an interval apart, before the rollout moves on (1 to
    1000). Default 1."""


class StringMatch(ApiModel):
    """An Istio ``StringMatch``: exactly one of exact, prefix, regex."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (exactly_one("exact", "prefix", "regex"), "set exactly one of exact, prefix, regex")
        )
    )

    exact: str | None = Field(default=None, max_length=1024)
    """The header's value equals this."""
    prefix: str | None = Field(default=None, max_length=1024)
    """The header's value starts with this."""
    regex: str | None = Field(default=None, max_length=1024)
    """The header's value matches this RE2 regular expression."""

    @model_validator(mode="after")
    def _one(self) -> Self:
        if count_set(self.exact, self.prefix, self.regex) != 1:
            raise ValueError("set exactly one of exact, prefix, regex")
        return self


class HeaderRouteMatch(ApiModel):
    """Requests whose headers all match go to the canary."""

    headers: dict[str, StringMatch] = Field(min_length=1, max_length=16)
    """Header name to the condition its value must meet; every header must match."""


class SetHeaderRoute(ApiModel):
    """Send requests matching ``match`` to the canary, whatever the weights say."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """Name of the http route the controller adds to the VirtualService for these requests."""
    match: list[HeaderRouteMatch] = Field(min_length=1, max_length=16)
    """Requests that meet any of these go to the new revision."""


class SetMirror(ApiModel):
    """Copy ``percent`` of live traffic to the canary; 0 stops mirroring."""

    percent: float = Field(ge=0, le=100)
    """Percent of live requests copied to the new revision (0 to 100); the copies' responses are
    discarded. 0 stops mirroring."""


class CanaryStep(ApiModel):
    """One canary step: exactly one action."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                exactly_one("setWeight", "pause", "analysis", "setHeaderRoute", "setMirror"),
                "a step has exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror",
            )
        )
    )

    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Send this percent of traffic to the new revision (0 to 100)."""
    pause: PauseStep | None = None
    """Wait for a duration, or until rollout promote."""
    analysis: AnalysisStep | None = None
    """Run the gate until every check has passed count times."""
    set_header_route: SetHeaderRoute | None = None
    """Send requests with matching headers to the new revision, whatever the weights."""
    set_mirror: SetMirror | None = None
    """Copy a share of live traffic to the new revision."""

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        actions = (self.set_weight, self.pause, self.analysis, self.set_header_route)
        if count_set(*actions, self.set_mirror) != 1:
            raise ValueError(
                "a step has exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror"
            )
        return self


class CanaryStrategy(ApiModel):
    steps: list[CanaryStep] = Field(default_factory=list, max_length=MAX_STEPS)
    """The steps, in order (at most 100); after the last one the new revision becomes stable with
    all traffic."""
    # With spec.analysis, the gate also runs in the background from the first step that sends
    # the canary traffic until promotion, aborting the rollout when it fails (as Argo's
    # canary.analysis and Flagger's per-interval checks do).
    background_analysis: bool = True
    """With spec.analysis, also run the gate from the first step that gives the new revision traffic
    until promotion; a failure aborts the rollout. Default true."""
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the old stable revision keeps its pods after a promotion, while traffic drains.
    Default 30."""
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the new revision keeps its pods after an abort. Default 30."""


class BlueGreenStrategy(ApiModel):
    preview_replica_count: int | None = Field(default=None, ge=1)
    """Pods of the preview before the switch. Default: spec.replicas."""
    auto_promotion_seconds: int | None = Field(default=None, ge=0)
    """Switch traffic this many seconds after the preview is available. Default: wait for rollout
    promote."""
    pre_promotion_analysis: AnalysisStep | None = None
    """Run the gate before the switch; needs spec.analysis."""
    post_promotion_analysis: AnalysisStep | None = None
    """Run the gate after the switch; a failure switches traffic back. Needs spec.analysis."""
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the old active revision keeps its pods after the switch. Default 30."""
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the preview keeps its pods after an abort. Default 30."""


class MirrorStrategy(ApiModel):
    percent: float = Field(default=100, gt=0, le=100)
    """Percent of live requests copied to the new revision while it is judged. Default 100."""
    duration: Duration = Field(default=300, ge=1)
    """How long to mirror and measure before switching all traffic: a duration such as 5m. Default
    5m."""
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the old revision keeps its pods after the switch. Default 30."""
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)
    """Seconds the new revision keeps its pods after an abort. Default 30."""


class Strategy(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                exactly_one("canary", "blueGreen", "mirror"),
                "set exactly one strategy: canary, blueGreen or mirror",
            )
        )
    )

    canary: CanaryStrategy | None = None
    """Shift traffic to the new revision step by step."""
    blue_green: BlueGreenStrategy | None = None
    """Bring up the new revision as a preview without traffic, then switch all traffic at once."""
    mirror: MirrorStrategy | None = None
    """Copy live traffic to the new revision and judge it with the gate, then switch all traffic at
    once."""

    @model_validator(mode="after")
    def _one(self) -> Self:
        if count_set(self.canary, self.blue_green, self.mirror) != 1:
            raise ValueError("set exactly one strategy: canary, blueGreen or mirror")
        return self

    @property
    def name(self) -> str:
        """``canary``, ``blueGreen`` or ``mirror``."""
        if self.canary is not None:
            return "canary"
        return "blueGreen" if self.blue_green is not None else "mirror"

    @property
    def scale_down_delay_seconds(self) -> int:
        chosen = self.canary or self.blue_green or self.mirror
        assert chosen is not None
        return chosen.scale_down_delay_seconds

    @property
    def abort_scale_down_delay_seconds(self) -> int:
        chosen = self.canary or self.blue_green or self.mirror
        assert chosen is not None
        return chosen.abort_scale_down_delay_seconds
