"""Durations as users write them: ``30s``, ``2m``, ``1h30m``, or an integer number of seconds.

A ``Duration`` field holds whole seconds (``int``). The JSON schema says int-or-string with a
pattern that Kubernetes' RE2 engine accepts, so the CRD rejects what this parser rejects.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

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


Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
        }
    ),
]
