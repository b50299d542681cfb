"""The MetricProvider seam: an instant query returning plain numbers, and typed failures.

``query`` returns every value of an instant vector or scalar, each with its labels, NaN and ±Inf
included: an empty list is the only "no data" (a 0/0 ratio is NaN, which the checks judge as
broken data, never as "no data" and never as a pass). Every
failure is a ``MetricError`` whose message is the backend's own (an invalid PromQL query
reports Prometheus's parse error) so that the status can show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class MetricError(Exception):
    """The backend could not answer the query."""


class Unreachable(MetricError):
    """No answer: connection refused, timeout, DNS (retried within the budget first)."""


class BadQuery(MetricError):
    """The backend refused the query itself (e.g. a PromQL parse error)."""


class BadResponse(MetricError):
    """An answer that is not a valid result: HTTP 5xx, garbage, an unexpected shape."""


@dataclass(frozen=True)
class Sample:
    """One value of an instant query; may be NaN or ±Inf, as Prometheus answered it."""

    value: float
    labels: dict[str, str] = field(default_factory=dict)


class MetricProvider(Protocol):
    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]: ...

    def healthy(self) -> bool: ...
