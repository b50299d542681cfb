"""PromQL templates: ``{{...}}`` variables are substituted as text, never evaluated.

Known variables: ``args.<name>``, ``namespace``, ``rollout``, ``canary.revision``,
``stable.revision``, ``interval``. An unknown variable is an error, never an empty string.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
BUILTIN_VARIABLES = frozenset(
    {"namespace", "rollout", "canary.revision", "stable.revision", "interval"}
)


class UnknownVariable(ValueError):
    """A template names a variable that is neither a declared arg nor a built-in."""


def variables(query: str) -> list[str]:
    """The variable names used in ``query``, in order of first use."""
    seen: dict[str, None] = {}
    for match in VARIABLE.finditer(query):
        seen.setdefault(match.group(1), None)
    return list(seen)


def unknown_variables(query: str, declared_args: set[str]) -> list[str]:
    """Variables in ``query`` that are neither built-ins nor ``args.<declared>``."""
    unknown = []
    for name in variables(query):
        if name in BUILTIN_VARIABLES:
            continue
        if name.startswith("args.") and name.removeprefix("args.") in declared_args:
            continue
        unknown.append(name)
    return unknown


def render(query: str, values: Mapping[str, str]) -> str:
    """Substitute every variable from ``values`` (keys as written: ``args.service``)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise UnknownVariable(f"unknown template variable {{{{{name}}}}}")
        return values[name]

    return VARIABLE.sub(substitute, query)
