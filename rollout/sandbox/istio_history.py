"""A past of Istio's standard metrics as OpenMetrics text, for ``promtool`` to backfill.

Where ``istio_metrics`` serves live counters for Prometheus to scrape, this writes a known
history — every sample with its timestamp — so that a test or a benchmark can query exact data
at exact instants (``PrometheusServer(openmetrics=...)``) without waiting for scrapes. Each
``History`` is one revision of one service: ``istio_requests_total`` (200s and 503s) and the
``istio_request_duration_milliseconds`` histogram with Istio's default buckets, as reported by
the destination and, as Istio does too, by the source (which the checks must ignore), split
over ``sources`` client workloads so that every check sums several series.

Latency: ``1 - slow_share`` of the requests take ``fast_ms``, the rest ``slow_ms``; the p99
then falls in ``slow_ms``'s bucket when ``slow_share`` > 1%. ``broken`` makes a metric's
destination samples NaN (``"requests"``: every request counter, ``"errors"``: the 503
counter, ``"buckets"``: the histogram's buckets), as a broken exporter or recording rule would.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rollout.sandbox.istio_metrics import ISTIO_BUCKETS


@dataclass(frozen=True)
class History:
    namespace: str
    service: str
    revision: str
    rps: float
    error_rate: float = 0.0
    fast_ms: float = 20.0
    slow_ms: float = 80.0
    slow_share: float = 0.02
    broken: frozenset[str] = frozenset()
    sources: int = 2
    reporters: tuple[str, ...] = ("destination", "source")


def _labels(history: History, reporter: str, source: int, **extra: str) -> str:
    labels = {
        "reporter": reporter,
        "source_workload": f"client-{source}",
        "destination_workload_namespace": history.namespace,
        "destination_canonical_service": history.service,
        "destination_canonical_revision": history.revision,
        "destination_workload": f"{history.service}-{history.revision}",
        **extra,
    }
    return ",".join(f'{name}="{value}"' for name, value in labels.items())


def _value(number: float, broken: bool) -> str:
    return "NaN" if broken else repr(float(number))


def _series(history: History) -> Iterator[tuple[str, str, str, float, bool]]:
    """(family, sample name, labels, value per second, broken) for each series."""
    share = 1.0 / history.sources
    for reporter in history.reporters:
        for source in range(history.sources):
            bad = reporter == "destination"
            rps = history.rps * share
            errors = rps * history.error_rate
            code = {"response_code": "200"}
            yield (
                "requests",
                "istio_requests_total",
                _labels(history, reporter, source, **code),
                rps - errors,
                bad and "requests" in history.broken,
            )
            code = {"response_code": "503"}
            yield (
                "requests",
                "istio_requests_total",
                _labels(history, reporter, source, **code),
                errors,
                bad and ("requests" in history.broken or "errors" in history.broken),
            )
            for le in (*ISTIO_BUCKETS, float("inf")):
                below = (history.fast_ms <= le) * (1 - history.slow_share) + (
                    history.slow_ms <= le
                ) * history.slow_share
                bound = "+Inf" if le == float("inf") else repr(float(le))
                yield (
                    "duration",
                    "istio_request_duration_milliseconds_bucket",
                    _labels(history, reporter, source, le=bound),
                    rps * below,
                    bad and "buckets" in history.broken,
                )
            yield (
                "duration",
                "istio_request_duration_milliseconds_count",
                _labels(history, reporter, source),
                rps,
                bad and "requests" in history.broken,
            )
            mean = (1 - history.slow_share) * history.fast_ms + history.slow_share * history.slow_ms
            yield (
                "duration",
                "istio_request_duration_milliseconds_sum",
                _labels(history, reporter, source),
                rps * mean,
                False,
            )


FAMILIES = {
    "requests": "# TYPE istio_requests counter",
    "duration": "# TYPE istio_request_duration_milliseconds histogram",
}


def openmetrics(histories: Iterable[History], start: int, end: int, step: int) -> str:
    """OpenMetrics text of every history's counters from ``start`` to ``end`` (Unix seconds,
    inclusive) every ``step`` seconds; each counter starts at 0 at ``start`` and grows by its
    rate. Families come one after the other, each series' samples in time order."""
    histories = list(histories)
    times = range(start, end + 1, step)
    lines: list[str] = []
    for family, header in FAMILIES.items():
        lines.append(header)
        for history in histories:
            for kind, name, labels, per_second, broken in _series(history):
                if kind != family:
                    continue
                for t in times:
                    lines.append(
                        f"{name}{{{labels}}} {_value(per_second * (t - start), broken)} {t}"
                    )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
