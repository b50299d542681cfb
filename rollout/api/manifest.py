"""Parse manifests (plain dicts) into models, reporting every problem with its field path.

``parse_manifest`` is the one entry point used by ``rollout lint`` and the controller: a problem
is a ``Problem(path, message)`` such as ``spec.strategy.canary.steps[2].setWeight: must be
<= 100``, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rollout.api.meta import metadata_problems
from rollout.api.rollout import API_VERSION, Rollout
from rollout.api.semantics import spec_problems, template_problems
from rollout.api.template import AnalysisTemplate

KINDS: dict[str, type[Rollout] | type[AnalysisTemplate]] = {
    "Rollout": Rollout,
    "AnalysisTemplate": AnalysisTemplate,
}


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidManifest(ValueError):
    """A manifest that does not describe a valid resource; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def format_path(loc: Iterable[int | str]) -> str:
    """``("spec", "steps", 2, "setWeight")`` -> ``spec.steps[2].setWeight``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}"
    ctx = error.get("ctx") or {}
    bounds = {
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"must be {symbol} {ctx[key]}, not {error['input']!r}"
    if kind == "too_short":
        return f"needs at least {ctx['min_length']} item(s)"
    if kind == "too_long":
        return f"allows at most {ctx['max_length']} item(s)"
    if kind == "string_pattern_mismatch":
        return f"{error['input']!r} does not match {ctx['pattern']}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def problems_from(error: ValidationError) -> list[Problem]:
    return sorted({Problem(format_path(e["loc"]), _message(e)) for e in error.errors()})


def as_the_server_reads(value: Any) -> Any:
    """``value`` (a manifest's JSON data) as kube-apiserver reads a custom resource, before any
    check: a field set to null is absent (the apiextensions server prunes a null field the schema
    does not mark ``nullable``; ours marks none; in ``metadata``, null labels or annotations are
    none, as ObjectMeta decodes them), and a float with an integral value is an integer (JSON has
    one number type: the schema's ``integer`` accepts ``3.0``, and the stored object says ``3``).
    Items of a list are kept, even null ones (the server refuses those). Pure; returns a copy."""
    if isinstance(value, Mapping):
        return {k: as_the_server_reads(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [as_the_server_reads(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def parse_manifest(doc: Any, *, strict: bool = False) -> Rollout | AnalysisTemplate:
    """Validate ``doc`` as a Rollout or an AnalysisTemplate; raise InvalidManifest.

    ``strict`` (``rollout lint``) also refuses what only the API server would: JSON types
    without coercion (``replicas: "3"`` is a string, not 3: the server's schema check) and
    ``metadata`` the server refuses (``meta.metadata_problems``). The controller reads objects
    the server has already validated, so it parses leniently.
    """
    if not isinstance(doc, Mapping):
        raise InvalidManifest([Problem("", "a manifest must be a mapping")])
    kind = doc.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = " or ".join(KINDS)
        raise InvalidManifest([Problem("kind", f"must be {known}, not {kind!r}")])
    if doc.get("apiVersion") != API_VERSION:
        raise InvalidManifest(
            [Problem("apiVersion", f"must be {API_VERSION}, not {doc.get('apiVersion')!r}")]
        )
    try:
        if strict:
            doc = as_the_server_reads(doc)
            meta = [Problem(f"metadata.{p}", m) for p, m in metadata_problems(doc.get("metadata"))]
            # JSON mode: enums from strings, no str -> int coercion (the server's typing).
            strict_json = json.dumps(doc, default=str)
            try:
                parsed = model.model_validate_json(strict_json, strict=True)
            except ValidationError as error:
                raise InvalidManifest(sorted({*meta, *problems_from(error)})) from None
            if meta:
                raise InvalidManifest(sorted(meta))
        else:
            parsed = model.model_validate(doc)
    except ValidationError as error:
        raise InvalidManifest(problems_from(error)) from None
    found = (
        spec_problems(parsed.spec)
        if isinstance(parsed, Rollout)
        else template_problems(parsed.spec)
    )
    if found:
        raise InvalidManifest([Problem(f"spec.{path}", msg) for path, msg in found])
    return parsed


def parse_rollout(doc: Any) -> Rollout:
    """Like ``parse_manifest`` but only a Rollout is acceptable."""
    parsed = parse_manifest(doc)
    if not isinstance(parsed, Rollout):
        raise InvalidManifest([Problem("kind", "must be Rollout")])
    return parsed
