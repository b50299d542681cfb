"""Helpers to attach CEL rules (``x-kubernetes-validations``) to models' JSON schemas.

The rules travel with the models into the generated CRDs. Each rule has a pydantic twin in the
model itself, so the models and ``rollout lint`` reject what the API server would; a test
evaluates every rule with a real CEL runtime against valid and invalid manifests.
"""

from __future__ import annotations

from typing import Any


def exactly_one(*fields: str) -> str:
    """A CEL expression that holds when exactly one of ``fields`` is set."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules given as ``(rule, message)`` pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


def count_set(*values: object) -> int:
    """How many of ``values`` are set (not None): the pydantic twin of ``exactly_one``."""
    return sum(v is not None for v in values)
