"""The ``AnalysisTemplate`` custom resource: a named PromQL check with bounds and arguments."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ConfigDict, Field, model_validator

from rollout.api.base import ApiModel
from rollout.api.cel import rules
from rollout.api.meta import ObjectMeta

NoData = Literal["fail", "pass", "inconclusive"]


class TemplateArg(ApiModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")
    """The argument's name; the query reads it as {{args.NAME}}."""
    value: str | None = Field(default=None, max_length=1024)
    """The value used when the Rollout's templateRef.args does not set one."""


class AnalysisTemplateSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            ("has(self.min) || has(self.max)", "set min, max or both"),
            ("!has(self.min) || !has(self.max) || self.min <= self.max", "min must be <= max"),
            (
                "!has(self.args) || self.args.all(a, self.args.exists_one(b, b.name == a.name))",
                "arg names must be unique",
            ),
        )
    )

    args: list[TemplateArg] = Field(default_factory=list, max_length=32)
    """Arguments of the query (at most 32), with optional default values."""
    query: str = Field(min_length=1, max_length=16384)
    """The PromQL query; its result must be one number. It may use {{args.NAME}} and built-in
    variables such as {{canary.revision}} and {{interval}}."""
    min: float | None = None
    """Fail when the value is below this. Set min, max or both."""
    max: float | None = None
    """Fail when the value is above this. Set min, max or both."""
    no_data: NoData = "inconclusive"
    """What an empty result counts as: fail, pass or inconclusive. Default inconclusive."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must be <= max")
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise ValueError("arg names must be unique")
        return self


class AnalysisTemplate(ApiModel):
    api_version: Literal["rollout.dev/v1alpha1"]
    """rollout.dev/v1alpha1."""
    kind: Literal["AnalysisTemplate"]
    """AnalysisTemplate."""
    metadata: ObjectMeta
    """The object's metadata."""
    spec: AnalysisTemplateSpec
    """The query and its bounds."""
