"""What the apiserver does to a custom resource body against its CRD's ``openAPIV3Schema``.

Pure functions, no HTTP. The sandbox's admission calls them on every create and update of a custom
resource: ``prune`` first, then ``validate`` on the pruned body (with the stored object as ``old``
on an update), and answers ``422 Invalid`` with one ``details.causes`` entry per ``Cause``.

Contract, following the Kubernetes sources (apiextensions-apiserver, kube-openapi, apimachinery's
``field.Error``) rather than a JSON Schema reading:

``prune(obj, schema)``
    Structural pruning (``pruning/algorithm.go``): at an object node keep the keys of
    ``properties``; with ``additionalProperties`` as a schema keep every key and prune it by that
    schema; under ``x-kubernetes-preserve-unknown-fields: true`` keep every key, still pruning the
    listed properties; array items are pruned by ``items``. At the resource root (and at
    ``x-kubernetes-embedded-resource`` nodes) ``apiVersion``, ``kind`` and ``metadata`` are kept
    untouched: metadata is the server's business, not the CR schema's.
    ``x-kubernetes-int-or-string`` nodes are leaves. Then, as the apiserver's decoder does before
    defaulting (``PruneNonNullableNullsWithoutDefaults``), a ``null`` under an object key whose
    schema is not ``nullable`` and has no ``default`` is dropped (a null *array item* is kept, and
    rejected by validation). ``default`` values are not applied: our CRDs have none.

``validate(obj, schema, old=None)``
    1. The OpenAPI keywords, with kube-openapi's semantics and messages: ``type`` (int-or-string is
       ``integer,string``; ``null`` only if ``nullable``), ``format`` ``date-time``/``date``,
       ``enum``, ``minimum``/``maximum`` (boolean ``exclusive*``; an integer value is compared with
       the bound truncated to an integer, as Go does), ``multipleOf``, ``minLength``/``maxLength``/
       ``pattern`` (first failure only), ``minItems``/``maxItems``, ``minProperties``/
       ``maxProperties`` (a failure skips the object's children), ``required``, ``items``,
       ``properties``, ``additionalProperties``, ``anyOf``/``allOf``/``oneOf``/``not`` (their
       summary error has no field: ``<nil>``). Messages are apimachinery's ``ErrorBody`` of the
       newest releases, e.g. ``Invalid value: 150: spec.x in body should be less than or equal to
       100``, ``Required value``, ``Unsupported value: "X": supported values: "A", "B"``,
       ``Too long: may not be more than 63 bytes``, ``Too many: 101: must have at most 100 items``,
       ``Invalid value: "string": spec.replicas in body must be of type integer: "string"``.
    2. ``x-kubernetes-list-type: set|map``: duplicates are ``Duplicate value`` (on an update only
       if the old object had none, as the apiserver does).
    3. If any error so far is a type, required, enum, too-long or too-many error, no CEL rule runs
       and a ``<nil>`` cause says "some validation rules were not checked ...", as the apiserver
       does. Otherwise every ``x-kubernetes-validations`` rule runs at each node present (and not
       null) in the object, with ``self`` as Kubernetes types it: ``type: number`` values are
       doubles, int-or-string values stay int or string, ``date-time``/``date`` strings are
       timestamps, property names are CEL-escaped (``__dash__`` ...), and at the resource root
       ``self.metadata`` only has ``name`` and ``generateName``. A rule using ``oldSelf`` (a
       transition rule) runs only when ``old`` has a value at the correlated path (object keys,
       map keys unless ``x-kubernetes-map-type: atomic``, ``list-type: map`` items by key). A
       false rule is ``Invalid value: <value>: <message>`` at the node (or its ``fieldPath``),
       with the value omitted for objects and arrays, or ``Forbidden``/``Required value``/
       ``Duplicate value`` per its ``reason``; ``messageExpression`` is used when it yields a valid
       message. A rule that errors at runtime is ``Invalid value: "<schema type>": <error>
       evaluating rule: <message or rule>`` at the node (cel-go's error texts are approximated).
    4. On an update (``old`` given) errors are ratcheted as in Kubernetes >= 1.30
       (``CRDValidationRatcheting``): schema errors and non-transition rule failures inside a part
       of the object that is unchanged from its correlated old value are dropped.

Compiled CEL programs are cached by rule text; outcomes are memoised by (rule, the node's type
shape, canonical JSON of ``self``/``oldSelf``): rules are pure, and the same specs are written
again and again (every status update carries the spec).

Not emulated: the CEL cost budget, ``optionalOldSelf`` (such rules behave as plain transition
rules), formats other than ``date-time``/``date``, CEL typing of ``format: duration``/``byte``,
``default`` values, ObjectMeta validation of embedded resources, and CEL's compile-time type
checking (the apiserver refuses such a CRD; here a rule that would not type-check fails at
runtime). Patterns use Python's ``re``, not Go's RE2 (same answer for the patterns we use).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, TypeGuard

import celpy
import celpy.celtypes as celtypes
from celpy.evaluation import CELEvalError

__all__ = ["Cause", "compiled_rule_count", "prune", "unknown_fields", "validate"]


@dataclass(frozen=True)
class Cause:
    """One entry of a Status body's ``details.causes``."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"


# --- apimachinery field errors ----------------------------------------------------------------

INVALID: Final = "FieldValueInvalid"
REQUIRED: Final = "FieldValueRequired"
NOT_SUPPORTED: Final = "FieldValueNotSupported"
TYPE_INVALID: Final = "FieldValueTypeInvalid"
TOO_LONG: Final = "FieldValueTooLong"
TOO_MANY: Final = "FieldValueTooMany"
DUPLICATE: Final = "FieldValueDuplicate"
FORBIDDEN: Final = "FieldValueForbidden"

_LABELS: Final = {
    INVALID: "Invalid value",
    REQUIRED: "Required value",
    NOT_SUPPORTED: "Unsupported value",
    TYPE_INVALID: "Invalid value",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    DUPLICATE: "Duplicate value",
    FORBIDDEN: "Forbidden",
}
# apiextensions' strategy.go hasBlockingErr: these keep CEL rules from running.
_BLOCKING: Final = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})
_NOT_CHECKED: Final = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


class _Omit:
    """``field.OmitValueType``: the error body shows no value."""


_OMIT: Final = _Omit()
_ABSENT: Final[Any] = object()  # no correlated old value


@dataclass(frozen=True)
class _Err:
    type: str
    field: str  # a field.Path string; "" is the nil path
    value: Any
    detail: str = ""

    def cause(self) -> Cause:
        if self.type in (REQUIRED, FORBIDDEN, TOO_LONG) or isinstance(self.value, _Omit):
            body = _LABELS[self.type]
        else:
            body = f"{_LABELS[self.type]}: {_go_value(self.value)}"
        if self.detail:
            body += f": {self.detail}"
        return Cause(self.field or "<nil>", body, self.type)


def _go_float(f: float) -> str:
    """Go's ``%v`` of a float64: shortest digits, exponent form below 1e-4 and from 1e+06 on."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(f)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # digits[:point] is the integer part
    minus = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{minus}{digits}{'0' * (point - len(digits))}"
    return f"{minus}{digits[:point]}.{digits[point:]}"


def _go_quote(s: str) -> str:
    """Go's ``strconv.Quote``."""
    out = ['"']
    escapes = {
        '"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n",
        "\r": "\\r", "\t": "\\t", "\v": "\\v",
    }  # fmt: skip
    for ch in s:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def _go_value(value: Any) -> str:
    """How ``field.Error.ErrorBody`` prints a bad value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return _go_quote(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- JSON helpers ------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _json_equal(a: Any, b: Any) -> bool:
    """Go's ``reflect.DeepEqual`` on decoded JSON: 1, 1.0 and true all differ."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- pruning ---------------------------------------------------------------------------------

_META_FIELDS: Final = ("apiVersion", "kind", "metadata")


def prune(obj: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Structural pruning, as the apiserver does for CRs: drop fields not in the schema.

    Returns a new dict; ``obj`` is not modified. Non-nullable nulls under object keys are dropped
    too (the apiserver does so while decoding, before defaulting).
    """
    pruned = _prune(obj, schema, resource_root=True)
    if not isinstance(pruned, dict):  # pragma: no cover - obj is a dict
        raise TypeError("a custom resource is a JSON object")
    _prune_nulls(pruned, schema)
    return pruned


def _prune(
    x: Any, s: Mapping[str, Any] | None, resource_root: bool = False, keep_unknown: bool = False
) -> Any:
    """The apiserver's ``prune`` and ``skipPrune`` in one walk.

    Below ``x-kubernetes-preserve-unknown-fields`` (``keep_unknown``, carried into array items)
    keys the schema does not know stay and a missing schema keeps everything; elsewhere they go.
    Known keys are pruned by their own schema either way.
    """
    keep_unknown = keep_unknown or (
        s is not None and bool(s.get("x-kubernetes-preserve-unknown-fields"))
    )
    if (s is None and keep_unknown) or (s is not None and s.get("x-kubernetes-int-or-string")):
        return copy.deepcopy(x)
    if isinstance(x, dict):
        if s is None:
            return {}
        props: Mapping[str, Any] = s.get("properties") or {}
        extra = s.get("additionalProperties")
        embedded = resource_root or bool(s.get("x-kubernetes-embedded-resource"))
        out: dict[str, Any] = {}
        for k, v in x.items():
            if embedded and k in _META_FIELDS:
                out[k] = copy.deepcopy(v)
            elif k in props:
                out[k] = _prune(v, props[k])
            elif isinstance(extra, Mapping):
                out[k] = _prune(v, extra)
            elif keep_unknown:
                out[k] = copy.deepcopy(v)
            elif extra is True:
                out[k] = _prune(v, None)
        return out
    if isinstance(x, list):
        items = s.get("items") if s is not None else None
        schema = items if isinstance(items, Mapping) else None
        return [_prune(v, schema, keep_unknown=keep_unknown) for v in x]
    return x


def unknown_fields(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The paths ``prune`` would drop as unknown (``spec.foo``, ``spec.steps[0].bar``).

    What the apiserver reports for ``fieldValidation=Strict`` (a 400 ``strict decoding error:
    unknown field "spec.foo"``) or ``Warn`` (a ``Warning`` header per field). The same walk as
    ``_prune``; ``metadata`` at a resource root is ObjectMeta's business, not checked here.
    """
    found: list[str] = []
    _unknown(obj, schema, "", found, resource_root=True)
    return found


def _unknown(
    x: Any,
    s: Mapping[str, Any] | None,
    path: str,
    found: list[str],
    resource_root: bool = False,
    keep_unknown: bool = False,
) -> None:
    keep_unknown = keep_unknown or (
        s is not None and bool(s.get("x-kubernetes-preserve-unknown-fields"))
    )
    if (s is None and keep_unknown) or (s is not None and s.get("x-kubernetes-int-or-string")):
        return
    if isinstance(x, dict):
        props: Mapping[str, Any] = (s or {}).get("properties") or {}
        extra = (s or {}).get("additionalProperties")
        embedded = resource_root or bool((s or {}).get("x-kubernetes-embedded-resource"))
        for k, v in x.items():
            where = f"{path}.{k}" if path else k
            if embedded and k in _META_FIELDS:
                continue
            if s is not None and k in props:
                _unknown(v, props[k], where, found)
            elif s is not None and isinstance(extra, Mapping):
                _unknown(v, extra, where, found)
            elif s is not None and keep_unknown:
                continue
            elif s is not None and extra is True:
                _unknown(v, None, where, found)
            else:
                found.append(where)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        schema = items if isinstance(items, Mapping) else None
        for i, v in enumerate(x):
            _unknown(v, schema, f"{path}[{i}]", found, keep_unknown=keep_unknown)


def _field_schema(key: str, s: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if s is None:
        return None
    props = s.get("properties") or {}
    if key in props:
        sub: Mapping[str, Any] = props[key]
        return sub
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _prune_nulls(x: Any, s: Mapping[str, Any] | None) -> None:
    """``PruneNonNullableNullsWithoutDefaults``, in place."""
    if isinstance(x, dict):
        for k in list(x):
            sub = _field_schema(k, s)
            if (
                x[k] is None
                and sub is not None
                and not sub.get("nullable")
                and "default" not in sub
            ):
                del x[k]
            else:
                _prune_nulls(x[k], sub)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for v in x:
            _prune_nulls(v, items if isinstance(items, Mapping) else None)


# --- schema facts, cached per schema object -------------------------------------------------------

_CEL_RESERVED: Final = frozenset(
    "true false null in as break const continue else for function if import let loop package "
    "namespace return".split()
)
_CEL_IDENT: Final = re.compile(r"[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*\Z")


def _cel_escape(name: str) -> str:
    """apiserver/pkg/cel ``Escape`` for property names (unescapable names are left as they are)."""
    if name in _CEL_RESERVED:
        return f"__{name}__"
    if not _CEL_IDENT.match(name):
        return name
    return (
        name.replace("__", "__underscores__")
        .replace(".", "__dot__")
        .replace("-", "__dash__")
        .replace("/", "__slash__")
    )


_STRING_LITERAL: Final = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")
_OLD_SELF: Final = re.compile(r"\boldSelf\b")


@dataclass(frozen=True)
class _Rule:
    rule: str
    message: str
    message_expression: str
    field_path: str  # normalized, "" for none
    reason: str
    uses_old_self: bool

    @property
    def error_string(self) -> str:
        """``ruleErrorString``: the message, or else the rule."""
        return self.message.strip() or self.rule.strip()

    @property
    def default_message(self) -> str:
        """``ruleMessageOrDefault``."""
        return self.message.strip() or f"failed rule: {self.rule.strip()}"


@dataclass
class _Node:
    rules: tuple[_Rule, ...]
    rules_below: bool  # this node or a descendant has rules
    lists_below: bool  # this node or a descendant has x-kubernetes-list-type set or map
    signature: str  # the node's shape as CEL sees it, for the outcome cache


class _SchemaFacts:
    """Per-node facts of one schema, computed once; the schema is held so ids stay unique."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.nodes: dict[int, _Node] = {}
        self._build(schema, resource_root=True)

    def node(self, s: Mapping[str, Any]) -> _Node:
        return self.nodes[id(s)]

    def _build(self, s: Mapping[str, Any], resource_root: bool = False) -> _Node:
        if id(s) in self.nodes:
            return self.nodes[id(s)]
        children: list[_Node] = []
        shape: dict[str, Any] = {
            "t": s.get("type", ""),
            "f": s.get("format", ""),
            "i": bool(s.get("x-kubernetes-int-or-string")),
            "u": bool(s.get("x-kubernetes-preserve-unknown-fields")),
            "r": resource_root or bool(s.get("x-kubernetes-embedded-resource")),
        }
        props = s.get("properties") or {}
        if props:
            shape["p"] = {}
            for name, sub in props.items():
                child = self._build(sub, bool(sub.get("x-kubernetes-embedded-resource")))
                children.append(child)
                shape["p"][name] = child.signature
        extra = s.get("additionalProperties")
        if isinstance(extra, Mapping):
            child = self._build(extra, bool(extra.get("x-kubernetes-embedded-resource")))
            children.append(child)
            shape["a"] = child.signature
        items = s.get("items")
        if isinstance(items, Mapping):
            child = self._build(items, bool(items.get("x-kubernetes-embedded-resource")))
            children.append(child)
            shape["n"] = child.signature
        rules = tuple(_make_rule(r, s) for r in _node_rules(s))
        node = _Node(
            rules=rules,
            rules_below=bool(rules) or any(c.rules_below for c in children),
            lists_below=s.get("x-kubernetes-list-type") in ("set", "map")
            or any(c.lists_below for c in children),
            signature=_canonical(shape),
        )
        self.nodes[id(s)] = node
        return node


def _node_rules(s: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The node's rules and those of its ``allOf`` entries (evaluated at the same node)."""
    yield from s.get("x-kubernetes-validations") or []
    for sub in s.get("allOf") or []:
        if isinstance(sub, Mapping):
            yield from _node_rules(sub)


def _make_rule(raw: Mapping[str, Any], s: Mapping[str, Any]) -> _Rule:
    text = str(raw.get("rule", ""))
    return _Rule(
        rule=text,
        message=str(raw.get("message") or ""),
        message_expression=str(raw.get("messageExpression") or ""),
        field_path=_normalize_field_path(str(raw.get("fieldPath") or ""), s),
        reason=str(raw.get("reason") or INVALID),
        uses_old_self=bool(_OLD_SELF.search(_STRING_LITERAL.sub("", text))),
    )


_PATH_TOKEN: Final = re.compile(r"\.([^.\[\]]+)|\[\s*'((?:\\.|[^'\\])*)'\s*\]")


def _normalize_field_path(json_path: str, s: Mapping[str, Any]) -> str:
    """``ValidFieldPath(...).String()``: ``.a['b.c']`` on a map is ``a[b.c]``."""
    if not json_path:
        return ""
    out = ""
    node: Mapping[str, Any] | None = s
    pos = 0
    while pos < len(json_path):
        match = _PATH_TOKEN.match(json_path, pos)
        if match is None or node is None:
            return json_path.lstrip(".")  # the apiserver would have refused this CRD
        name = match.group(1) if match.group(1) is not None else re.sub(r"\\(.)", r"\1", match[2])
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if name in props:
            out = f"{out}.{name}" if out else name
            node = props[name]
        elif isinstance(extra, Mapping):
            out = f"{out}[{name}]"
            node = extra
        else:
            return json_path.lstrip(".")
        pos = match.end()
    return out


_FACTS: OrderedDict[int, _SchemaFacts] = OrderedDict()
_FACTS_SIZE: Final = 64


# The sandbox serves each connection on its own thread: the caches below change under this lock.
_LOCK: Final = threading.Lock()


def _facts(schema: Mapping[str, Any]) -> _SchemaFacts:
    with _LOCK:
        facts = _FACTS.get(id(schema))
        if facts is not None and facts.schema is schema:
            _FACTS.move_to_end(id(schema))
            return facts
        facts = _SchemaFacts(schema)
        _FACTS[id(schema)] = facts
        while len(_FACTS) > _FACTS_SIZE:
            _FACTS.popitem(last=False)
        return facts


# --- OpenAPI validation (kube-openapi) ----------------------------------------------------------


def _type_error(path: str, expected: str, actual: str) -> _Err:
    detail = f"{path} in body must be of type {expected}: {_go_quote(actual)}"
    return _Err(TYPE_INVALID, _field(path), actual, detail)


def _field(name: str) -> str:
    """kube-openapi error name -> field path (``fldPath.Child(TrimPrefix(name, "."))``)."""
    if not name or name == ".":
        return ""
    return name[1:] if name.startswith(".") else name


def _invalid(path: str, value: Any, message: str) -> _Err:
    return _Err(INVALID, _field(path), value, f"{path} in body {message}")


def _composite(message: str) -> _Err:
    return _Err(INVALID, "", "", message)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str] | str:
    try:
        return re.compile(pattern)
    except re.error as error:
        return str(error)


_DATE: Final = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_TIME: Final = re.compile(r"(\d{2}):(\d{2}):(\d{2})(\.\d+)?(z|[+-]\d{2}:\d{2})\Z")


def _is_date(text: str) -> bool:
    match = _DATE.match(text)
    if match is None:
        return False
    try:
        datetime(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return False
    return True


def _is_date_time(text: str) -> bool:
    """strfmt ``IsDateTime``: RFC 3339 with a ``T`` (any case) and a zone."""
    parts = text.lower().split("t")
    if len(parts) != 2 or not _is_date(parts[0]):
        return False
    match = _TIME.match(parts[1])
    return match is not None and match[1] <= "23" and match[2] <= "59" and match[3] <= "59"


_FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    "date-time": _is_date_time,
    "datetime": _is_date_time,
    "date": _is_date,
}


def _bound(value: int | float, bound: float) -> tuple[int | float, str]:
    """The bound as kube-openapi compares and prints it for this value's Go type."""
    if isinstance(value, int):
        whole = int(bound)  # Go's int64(float64): truncation
        return whole, str(whole)
    return float(bound), _go_float(float(bound))


def _enum_equal(value: Any, allowed: Any) -> bool:
    if _is_number(value) and _is_number(allowed):
        return bool(value == allowed)
    return _json_equal(value, allowed)


class _OpenAPI:
    """kube-openapi's SchemaValidator over one object, with ratcheting against ``old``."""

    def __init__(self) -> None:
        self.errors: list[_Err] = []

    def check(self, value: Any, s: Mapping[str, Any], path: str, old: Any = _ABSENT) -> None:
        if old is not _ABSENT and _json_equal(value, old):
            return  # ratcheting: an unchanged part keeps its (old) errors to itself
        errors = self.errors
        types = (
            ["integer", "string"]
            if s.get("x-kubernetes-int-or-string")
            else ([str(s["type"])] if s.get("type") else [])
        )
        if value is None:
            if types and "null" not in types and not s.get("nullable"):
                errors.append(_type_error(path, ",".join(types), "null"))
            self._enum(value, s, path)
            return
        actual = _json_type(value)
        fmt = str(s.get("format") or "")
        if types:
            numeric = "number" in types or "integer" in types
            float_int = actual == "number" and float(value).is_integer() and "integer" in types
            int_float = actual == "integer" and "number" in types
            # kube-openapi's typeValidator lets any string or array through a formatted
            # non-numeric type; it is lenient, so are we.
            if not (not numeric and fmt and actual in ("string", "array")) and not (
                actual in types or float_int or int_float
            ):
                errors.append(_type_error(path, ",".join(types), actual))
        self._combinators(value, s, path)
        if isinstance(value, str):
            self._string(value, s, path)
            check_format = _FORMATS.get(fmt)
            if check_format is not None and not check_format(value):
                errors.append(
                    _Err(
                        TYPE_INVALID,
                        _field(path),
                        value,
                        f"{path} in body must be of type {fmt}: {_go_quote(value)}",
                    )
                )
        elif _is_number(value):
            self._number(value, s, path)
        elif isinstance(value, list):
            self._array(value, s, path, old)
        self._enum(value, s, path)
        if isinstance(value, dict):
            self._object(value, s, path, old)

    def _enum(self, value: Any, s: Mapping[str, Any], path: str) -> None:
        allowed = s.get("enum")
        if not allowed or any(_enum_equal(value, a) for a in allowed):
            return
        shown = [a if isinstance(a, str) else _canonical(a) for a in allowed]
        self.errors.append(
            _Err(
                NOT_SUPPORTED,
                _field(path),
                value,
                "supported values: " + ", ".join(_go_quote(v) for v in shown),
            )
        )

    def _string(self, value: str, s: Mapping[str, Any], path: str) -> None:
        if "maxLength" in s and len(value) > int(s["maxLength"]):
            most = int(s["maxLength"])
            unit = "byte" if most == 1 else "bytes"
            self.errors.append(
                _Err(TOO_LONG, _field(path), value, f"may not be more than {most} {unit}")
            )
        elif "minLength" in s and len(value) < int(s["minLength"]):
            least = int(s["minLength"])
            self.errors.append(_invalid(path, value, f"should be at least {least} chars long"))
        elif "pattern" in s:
            regex = _regex(str(s["pattern"]))
            if isinstance(regex, str):
                message = f"{s['pattern']}, but pattern is invalid: {regex}"
                self.errors.append(_invalid(path, value, f"should match '{message}'"))
            elif regex.search(value) is None:
                self.errors.append(_invalid(path, value, f"should match '{s['pattern']}'"))

    def _number(self, value: int | float, s: Mapping[str, Any], path: str) -> None:
        factor = s.get("multipleOf")
        if _is_number(factor) and factor > 0:
            if isinstance(value, int) and int(factor) == factor:
                multiple = value % int(factor) == 0
            else:
                ratio = (1 / factor) * value if factor < 1 else value / factor
                multiple = float(ratio).is_integer()
            if not multiple:
                shown = str(int(factor)) if isinstance(value, int) else _go_float(float(factor))
                self.errors.append(_invalid(path, value, f"should be a multiple of {shown}"))
        if _is_number(s.get("maximum")):
            bound, shown = _bound(value, s["maximum"])
            if s.get("exclusiveMaximum"):
                if value >= bound:
                    self.errors.append(_invalid(path, value, f"should be less than {shown}"))
            elif value > bound:
                message = f"should be less than or equal to {shown}"
                self.errors.append(_invalid(path, value, message))
        if _is_number(s.get("minimum")):
            bound, shown = _bound(value, s["minimum"])
            if s.get("exclusiveMinimum"):
                if value <= bound:
                    self.errors.append(_invalid(path, value, f"should be greater than {shown}"))
            elif value < bound:
                message = f"should be greater than or equal to {shown}"
                self.errors.append(_invalid(path, value, message))

    def _array(self, value: list[Any], s: Mapping[str, Any], path: str, old: Any) -> None:
        items = s.get("items")
        if isinstance(items, Mapping):
            olds = _correlate_items(value, old, s) if old is not _ABSENT else None
            for i, item in enumerate(value):
                self.check(item, items, f"{path}[{i}]", olds[i] if olds else _ABSENT)
        if "minItems" in s and len(value) < int(s["minItems"]):
            least = int(s["minItems"])
            self.errors.append(_invalid(path, len(value), f"should have at least {least} items"))
        if "maxItems" in s and len(value) > int(s["maxItems"]):
            most = int(s["maxItems"])
            self.errors.append(_too_many(_field(path), len(value), most))
        if s.get("uniqueItems"):
            seen: list[Any] = []
            for item in value:
                if any(_json_equal(item, other) for other in seen):
                    self.errors.append(_Err(INVALID, _field(path), "", _no_duplicates(path)))
                    break
                seen.append(item)

    def _object(self, value: dict[str, Any], s: Mapping[str, Any], path: str, old: Any) -> None:
        count = len(value)
        if "minProperties" in s and count < int(s["minProperties"]):
            least = int(s["minProperties"])
            message = f"should have at least {least} properties"
            self.errors.append(_invalid(path, count, message))
            return
        if "maxProperties" in s and count > int(s["maxProperties"]):
            self.errors.append(_too_many(_field(path), count, int(s["maxProperties"])))
            return
        props: Mapping[str, Any] = s.get("properties") or {}
        extra = s.get("additionalProperties")
        old_map = old if isinstance(old, dict) else None
        root = path == ""
        for key, sub in value.items():
            if key in props:
                continue
            if isinstance(extra, Mapping):
                self.check(sub, extra, f"{path}.{key}", _old_key(old_map, key, root))
            elif extra is False:
                self.errors.append(
                    _Err(
                        INVALID, _field(path), key, f"{path}.{key} in body is a forbidden property"
                    )
                )
        for key, sub_schema in props.items():
            if key in value:
                child = key if root else f"{path}.{key}"
                self.check(value[key], sub_schema, child, _old_key(old_map, key, root))
        for key in s.get("required") or []:
            if key not in value:
                self.errors.append(_Err(REQUIRED, _field(f"{path}.{key}"), ""))

    def _combinators(self, value: Any, s: Mapping[str, Any], path: str) -> None:
        quoted = _go_quote(path)
        any_of = s.get("anyOf") or []
        if any_of:
            results = [_branch(value, sub, path) for sub in any_of]
            if all(results):
                self.errors.append(
                    _composite(f"{quoted} must validate at least one schema (anyOf)")
                )
                self.errors.extend(_best_failure(results))
        one_of = s.get("oneOf") or []
        if one_of:
            results = [_branch(value, sub, path) for sub in one_of]
            valid = sum(1 for r in results if not r)
            if valid != 1:
                found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                message = f"{quoted} must validate one and only one schema (oneOf). {found}"
                self.errors.append(_composite(message))
                if valid == 0:
                    self.errors.extend(_best_failure(results))
        all_of = s.get("allOf") or []
        if all_of:
            results = [_branch(value, sub, path) for sub in all_of]
            for result in results:
                self.errors.extend(result)
            valid = sum(1 for r in results if not r)
            if valid != len(results):
                none = ". None validated" if valid == 0 else ""
                self.errors.append(
                    _composite(f"{quoted} must validate all the schemas (allOf){none}")
                )
        not_schema = s.get("not")
        if isinstance(not_schema, Mapping) and not _branch(value, not_schema, path):
            self.errors.append(_composite(f"{quoted} must not validate the schema (not)"))


def _best_failure(results: list[list[_Err]]) -> list[_Err]:
    """kube-openapi keeps the failed branch with the most passed checks; we take the fewest
    errors (the first on a tie)."""
    return min(results, key=len)


def _branch(value: Any, s: Mapping[str, Any], path: str) -> list[_Err]:
    sub = _OpenAPI()
    sub.check(value, s, path)
    return sub.errors


def _no_duplicates(path: str) -> str:
    return f"{path} in body shouldn't contain duplicates"


def _too_many(field: str, actual: int, most: int) -> _Err:
    unit = "item" if most == 1 else "items"
    return _Err(TOO_MANY, field, actual, f"must have at most {most} {unit}")


def _old_key(old_map: dict[str, Any] | None, key: str, root: bool) -> Any:
    if old_map is None or key not in old_map or (root and key in ("apiVersion", "kind")):
        return _ABSENT
    return old_map[key]


def _correlate_items(value: list[Any], old: Any, s: Mapping[str, Any]) -> list[Any] | None:
    """Old items correlated with ``value``'s by index: list-type map by key, set by value."""
    if not isinstance(old, list):
        return None
    list_type = s.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = list(s.get("x-kubernetes-list-map-keys") or [])
        by_key: dict[str, Any] = {}
        for item in old:
            if isinstance(item, dict):
                by_key.setdefault(_canonical([item.get(k) for k in keys]), item)
        return [
            by_key.get(_canonical([v.get(k) for k in keys]), _ABSENT)
            if isinstance(v, dict)
            else _ABSENT
            for v in value
        ]
    if list_type == "set":
        return [next((o for o in old if _json_equal(o, v)), _ABSENT) for v in value]
    return None


# --- x-kubernetes-list-type ----------------------------------------------------------------------


def _list_errors(value: Any, s: Mapping[str, Any], facts: _SchemaFacts, path: str) -> list[_Err]:
    """``ValidateListSetsAndMaps``: duplicates in sets and map-lists (field.Path style paths)."""
    if not facts.node(s).lists_below:
        return []
    errors: list[_Err] = []
    if isinstance(value, list):
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            for i, item in enumerate(value):
                if any(_json_equal(item, other) for other in value[:i]):
                    errors.append(_Err(DUPLICATE, f"{path}[{i}]", item))
        elif list_type == "map":
            keys = list(s.get("x-kubernetes-list-map-keys") or [])
            seen: set[str] = set()
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key_values = {k: item.get(k) for k in keys if k in item}
                key = _canonical(key_values)
                if key in seen:
                    errors.append(_Err(DUPLICATE, f"{path}[{i}]", key_values))
                seen.add(key)
        items = s.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                errors += _list_errors(item, items, facts, f"{path}[{i}]")
    elif isinstance(value, dict):
        props: Mapping[str, Any] = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                errors += _list_errors(sub, props[key], facts, f"{path}.{key}" if path else key)
            elif isinstance(extra, Mapping):
                errors += _list_errors(sub, extra, facts, f"{path}[{key}]")
    return errors


# --- CEL ------------------------------------------------------------------------------------------

_ENV: Final = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}  # rule text -> celpy program, or the compile error's text


def compiled_rule_count() -> int:
    """How many distinct rule texts have been compiled (the program cache's size)."""
    return len(_PROGRAMS)


def _program(text: str) -> Any:
    with _LOCK:
        program = _PROGRAMS.get(text)
        if program is None:
            try:
                program = _ENV.program(_ENV.compile(text))
            except Exception as error:  # celpy's parse errors have no common base
                program = " ".join(str(error).split()) or type(error).__name__
            _PROGRAMS[text] = program
        return program


@dataclass(frozen=True)
class _Outcome:
    passed: bool
    error: str = ""  # a runtime error: the rule neither passed nor failed
    message: str = ""  # from messageExpression, when it gave a usable one


# (rule, messageExpression, schema node, embedded root, digest of self, digest of oldSelf).
# Values are kept as SHA-256 digests of their canonical JSON, not the JSON itself, so that the
# cache can hold every rule-bearing subtree of ~10,000 objects (a Rollout status PATCH
# re-validates its unchanged spec: with a cache smaller than the objects' subtrees it evicted
# and re-evaluated through celpy, making each write cost grow with the number of objects)
# in tens of MiB.
_OutcomeKey = tuple[str, str, str, bool, bytes, bytes]
_OUTCOMES: OrderedDict[_OutcomeKey, _Outcome] = OrderedDict()
_OUTCOMES_SIZE: Final = 262_144
_MAX_MESSAGE_BYTES: Final = 5 * 1024


def _cel_error_text(error: BaseException) -> str:
    """celpy's error, worded as cel-go would (roughly)."""
    args: tuple[Any, ...] = tuple(getattr(error, "args", ()))
    text = str(args[0]) if args else str(error)
    member = re.match(r"no such member in mapping: '?(.*?)'?\Z", text)
    if member:
        return f"no such key: {member[1]}"
    if "no matching overload" in text or text.startswith("no such overload"):
        return "no such overload"
    if text == "modulus or divide by zero":
        return "division by zero"
    if len(args) > 1 and args[1] is IndexError:
        return "index out of range"
    return " ".join(text.split())


def _evaluate(program: Any, activation: dict[str, Any]) -> tuple[Any, str]:
    try:
        result = program.evaluate(activation)
    except CELEvalError as error:
        return None, _cel_error_text(error)
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        return None, " ".join(str(error).split()) or type(error).__name__
    if isinstance(result, CELEvalError):
        return None, _cel_error_text(result)
    return result, ""


def _timestamp(text: str, date_only: bool) -> Any:
    try:
        if date_only:
            return celtypes.TimestampType(datetime.fromisoformat(text).replace(tzinfo=UTC))
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return celtypes.StringType(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return celtypes.TimestampType(parsed)


def _to_cel(value: Any, s: Mapping[str, Any] | None, resource_root: bool = False) -> Any:
    """``UnstructuredToVal``: the value as CEL sees it, typed by its schema."""
    if value is None:
        return None
    kind = s.get("type") if s is not None else None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.DoubleType(float(value)) if kind == "number" else celtypes.IntType(value)
    if isinstance(value, float):
        if kind == "integer" and value.is_integer():
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        fmt = s.get("format") if s is not None and kind == "string" else None
        if fmt in ("date-time", "datetime", "date"):
            return _timestamp(value, fmt == "date")
        return celtypes.StringType(value)
    if isinstance(value, list):
        items = s.get("items") if s is not None else None
        item_schema = items if isinstance(items, Mapping) else None
        embedded = item_schema is not None and bool(
            item_schema.get("x-kubernetes-embedded-resource")
        )
        return celtypes.ListType([_to_cel(v, item_schema, embedded) for v in value])
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        props: Mapping[str, Any] = (s.get("properties") or {}) if s is not None else {}
        extra = s.get("additionalProperties") if s is not None else None
        embedded = resource_root or (
            s is not None and bool(s.get("x-kubernetes-embedded-resource"))
        )
        for key, sub in value.items():
            if embedded and key == "metadata":
                meta = sub if isinstance(sub, dict) else {}
                out[celtypes.StringType("metadata")] = celtypes.MapType(
                    {
                        celtypes.StringType(k): celtypes.StringType(str(meta[k]))
                        for k in ("name", "generateName")
                        if isinstance(meta.get(k), str)
                    }
                )
            elif embedded and key in ("apiVersion", "kind") and key not in props:
                out[celtypes.StringType(key)] = celtypes.StringType(str(sub))
            elif key in props:
                child = props[key]
                out[celtypes.StringType(_cel_escape(key))] = _to_cel(
                    sub, child, bool(child.get("x-kubernetes-embedded-resource"))
                )
            elif isinstance(extra, Mapping):
                out[celtypes.StringType(key)] = _to_cel(
                    sub, extra, bool(extra.get("x-kubernetes-embedded-resource"))
                )
            else:
                out[celtypes.StringType(key)] = _to_cel(sub, None)
        return celtypes.MapType(out)
    return value


@dataclass(frozen=True)
class _Ratchet:
    """``ratchetingOptions``: the correlated old value (``_ABSENT`` if none) and whether the
    nearest correlated ancestor is unchanged (what counts when there is no correlated value)."""

    old: Any = _ABSENT
    parent_unchanged: bool = False

    def unchanged(self, value: Any) -> bool:
        if self.old is not _ABSENT:
            return _json_equal(value, self.old)
        return self.parent_unchanged


_NO_RATCHET: Final = _Ratchet()


class _Cel:
    """The CEL validator's walk (apiextensions ``cel.Validator``)."""

    def __init__(self, facts: _SchemaFacts) -> None:
        self.facts = facts
        self.errors: list[_Err] = []

    def walk(
        self,
        value: Any,
        s: Mapping[str, Any],
        path: str,
        old: Any,
        ratchet: _Ratchet,
        resource_root: bool = False,
    ) -> None:
        node = self.facts.node(s)
        if value is None or not node.rules_below:
            return
        # Computed once per node: its children's ratcheting falls back on it.
        unchanged = ratchet.unchanged(value)
        if node.rules:
            self._rules(value, s, node, path, old, unchanged, resource_root)
        if isinstance(value, dict):
            props: Mapping[str, Any] = s.get("properties") or {}
            extra = s.get("additionalProperties")
            correlatable = s.get("x-kubernetes-map-type") in (None, "granular")
            old_map = old if correlatable and isinstance(old, dict) else {}
            ratchet_map = ratchet.old if isinstance(ratchet.old, dict) else {}
            for key, sub in value.items():
                if key in props:
                    child_schema = props[key]
                    child_path = f"{path}.{key}" if path else key
                elif isinstance(extra, Mapping):
                    child_schema = extra
                    child_path = f"{path}[{key}]"
                else:
                    continue
                if ratchet.old is _ABSENT:
                    child_ratchet = ratchet
                elif resource_root and key in ("apiVersion", "kind"):
                    child_ratchet = _NO_RATCHET
                else:
                    child_ratchet = _Ratchet(ratchet_map.get(key, _ABSENT), unchanged)
                self.walk(
                    sub,
                    child_schema,
                    child_path,
                    old_map.get(key, _ABSENT),
                    child_ratchet,
                    bool(child_schema.get("x-kubernetes-embedded-resource")),
                )
        elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
            items: Mapping[str, Any] = s["items"]
            # Only map-lists correlate items for oldSelf; ratcheting also correlates sets.
            olds = (
                _correlate_items(value, old, s)
                if s.get("x-kubernetes-list-type") == "map"
                else None
            )
            ratchet_olds = (
                _correlate_items(value, ratchet.old, s) if ratchet.old is not _ABSENT else None
            )
            for i, item in enumerate(value):
                if ratchet.old is _ABSENT:
                    child_ratchet = ratchet
                else:
                    child_old = ratchet_olds[i] if ratchet_olds else _ABSENT
                    child_ratchet = _Ratchet(child_old, unchanged)
                self.walk(
                    item,
                    items,
                    f"{path}[{i}]",
                    olds[i] if olds else _ABSENT,
                    child_ratchet,
                    bool(items.get("x-kubernetes-embedded-resource")),
                )

    def _rules(
        self,
        value: Any,
        s: Mapping[str, Any],
        node: _Node,
        path: str,
        old: Any,
        unchanged: bool,
        resource_root: bool,
    ) -> None:
        schema_type = str(s.get("type") or "")
        has_old = old is not _ABSENT and old is not None
        self_digest = b""
        cel_self: Any = _ABSENT
        cel_old: Any = _ABSENT
        for rule in node.rules:
            program = _program(rule.rule)
            if isinstance(program, str):
                self.errors.append(
                    _Err(INVALID, path, schema_type, f"rule compile error: {program}")
                )
                continue
            if rule.uses_old_self and not has_old:
                continue  # a transition rule needs a value to compare with
            if not self_digest:
                self_digest = _digest(value)
            key = (
                rule.rule,
                rule.message_expression,
                node.signature,
                resource_root,
                self_digest,
                _digest(old) if rule.uses_old_self else b"",
            )
            outcome = _cached(key)
            if outcome is None:
                if cel_self is _ABSENT:
                    cel_self = _to_cel(value, s, resource_root)
                activation = {"self": cel_self}
                if rule.uses_old_self:
                    if cel_old is _ABSENT:
                        cel_old = _to_cel(old, s, resource_root)
                    activation["oldSelf"] = cel_old
                outcome = _run(program, rule, activation)
                _remember(key, outcome)
            if outcome.error:
                if outcome.error.startswith("no such overload"):
                    detail = (
                        f"'{outcome.error}': call arguments did not match a supported operator, "
                        f"function or macro signature for rule: {rule.error_string}"
                    )
                else:
                    detail = f"{outcome.error} evaluating rule: {rule.error_string}"
                self.errors.append(_Err(INVALID, path, schema_type, detail))
                continue
            if outcome.passed:
                continue
            if not rule.uses_old_self and unchanged:
                continue  # ratcheting: the apiserver only warns
            field = path
            if rule.field_path:
                field = f"{path}.{rule.field_path}" if path else rule.field_path
            detail = outcome.message or rule.default_message
            shown = _OMIT if schema_type in ("object", "array") else value
            self.errors.append(_rule_error(rule.reason, field, shown, detail))


def _digest(value: Any) -> bytes:
    """SHA-256 of ``value``'s canonical JSON: equal values, equal digests."""
    return hashlib.sha256(_canonical(value).encode()).digest()


def _cached(key: _OutcomeKey) -> _Outcome | None:
    with _LOCK:
        outcome = _OUTCOMES.get(key)
        if outcome is not None:
            _OUTCOMES.move_to_end(key)
        return outcome


def _remember(key: _OutcomeKey, outcome: _Outcome) -> None:
    with _LOCK:
        _OUTCOMES[key] = outcome
        while len(_OUTCOMES) > _OUTCOMES_SIZE:
            _OUTCOMES.popitem(last=False)


def _run(program: Any, rule: _Rule, activation: dict[str, Any]) -> _Outcome:
    result, error = _evaluate(program, activation)
    if error:
        return _Outcome(passed=False, error=error)
    if isinstance(result, celtypes.BoolType) and bool(result):
        return _Outcome(passed=True)
    message = ""
    if rule.message_expression:
        expression = _program(rule.message_expression)
        if not isinstance(expression, str):
            text, failed = _evaluate(expression, activation)
            if not failed and isinstance(text, str):
                text = text.strip()
                if text and "\n" not in text and len(text.encode()) <= _MAX_MESSAGE_BYTES:
                    message = str(text)
    return _Outcome(passed=False, message=message)


def _rule_error(reason: str, field: str, value: Any, detail: str) -> _Err:
    """``fieldErrorForReason``."""
    if reason == FORBIDDEN:
        return _Err(FORBIDDEN, field, "", detail)
    if reason == REQUIRED:
        return _Err(REQUIRED, field, "", detail)
    if reason == DUPLICATE:
        return _Err(DUPLICATE, field, value)
    return _Err(INVALID, field, value, detail)


# --- validate -------------------------------------------------------------------------------------


def validate(
    obj: dict[str, Any], schema: dict[str, Any], old: dict[str, Any] | None = None
) -> list[Cause]:
    """Schema + CEL validation of an (already pruned) object; ``old`` enables transition rules
    (``oldSelf``) and ratcheting. No causes means the apiserver would accept the object."""
    facts = _facts(schema)
    openapi = _OpenAPI()
    openapi.check(obj, schema, "", _ABSENT if old is None else old)
    errors = openapi.errors
    if old is None or not _list_errors(old, schema, facts, ""):
        errors += _list_errors(obj, schema, facts, "")
    if any(e.type in _BLOCKING for e in errors):
        errors.append(_Err(INVALID, "", None, _NOT_CHECKED))
    else:
        cel = _Cel(facts)
        cel.walk(
            obj,
            schema,
            "",
            _ABSENT if old is None else old,
            _NO_RATCHET if old is None else _Ratchet(old),
            resource_root=True,
        )
        errors += cel.errors
    return [e.cause() for e in errors]
