"""Label selectors (equality and set-based) and field selectors, as list and watch take them.

Syntax as in ``kubectl -l``: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a``, ``!a``, joined by commas. Field selectors support ``metadata.name`` and
``metadata.namespace`` on every type, plus the fields the apiserver indexes for a few types
(core/v1 events: ``involvedObject.*``, ``reason``, ``reportingComponent``, ``source``, ``type``;
namespaces and pods: ``status.phase``; pods: ``spec.nodeName``...; secrets: ``type``), with
``=``, ``==`` and ``!=`` and the values escaped as ``fields.EscapeValue`` does (a backslash
before a backslash, comma or equals sign); anything else is a 400, as in Kubernetes for fields a
resource does not index.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rollout.sandbox.errors import bad_request

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


Getter = Callable[[Mapping[str, Any]], str]


def _at(*path: str) -> Getter:
    """The string at ``path`` (missing: ``""``, as the apiserver's field sets hold it)."""

    def get(obj: Mapping[str, Any]) -> str:
        node: Any = obj
        for part in path:
            if not isinstance(node, Mapping):
                return ""
            node = node.get(part)
        return "" if node is None else str(node)

    return get


FIELDS: dict[str, Getter] = {
    "metadata.name": _at("metadata", "name"),
    "metadata.namespace": _at("metadata", "namespace"),
}

# The selectable fields of some types, from their registry strategies' GetAttrs/ToSelectableFields
# (pkg/registry/core/event/strategy.go, .../pod/strategy.go, .../namespace, .../secret).
TYPE_FIELDS: dict[tuple[str, str], dict[str, Getter]] = {
    ("", "events"): {
        **{
            f"involvedObject.{name}": _at("involvedObject", name)
            for name in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            )
        },
        "reason": _at("reason"),
        "reportingComponent": _at("reportingComponent"),
        "source": _at("source", "component"),
        "type": _at("type"),
    },
    ("", "namespaces"): {"status.phase": _at("status", "phase")},
    ("", "pods"): {
        "spec.nodeName": _at("spec", "nodeName"),
        "spec.restartPolicy": _at("spec", "restartPolicy"),
        "spec.schedulerName": _at("spec", "schedulerName"),
        "spec.serviceAccountName": _at("spec", "serviceAccountName"),
        "status.phase": _at("status", "phase"),
        "status.podIP": _at("status", "podIP"),
        "status.nominatedNodeName": _at("status", "nominatedNodeName"),
    },
    ("", "secrets"): {"type": _at("type")},
    ("", "services"): {
        "spec.clusterIP": _at("spec", "clusterIP"),
        "spec.type": _at("spec", "type"),
    },
}


def _field_test(
    getter: Callable[[Mapping[str, Any]], str], value: str, *, negate: bool
) -> ObjectMatcher:
    return lambda obj: (getter(obj) == value) != negate


def _split_escaped(text: str) -> list[str]:
    """Split a field selector on commas not escaped with a backslash."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    if escaped:
        raise bad_request(f"invalid field selector: {text!r}: trailing backslash")
    parts.append(current)
    return [p for p in (p.strip() for p in parts) if p]


def _unescape(value: str) -> str:
    out, escaped = "", False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise bad_request(f"invalid field selector value {value!r}: invalid escape")
            out += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise bad_request(f"invalid field selector value {value!r}: unescaped {char!r}")
        else:
            out += char
    return out


def field_selector(text: str | None, extra: Mapping[str, Getter] | None = None) -> ObjectMatcher:
    """A matcher for a ``fieldSelector`` query parameter (empty: everything).

    ``extra``: the type's own selectable fields (``TYPE_FIELDS``) besides ``metadata.name`` and
    ``metadata.namespace``; ``{}`` for a custom resource, None for a built-in type with only
    those two. The error for an unknown field is kube-apiserver's for each: "field label not
    supported" from a type's own field-label conversion (and apiextensions' for custom
    resources), "is not a known field selector" from the default one.
    """
    if not text:
        return lambda obj: True
    tests: list[ObjectMatcher] = []
    for part in _split_escaped(text):
        match = re.match(r"^([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not match:
            raise bad_request(f"invalid field selector: {part!r}")
        field, op, raw = match.groups()
        value = _unescape(raw)
        getter = FIELDS.get(field) or (extra or {}).get(field)
        if getter is None and extra is None:
            raise bad_request(
                f'"{field}" is not a known field selector: only "metadata.name", '
                '"metadata.namespace"'
            )
        if getter is None:
            raise bad_request(f"field label not supported: {field}")
        tests.append(_field_test(getter, value, negate=op == "!="))
    return lambda obj: all(t(obj) for t in tests)
