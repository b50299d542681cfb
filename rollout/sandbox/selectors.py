"""Label selectors (equality and set-based) and field selectors, as list and watch take them.

Syntax as in ``kubectl -l``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a``, ``!a``, joined by commas. Field selectors support ``metadata.name`` and
``metadata.namespace`` with ``=``, ``==`` and ``!=``; anything else is a 400, as in Kubernetes
for fields a resource does not index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rollout.sandbox.errors import ApiError, bad_request

Matcher = Callable[[Mapping[str, str]], bool]
ObjectMatcher = Callable[[Mapping[str, Any]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(notin|in)\s*\(([^()]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in (p.strip() for p in parts) if p]


def _requirement(text: str) -> Matcher:
    eq = _EQ.match(text)
    if eq:
        key, op, value = eq.groups()
        _check_key(key, text)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _SET.match(text)
    if not match:
        raise bad_request(f"unable to parse requirement: {text!r}")
    negate, key, op, values_text = match.groups()
    _check_key(key, text)
    if op is None:
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    if negate:
        raise bad_request(f"unable to parse requirement: {text!r}")
    values = {v.strip() for v in values_text.split(",") if v.strip()}
    if not values:
        raise bad_request(f"for 'in', 'notin' operators, values set can't be empty: {text!r}")
    if op == "in":
        return lambda labels: labels.get(key) in values
    return lambda labels: labels.get(key) not in values


def _check_key(key: str, text: str) -> None:
    if not _KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {text!r}")


def label_selector(text: str | None) -> Matcher:
    """A matcher for a ``labelSelector`` query parameter (empty: everything)."""
    if not text:
        return lambda labels: True
    requirements = [_requirement(part) for part in _split(text)]
    return lambda labels: all(r(labels) for r in requirements)


FIELDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": lambda obj: str(obj.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda obj: str(obj.get("metadata", {}).get("namespace", "")),
}


def _field_test(
    getter: Callable[[Mapping[str, Any]], str], value: str, *, negate: bool
) -> ObjectMatcher:
    return lambda obj: (getter(obj) == value) != negate


def field_selector(text: str | None) -> ObjectMatcher:
    """A matcher for a ``fieldSelector`` query parameter (empty: everything)."""
    if not text:
        return lambda obj: True
    tests: list[ObjectMatcher] = []
    for part in _split(text):
        match = re.match(r"^([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not match:
            raise bad_request(f"invalid field selector: {part!r}")
        field, op, value = match.groups()
        getter = FIELDS.get(field)
        if getter is None:
            raise ApiError(
                400,
                "BadRequest",
                f'Unable to find "{field}" field label: field label not supported: {field}',
            )
        tests.append(_field_test(getter, value, negate=op == "!="))
    return lambda obj: all(t(obj) for t in tests)
