"""Durations as users write them: ``30s``, ``2m``, ``1h30m``, or an integer number of seconds.

A ``Duration`` field holds whole seconds (``int``). The JSON schema says int-or-string with a
pattern that Kubernetes' RE2 engine accepts, so the CRD rejects what this parser rejects. A
field's bounds (``Field(ge=1)``) reach the schema too: ``minimum``/``maximum`` for integers and a
CEL rule for strings, since ``0s`` matches the pattern but is less than one second.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# RE2 has no look-ahead, so "at least one unit" is spelled out as three alternatives.
DURATION_PATTERN = r"^([0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$"
_PARTS = re.compile(r"([0-9]+)([hms])")
_FULL = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> int:
    """Return whole seconds for ``30s``/``2m``/``1h30m``/``45``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 30s, 2m, 1h30m")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        # No surrounding blanks and no bare digits: the CRD's pattern rejects both.
        if _FULL.match(value):
            return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PARTS.findall(value))
    raise ValueError(
        f"invalid duration {value!r}: use whole seconds or a string such as 30s, 2m, 1h30m"
    )


def format_duration(seconds: int) -> str:
    """The shortest ``1h30m``-style spelling of a number of seconds (``0s`` for zero)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


class _DurationJsonSchema:
    """The JSON schema of a Duration, in the only int-or-string form Kubernetes accepts.

    A structural schema allows ``x-kubernetes-int-or-string`` with exactly ``anyOf: [{type:
    integer}, {type: string}]``, so the bounds sit on the node itself, where ``minimum`` and
    ``maximum`` apply to integers only and ``pattern`` to strings only. Bounds set on the field
    (``Field(ge=1)``) are read from the inner integer schema; strings are bounded by a CEL rule.
    """

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        inner = handler(core_schema)
        minimum = int(inner.get("minimum", 0))
        if "exclusiveMinimum" in inner:
            minimum = max(minimum, int(inner["exclusiveMinimum"]) + 1)
        maximum: int | None = inner.get("maximum")
        if "exclusiveMaximum" in inner:
            maximum = int(inner["exclusiveMaximum"]) - 1
        schema: dict[str, Any] = {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": minimum,
        }
        if maximum is not None:
            schema["maximum"] = maximum
        schema["pattern"] = DURATION_PATTERN
        # The pattern is a subset of Go's duration syntax, so Kubernetes' CEL duration() parses it.
        string_rules = []
        if minimum > 0:
            string_rules.append(
                (
                    f"duration(self) >= duration('{minimum}s')",
                    f"at least {format_duration(minimum)}",
                )
            )
        if maximum is not None:
            string_rules.append(
                (f"duration(self) <= duration('{maximum}s')", f"at most {format_duration(maximum)}")
            )
        if string_rules:
            schema["x-kubernetes-validations"] = [
                {"rule": f"type(self) != string || {rule}", "message": f"must be {bound}"}
                for rule, bound in string_rules
            ]
        return schema


Duration = Annotated[int, BeforeValidator(parse_duration), _DurationJsonSchema()]
