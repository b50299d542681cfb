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
# A query's timeout when the manifest sets none: this, or the gate's interval when shorter
# (``Analysis._default_timeout``), so that a query never runs into the next measurement.
DEFAULT_TIMEOUT_SECONDS = 10


class SecretKeyRef(ApiModel):
    """A key of a Secret in the Rollout's namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """The Secret's name, in the Rollout's namespace."""
    key: str = Field(min_length=1, max_length=253)
    """The key in the Secret's data."""


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
    """Base URL of Prometheus, http:// or https://. Default: the controller's --prometheus-url."""
    timeout: Duration = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=1)
    """Time limit of one query: a duration such as 5s, or whole seconds. Default: 10s, or the gate's
    interval when that is shorter. It may not be longer than the interval."""
    # Rate windows are never shorter than two scrape intervals of the Prometheus that is read.
    scrape_interval: Duration = Field(default=15, ge=1)
    """How often this Prometheus scrapes the Istio sidecars; rate windows are never shorter than
    twice this. Default 15s."""
    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Extra HTTP headers sent with every query (at most 32)."""
    bearer_token_secret: SecretKeyRef | None = None
    """Send a bearer token read from this Secret key. Set at most one of bearerTokenSecret,
    bearerTokenFile and basicAuthSecret."""
    bearer_token_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """Send a bearer token read from this file in the controller's container, read again at every
    query so that it may rotate."""
    basic_auth_secret: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    """Use basic authentication with the username and password keys of this Secret."""
    ca_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """A PEM CA bundle file in the controller's container, to verify Prometheus's certificate. Not
    together with caSecret."""
    ca_secret: SecretKeyRef | None = None
    """A PEM CA bundle from this Secret key, to verify Prometheus's certificate. Not together with
    caFile."""
    insecure_skip_verify: bool = False
    """Do not verify Prometheus's TLS certificate. Not together with a CA bundle. Default false."""

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
    """Fail when the canary's share of 5xx responses is above this, from 0 to 1 (0.01 is 1%)."""
    max_increase_over_stable: float | None = Field(default=None, ge=0, le=1)
    """Fail when the canary's share of 5xx responses exceeds the stable revision's, over the same
    window, by more than this (0 to 1)."""
    min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=0)
    """Fewer canary requests than this in the window make the measurement Inconclusive instead of
    judging it. Default 20."""
    window: Duration | None = None
    """The window the rate is measured over, a duration. Default: the gate's interval; never shorter
    than two scrape intervals."""

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
    """Fail when the canary's 99th percentile request duration is above this many milliseconds."""
    max_ratio_to_stable: float | None = Field(default=None, gt=0)
    """Fail when the canary's 99th percentile is more than this multiple of the stable revision's
    (1.5 allows 50% slower)."""
    min_requests: int = Field(default=DEFAULT_MIN_REQUESTS, ge=0)
    """Fewer canary requests than this in the window make the measurement Inconclusive instead of
    judging it. Default 20."""
    window: Duration | None = None
    """The window the percentile is measured over, a duration. Default: the gate's interval; never
    shorter than two scrape intervals."""

    @model_validator(mode="after")
    def _threshold(self) -> Self:
        if self.max_ms is None and self.max_ratio_to_stable is None:
            raise ValueError("latencyP99 needs maxMs or maxRatioToStable")
        return self


class TemplateRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    """The AnalysisTemplate, in the Rollout's namespace, that holds the query and its bounds."""
    args: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Values of the template's arguments, by name (at most 32)."""


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
    """The check's name, unique within the gate; shown by rollout get and in Events."""
    error_rate: ErrorRateCheck | None = None
    """Built-in check: the canary's share of 5xx responses, from Istio's standard metrics."""
    latency_p99: LatencyP99Check | None = None
    """Built-in check: the canary's 99th percentile latency, from Istio's standard metrics."""
    template_ref: TemplateRef | None = None
    """Custom check: a PromQL query from an AnalysisTemplate."""
    dry_run: bool = False
    """Measure and report the check, but never let it fail the gate. Default false."""

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
    """How often every check is measured: a duration such as 30s, or whole seconds. Default 30s."""
    failure_limit: int = Field(default=0, ge=0)
    """Failed measurements a check may have; one more fails the gate and traffic goes back to
    stable. Default 0."""
    inconclusive_limit: int = Field(default=0, ge=0)
    """Inconclusive measurements a check may have; one more pauses the Rollout for a person to
    promote or abort. Default 0."""
    consecutive_error_limit: int = Field(default=4, ge=0)
    """Measurements in a row that could not be taken (Prometheus unreachable, an unusable answer) a
    check may have; one more fails the gate. Default 4."""
    measurements_kept: int = Field(default=10, ge=1, le=100)
    """Latest measurements kept per check in status (1 to 100). Default 10."""
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    """The Prometheus the checks query, and how to authenticate to it."""
    checks: list[Check] = Field(min_length=1, max_length=20)
    """The checks (1 to 20); the gate passes when every one passes."""

    @model_validator(mode="after")
    def _default_timeout(self) -> Self:
        # An unset prometheus.timeout is min(10 s, interval): a 5 s gate gets 5 s rather than
        # the 10 s that semantics.spec_problems would then refuse as longer than the interval.
        if "timeout" not in self.prometheus.model_fields_set:
            timeout = min(DEFAULT_TIMEOUT_SECONDS, self.interval)
            prometheus = self.prometheus.model_copy(update={"timeout": timeout})
            object.__setattr__(self, "prometheus", prometheus)  # frozen: set once, while parsing
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check names must be unique: {', '.join(dupes)} repeated")
        return self
