"""The Prometheus MetricProvider: the only module that imports ``prometheus_api_client``.

Instant queries with a timeout; bearer token (read from a file at every query, so it may
rotate, or given), basic auth, custom headers, a CA bundle or an explicit insecure flag.
Transport failures (connection refused, timeouts) are retried with tenacity within a budget
shorter than the gate's interval (no retry starts whose back-off would end past the budget); an
HTTP error or a malformed answer is not retried: it is a typed error carrying Prometheus's own
message.

Values are returned as Prometheus wrote them, NaN and ±Inf included ("NaN", "+Inf", "-Inf"):
only an empty result is "no data", and whether a number is usable is decided by the checks
(``analysis.checks``). A value that is not a number at all (``"abc"``, ``null``) is a
``BadResponse``, hence an Error measurement.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from urllib3.util.retry import Retry

from analysis.provider import BadQuery, BadResponse, MetricError, Sample, Unreachable

_ERROR_BODY = re.compile(r"\((b?)(['\"])(.*)\2\)$", re.S)


@dataclass(frozen=True)
class PrometheusAuth:
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    insecure: bool = False


class PrometheusProvider:
    def __init__(
        self,
        address: str,
        *,
        timeout: float = 10.0,
        budget: float | None = None,
        auth: PrometheusAuth | None = None,
    ) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        self.budget = budget if budget is not None else timeout
        self.auth = auth or PrometheusAuth()
        session = requests.Session()
        # PrometheusConnect ignores disable_ssl when given a session: verification is set here.
        session.verify = False if self.auth.insecure else (self.auth.ca_file or True)
        # Retries are ours (transport errors only); the client's own would also retry 5xx.
        self._client = PrometheusConnect(
            url=self.address,
            headers=dict(self.auth.headers),
            disable_ssl=self.auth.insecure,
            retry=Retry(total=0, raise_on_status=False),
            auth=self.auth.basic_auth,
            session=session,
            timeout=timeout,
        )

    def _headers(self) -> dict[str, str]:
        headers = dict(self.auth.headers)
        token = self.auth.bearer_token
        if self.auth.bearer_token_file:
            try:
                token = Path(self.auth.bearer_token_file).read_text().strip()
            except OSError as error:
                raise Unreachable(f"cannot read bearer token file: {error.strerror}") from error
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def query(self, promql: str, *, at: datetime | None = None) -> list[Sample]:
        params = {"time": f"{at.timestamp():.3f}"} if at is not None else {}
        retrying = Retrying(
            retry=retry_if_exception_type(Unreachable),
            stop=stop_before_delay(self.budget),
            wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
        )
        try:
            result = retrying(self._query_once, promql, params)
        except RetryError as error:
            last = error.last_attempt.exception()
            raise last if isinstance(last, MetricError) else Unreachable(str(last)) from None
        try:
            return _samples(result)
        except (IndexError, KeyError, TypeError, AttributeError) as error:
            raise BadResponse(f"Prometheus answered a malformed result: {error!r}") from error

    def _query_once(self, promql: str, params: dict[str, str]) -> Any:
        self._client.headers = self._headers()
        try:
            return self._client.custom_query(promql, params=params, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise Unreachable(
                f"Prometheus at {self.address} unreachable: {_short(error)}"
            ) from error
        except PrometheusApiClientException as error:
            raise _http_error(str(error)) from error
        except (ValueError, KeyError, TypeError) as error:  # not JSON, or not Prometheus' shape
            raise BadResponse(
                f"Prometheus answered something that is not a result: {error}"
            ) from error
        except requests.RequestException as error:
            raise Unreachable(f"Prometheus at {self.address}: {_short(error)}") from error

    def healthy(self) -> bool:
        try:
            return bool(self._client.check_prometheus_connection())
        except Exception:
            return False


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) < 200 else text[:200] + "..."


def _http_error(text: str) -> MetricError:
    """``HTTP Status Code 400 (b'{"status":"error",...}')`` -> the typed error, own message."""
    code_match = re.match(r"HTTP Status Code (\d+)", text)
    code = int(code_match.group(1)) if code_match else 0
    message = text
    body_match = _ERROR_BODY.search(text)
    if body_match:
        prefix, quote, raw = body_match.groups()
        message = raw
        try:
            # The client formats the body as repr(bytes): read it back exactly, then as UTF-8.
            literal = ast.literal_eval(f"{prefix}{quote}{raw}{quote}")
            message = literal.decode("utf-8", "replace") if isinstance(literal, bytes) else literal
            body = json.loads(message)
        except (ValueError, SyntaxError):
            body = None
        if isinstance(body, dict) and body.get("error"):
            message = str(body["error"])
    if code in (400, 422):
        return BadQuery(f"Prometheus refused the query: {message}")
    return BadResponse(f"Prometheus answered HTTP {code}: {message[:300]}")


def _number(raw: Any) -> float:
    """A sample's value as Prometheus writes it: a decimal string, or "NaN", "+Inf", "-Inf".

    Non-finite values are kept (0/0 is NaN, x/0 is ±Inf): judging them is the checks' job, and
    they are never "no data". Anything that is not a number at all is a ``BadResponse``.
    """
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BadResponse(f"Prometheus answered a value that is not a number: {raw!r}")
    try:
        return float(raw)
    except ValueError:
        raise BadResponse(
            f"Prometheus answered a value that is not a number: {_short_repr(raw)}"
        ) from None


def _short_repr(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) < 80 else text[:80] + "..."


def _samples(result: Any) -> list[Sample]:
    """Every value of a vector (list of series) or a scalar ``[ts, "v"]``, NaN and ±Inf included.

    An empty vector is no samples: the only "no data". A value that is not a number is a
    ``BadResponse``.
    """
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [Sample(_number(result[1]))]
    if not isinstance(result, list):
        raise BadResponse(f"unexpected result shape: {type(result).__name__}")
    samples = []
    for series in result:
        if not isinstance(series, dict) or "value" not in series:
            raise BadResponse("a result series lacks its value: only instant queries are supported")
        samples.append(Sample(_number(series["value"][1]), dict(series.get("metric") or {})))
    return samples
