"""A pod template's ``spec`` checked against the Kubernetes PodSpec schema, for ``rollout lint``.

The schema is the official OpenAPI schema of a Kubernetes release, as JSON Schema, shipped by the
``kubernetes-validate`` package (Apache-2.0; one schema set per minor release, this module is its
only importer). Its *strict* variant rejects fields the schema does not declare, as ``kubectl``'s
strict field validation and the API server do for built-in kinds: ``imagee: y`` in a container
is ``spec.template.spec.containers[0].imagee: unknown field``.

The package raises the first error only; ``problems`` validates again after each one, with the
unknown fields removed or the bad value replaced by a placeholder of the right type, so that
every unknown field and most other errors are reported at once. ``object_problems`` checks a
whole object of a built-in kind (the chart's rendered manifests, in tests/unit/test_chart.py)
and reports the first error only. The package is imported lazily:
``rollout lint`` on files without a pod template, and ``rollout --help``, never load it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

MAX_PROBLEMS = 100


class UnknownVersion(ValueError):
    """A Kubernetes version the schema package has no schema for (message: which it has)."""


def versions() -> list[str]:
    """The Kubernetes minor versions with a schema, oldest first, e.g. ``["1.25", ..., "1.37"]``."""
    from kubernetes_validate.utils import all_versions

    return list(dict.fromkeys(".".join(str(v).split(".")[:2]) for v in all_versions()))


def latest_version() -> str:
    """The newest Kubernetes minor version with a schema, e.g. ``1.37``."""
    return versions()[-1]


def check_version(version: str) -> str:
    """``version`` as ``X.Y`` (a leading ``v`` and a patch number dropped); ``UnknownVersion``
    unless the package ships its schema."""
    minor = ".".join(version.removeprefix("v").split(".")[:2])
    shipped = versions()
    if minor not in shipped:
        raise UnknownVersion(
            f"no PodSpec schema for Kubernetes {version!r} (known: {shipped[0]} to {shipped[-1]})"
        )
    return minor


def problems(
    pod_spec: Mapping[str, Any], path: str, version: str | None = None
) -> list[tuple[str, str]]:
    """``(field path, message)`` for each way ``pod_spec`` (a PodTemplateSpec's ``spec``, at
    ``path``, e.g. ``spec.template.spec``) breaks the PodSpec schema of Kubernetes ``version``
    (``X.Y``; default: the newest shipped). Paths use ``.field`` and ``[index]``; an undeclared
    field is ``unknown field``, a value of the wrong type ``must be an integer, not "80"`` (the
    value as JSON/YAML writes it: ``true``, ``null``), other messages are JSON Schema's.
    Raises ``UnknownVersion`` for a version newer than any shipped."""
    import kubernetes_validate

    version = check_version(version) if version else latest_version()
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "lint"},
        "template": {"spec": copy.deepcopy(dict(pod_spec))},
    }
    found: list[tuple[str, str]] = []
    spec = document["template"]["spec"]
    patched: set[tuple[Any, ...]] = set()
    while len(found) < MAX_PROBLEMS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
            return found
        except kubernetes_validate.ValidationError as error:
            where = tuple(error.path)[2:]  # below template.spec
            instance = _at(spec, where)
            if error.validator == "additionalProperties" and isinstance(instance, dict):
                declared = (error.schema or {}).get("properties") or {}
                extra = sorted(str(k) for k in instance if k not in declared)
                for key in extra:
                    found.append((_path(path, (*where, key)), "unknown field"))
                    del instance[key]
                if extra:
                    continue
            if where in patched:
                return found  # a placeholder of ours did not fit: stop rather than guess
            found.append((_path(path, where), _message(error.validator, error, instance)))
            if not _patch(spec, where, error.validator, error.validator_value, error.schema):
                return found
            patched.add(where)
            if error.validator == "required":
                patched.update((*where, key) for key in error.validator_value or ())
    return found


def object_problems(document: Mapping[str, Any], version: str | None = None) -> list[str]:
    """The first way a whole object (``apiVersion``, ``kind``, ...; e.g. a chart's rendered
    Deployment) breaks the strict schema of its kind in Kubernetes ``version`` (``X.Y``;
    default: the newest shipped), as ``["<field path>: <message>"]``; ``[]`` when it conforms.
    Strict, as the API server's field validation: an undeclared field is an error. A kind the
    package has no schema for (a custom resource) is ``["<apiVersion>/<kind>: no schema"]``.
    Raises ``UnknownVersion`` for a version newer than any shipped."""
    import kubernetes_validate

    version = check_version(version) if version else latest_version()
    try:
        kubernetes_validate.validate(dict(document), version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{document.get('apiVersion')}/{document.get('kind')}: no schema"]
    except kubernetes_validate.ValidationError as error:
        where = _path("", tuple(error.path)).lstrip(".") or "(object)"
        return [f"{where}: {error.message}"]
    return []


ARTICLED = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "a boolean",
    "array": "a list",
    "object": "a mapping",
}


def _message(validator: Any, error: Any, instance: Any) -> str:
    """A type error in the words of the manifest's reader: ``must be an integer, not "80"``,
    ``must be a string or a number, not [1]`` (a quantity), where JSON Schema says
    ``'80' is not of type 'integer'`` and ``True is not of type ...`` in Python's spelling."""
    if validator == "type":
        expected = error.validator_value
        kinds = [expected] if isinstance(expected, str) else list(expected or [])
    elif validator in ("anyOf", "oneOf"):
        kinds = []
        for option in error.validator_value or []:
            kind = option.get("type") if isinstance(option, dict) else None
            if kind is None:
                return str(error.message)  # not a choice of types: JSON Schema's words
            kinds.extend([kind] if isinstance(kind, str) else kind)
    else:
        return str(error.message)
    words = list(dict.fromkeys(ARTICLED.get(k, k) for k in kinds if k != "null"))
    if not words:
        return str(error.message)
    return f"must be {' or '.join(words)}, not {json.dumps(instance, default=str)}"


PLACEHOLDERS: dict[str, Any] = {
    "integer": 0,
    "number": 0,
    "string": "",
    "boolean": False,
    "array": [],
    "object": {},
}


def _placeholder(schema: Any) -> Any:
    """A value of the type ``schema`` declares (``{}`` for a ``$ref``, which is an object in
    the PodSpec schema), so that validation can go on past an error."""
    types = schema.get("type") if isinstance(schema, Mapping) else None
    names = [types] if isinstance(types, str) else list(types or ["object"])
    name = next((t for t in names if t != "null"), "object")
    return copy.deepcopy(PLACEHOLDERS.get(name, {}))


def _patch(spec: Any, where: tuple[Any, ...], validator: str, value: Any, schema: Any) -> bool:
    """Make the error at ``where`` go away with a placeholder; False when it cannot."""
    if validator == "required":
        target = _at(spec, where)
        if not isinstance(target, dict):
            return False
        properties = schema.get("properties") or {} if isinstance(schema, Mapping) else {}
        for key in value or ():
            target.setdefault(key, _placeholder(properties.get(key)))
        return True
    if not where:
        return False
    parent = _at(spec, where[:-1])
    if validator == "type":
        replacement = _placeholder({"type": value})
    elif validator in ("anyOf", "oneOf") and isinstance(value, list) and value:
        replacement = _placeholder(value[0])  # e.g. a quantity: string or number
    elif isinstance(schema, Mapping) and "null" in (schema.get("type") or ()):
        replacement = None
    else:
        return False
    try:
        parent[where[-1]] = replacement
    except (KeyError, IndexError, TypeError):
        return False
    return True


def _at(root: Any, where: Sequence[Any]) -> Any:
    for step in where:
        try:
            root = root[step]
        except (KeyError, IndexError, TypeError):
            return None
    return root


def _path(prefix: str, where: Sequence[Any]) -> str:
    text = prefix
    for step in where:
        text += f"[{step}]" if isinstance(step, int) else f".{step}"
    return text
