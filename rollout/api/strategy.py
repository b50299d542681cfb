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


class AnalysisStep(ApiModel):
    """Run the gate ``count`` times; move on when every check has passed that many times."""

    count: int = Field(default=1, ge=1, le=1000)


class StringMatch(ApiModel):
    """An Istio ``StringMatch``: exactly one of exact, prefix, regex."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (exactly_one("exact", "prefix", "regex"), "set exactly one of exact, prefix, regex")
        )
    )

    exact: str | None = Field(default=None, max_length=1024)
    prefix: str | None = Field(default=None, max_length=1024)
    regex: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _one(self) -> Self:
        if count_set(self.exact, self.prefix, self.regex) != 1:
            raise ValueError("set exactly one of exact, prefix, regex")
        return self


class HeaderRouteMatch(ApiModel):
    """Requests whose headers all match go to the canary."""

    headers: dict[str, StringMatch] = Field(min_length=1, max_length=16)


class SetHeaderRoute(ApiModel):
    """Send requests matching ``match`` to the canary, whatever the weights say."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    match: list[HeaderRouteMatch] = Field(min_length=1, max_length=16)


class SetMirror(ApiModel):
    """Copy ``percent`` of live traffic to the canary; 0 stops mirroring."""

    percent: float = Field(ge=0, le=100)


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
    pause: PauseStep | None = None
    analysis: AnalysisStep | None = None
    set_header_route: SetHeaderRoute | None = None
    set_mirror: SetMirror | None = None

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
    # With spec.analysis, the gate also runs in the background from the first step that sends
    # the canary traffic until promotion, aborting the rollout when it fails (as Argo's
    # canary.analysis and Flagger's per-interval checks do).
    background_analysis: bool = True
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)


class BlueGreenStrategy(ApiModel):
    preview_replica_count: int | None = Field(default=None, ge=1)
    auto_promotion_seconds: int | None = Field(default=None, ge=0)
    pre_promotion_analysis: AnalysisStep | None = None
    post_promotion_analysis: AnalysisStep | None = None
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)


class MirrorStrategy(ApiModel):
    percent: float = Field(default=100, gt=0, le=100)
    duration: Duration = Field(default=300, ge=1)
    scale_down_delay_seconds: int = Field(default=30, ge=0)
    abort_scale_down_delay_seconds: int = Field(default=30, ge=0)


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
    blue_green: BlueGreenStrategy | None = None
    mirror: MirrorStrategy | None = None

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
