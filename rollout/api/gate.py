"""The analysis gate of a Rollout (``spec.analysis``): Prometheus, limits and checks.

A gate is a set of checks measured every ``interval``. Built-in checks read Istio's standard
metrics; ``templateRef`` names an AnalysisTemplate with custom PromQL. Each built-in check has an
absolute threshold and one relative to the stable revision, measured over the same window.
"""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from rollout.api.base import ApiModel
from rollout.api.cel import count_set, exactly_one, rules
from rollout.api.duration import Duration
from rollout.api.meta import DNS_LABEL, DNS_SUBDOMAIN

DEFAULT_MIN_REQUESTS = 20


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Rollout's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(min_length=1, max_length=253)


class PrometheusConfig(ApiModel):
    """Where the gate queries, and how it authenticates.

    Without ``address`` the controller's ``--prometheus-url`` is used. At most one of the
    bearer token (from a Secret or a file, read at every query so it may rotate) and basic
    auth (a Secret with ``username`` and ``password``); a CA bundle or ``insecureSkipVerify``.
    """

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "(has(self.bearerTokenSecret) ? 1 : 0) + (has(self.bearerTokenFile) ? 1 : 0)"
                " + (has(self.basicAuthSecret) ? 1 : 0) <= 1",
                "set at most one of bearerTokenSecret, bearerTokenFile, basicAuthSecret",
            ),
            (
                "!(has(self.caFile) && has(self.caSecret))",
                "set caFile or caSecret, not both",
            ),
            (
                "!has(self.insecureSkipVerify) || !self.insecureSkipVerify"
                " || !(has(self.caFile) || has(self.caSecret))",
                "insecureSkipVerify contradicts a CA bundle",
            ),
        )
    )

    address: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^https?://")
    timeout: Duration = Field(default=10, ge=1)
    # Rate windows are never shorter than two scrape intervals of the Prometheus that is read.
    scrape_interval: Duration = Field(default=15, ge=1)
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    bearer_token_secret: SecretKeyRef | None = None
    bearer_token_file: str | None = Field(default=None, min_length=1, max_length=4096)
    basic_auth_secret: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    ca_file: str | None = Field(default=None, min_length=1, max_length=4096)
    ca_secret: SecretKeyRef | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _auth(self) -> Self:
        auth = (self.bearer_token_secret, self.bearer_token_file, self.basic_auth_secret)
        if count_set(*auth) > 1:
            raise ValueError(
                "set at most one of bearerTokenSecret, bearerTokenFile, basicAuthSecret"
            )
        if self.ca_file is not None and self.ca_secret is not None:
            raise ValueError("set caFile or caSecret, not both")
        if self.insecure_skip_verify and (self.ca_file or self.ca_secret):
            raise ValueError("insecureSkipVerify contradicts a CA bundle")
        return self


class ErrorRateCheck(ApiModel):
    """Share of 5xx among the canary's requests (0..1)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.max) || has(self.maxIncreaseOverStable)",
                "errorRate needs max or maxIncreaseOverStable",
            )
        )
    )

    max: float | None = Field(default=None, ge=0, le=1)
    max_increase_over_stable: float | None = Field(default=None, ge=0, le=1)
    min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=0)
    window: Duration | None = None

    @model_validator(mode="after")
    def _threshold(self) -> Self:
        if self.max is None and self.max_increase_over_stable is None:
            raise ValueError("errorRate needs max or maxIncreaseOverStable")
        return self


class LatencyP99Check(ApiModel):
    """The canary's p99 request duration in milliseconds."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.maxMs) || has(self.maxRatioToStable)",
                "latencyP99 needs maxMs or maxRatioToStable",
            )
        )
    )

    max_ms: float | None = Field(default=None, gt=0)
    max_ratio_to_stable: float | None = Field(default=None, gt=0)
    min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=0)
    window: Duration | None = None

    @model_validator(mode="after")
    def _threshold(self) -> Self:
        if self.max_ms is None and self.max_ratio_to_stable is None:
            raise ValueError("latencyP99 needs maxMs or maxRatioToStable")
        return self


class TemplateRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    args: dict[str, str] = Field(default_factory=dict, max_length=32)


class Check(ApiModel):
    """One check of the gate: exactly one of errorRate, latencyP99, templateRef."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                exactly_one("errorRate", "latencyP99", "templateRef"),
                "a check has exactly one of errorRate, latencyP99, templateRef",
            )
        )
    )

    name: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    error_rate: ErrorRateCheck | None = None
    latency_p99: LatencyP99Check | None = None
    template_ref: TemplateRef | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if count_set(self.error_rate, self.latency_p99, self.template_ref) != 1:
            raise ValueError("a check has exactly one of errorRate, latencyP99, templateRef")
        return self


class Analysis(ApiModel):
    """``spec.analysis``: the gate shared by every strategy."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.checks.all(c, self.checks.exists_one(d, d.name == c.name))",
                "check names must be unique",
            )
        )
    )

    interval: Duration = Field(default=30, ge=1)
    failure_limit: int = Field(default=0, ge=0)
    inconclusive_limit: int = Field(default=0, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    measurements_kept: int = Field(default=10, ge=1, le=100)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    checks: list[Check] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique: {', '.join(dupes)} repeated")
        return self
