"""Server-side printing: ``meta.k8s.io/v1`` Table responses, as ``kubectl get`` asks for them.

A client that sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` gets, instead of an
object or a list, a Table: ``columnDefinitions`` and one row per object, each row's ``object``
being a ``PartialObjectMetadata`` (``includeObject=Metadata``, the default), the whole object
(``Object``) or absent (``None``).

Columns, as the apiserver has them:

- custom resources: ``Name``, then the CRD's ``additionalPrinterColumns`` (their ``jsonPath``
  evaluated on the object; a cell is null when the path finds nothing or the value is not of the
  column's type; ``date`` columns shown as an age such as ``5m``), or ``Age`` when the CRD
  declares none (apiextensions-apiserver's ``tableconvertor``);
- built-in kinds: ``Name``, a few of the columns ``kubectl get`` shows for the kind where they are
  cheap to compute, and ``Age`` (the printers of ``pkg/printers/internalversion``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rollout.sandbox.errors import ApiError
from rollout.sandbox.resources import ResourceType

__all__ = ["human_duration", "jsonpath", "table", "wants_table"]

Obj = dict[str, Any]

NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
AGE_COLUMN = {
    "name": "Age",
    "type": "string",
    "format": "",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
    "priority": 0,
}


def wants_table(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for a ``meta.k8s.io`` Table first."""
    if not accept or "as=Table" not in accept:
        return False
    for media in accept.split(","):
        params = {
            k.strip(): v.strip() for k, _, v in (p.partition("=") for p in media.split(";")[1:])
        }
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v") in ("v1", "v1beta1")
    return False


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: ``45s``, ``3m20s``, ``5h``, ``2d3h``, ``3y``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(timestamp: Any) -> str | None:
    if not isinstance(timestamp, str):
        return None
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


_STEP = re.compile(r"\.([A-Za-z0-9_\-/]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def jsonpath(obj: Any, path: str) -> tuple[bool, Any]:
    """The value at a simple JSONPath (``.status.phase``, ``.spec.items[0].name``, ``{...}``).

    Returns ``(found, value)``. The subset CRD printer columns use (fields, indexes, quoted
    keys); anything else is a 400 at CRD creation in Kubernetes and finds nothing here.
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    node = obj
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            return False, None
        position = match.end()
        field, index, quoted, dquoted = match.groups()
        key = field if field is not None else quoted if quoted is not None else dquoted
        if key is not None:
            if not isinstance(node, dict) or key not in node:
                return False, None
            node = node[key]
        else:
            if not isinstance(node, list) or int(index) >= len(node):
                return False, None
            node = node[int(index)]
    return True, node


def _go_print(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _cell(kind: str, value: Any) -> Any:
    """apiextensions' ``cellForJSONValue``: the value if it has the column's type, else null."""
    if value is None:
        return None
    if kind == "string":
        return _go_print(value)
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        return _age(value)
    return None


Column = tuple[dict[str, Any], Callable[[Obj], Any]]


def _column(name: str, get: Callable[[Obj], Any], kind: str = "string") -> Column:
    return {"name": name, "type": kind, "format": "", "description": "", "priority": 0}, get


def _at(obj: Obj, *path: str) -> Any:
    node: Any = obj
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _ready(obj: Obj) -> str:
    return f"{_at(obj, 'status', 'readyReplicas') or 0}/{_at(obj, 'spec', 'replicas') or 0}"


BUILTIN_COLUMNS: dict[tuple[str, str], tuple[Column, ...]] = {
    ("", "namespaces"): (_column("Status", lambda o: _at(o, "status", "phase") or ""),),
    ("", "configmaps"): (
        _column(
            "Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}), "integer"
        ),
    ),
    ("", "secrets"): (
        _column("Type", lambda o: o.get("type") or ""),
        _column("Data", lambda o: len(o.get("data") or {}), "integer"),
    ),
    ("", "services"): (
        _column("Type", lambda o: _at(o, "spec", "type") or ""),
        _column("Cluster-IP", lambda o: _at(o, "spec", "clusterIP") or "<none>"),
    ),
    ("", "events"): (
        _column("Type", lambda o: o.get("type") or ""),
        _column("Reason", lambda o: o.get("reason") or ""),
        _column(
            "Object",
            lambda o: (
                f"{str(_at(o, 'involvedObject', 'kind') or '').lower()}/"
                f"{_at(o, 'involvedObject', 'name') or ''}"
            ),
        ),
        _column("Message", lambda o: str(o.get("message") or "").strip()),
    ),
    ("apps", "replicasets"): (
        _column("Desired", lambda o: _at(o, "spec", "replicas") or 0, "integer"),
        _column("Current", lambda o: _at(o, "status", "replicas") or 0, "integer"),
        _column("Ready", lambda o: _at(o, "status", "readyReplicas") or 0, "integer"),
    ),
    ("apps", "deployments"): (
        _column("Ready", _ready),
        _column("Up-to-date", lambda o: _at(o, "status", "updatedReplicas") or 0, "integer"),
        _column("Available", lambda o: _at(o, "status", "availableReplicas") or 0, "integer"),
    ),
    ("coordination.k8s.io", "leases"): (
        _column("Holder", lambda o: _at(o, "spec", "holderIdentity") or ""),
    ),
    ("rbac.authorization.k8s.io", "rolebindings"): (
        _column("Role", lambda o: f"{_at(o, 'roleRef', 'kind')}/{_at(o, 'roleRef', 'name')}"),
    ),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (
        _column("Role", lambda o: f"{_at(o, 'roleRef', 'kind')}/{_at(o, 'roleRef', 'name')}"),
    ),
    ("policy", "poddisruptionbudgets"): (
        _column("Min Available", lambda o: _go_print(_at(o, "spec", "minAvailable") or "N/A")),
        _column("Max Unavailable", lambda o: _go_print(_at(o, "spec", "maxUnavailable") or "N/A")),
    ),
}


def _columns(rtype: ResourceType) -> list[Column]:
    name: Column = (NAME_COLUMN, lambda o: o["metadata"].get("name", ""))
    age: Column = (AGE_COLUMN, lambda o: _age(o["metadata"].get("creationTimestamp")))
    if rtype.custom:
        if not rtype.printer_columns:
            return [name, age]
        columns = [name]
        for spec in rtype.printer_columns:
            kind = str(spec.get("type") or "string")
            path = str(spec.get("jsonPath") or "")
            definition = {
                "name": spec.get("name", ""),
                "type": kind,
                "format": spec.get("format") or "",
                "description": spec.get("description") or "",
                "priority": int(spec.get("priority") or 0),
            }

            def get(o: Obj, kind: str = kind, path: str = path) -> Any:
                found, value = jsonpath(o, path)
                return _cell(kind, value) if found else None

            columns.append((definition, get))
        return columns
    return [name, *BUILTIN_COLUMNS.get(rtype.key, ()), age]


_META_KEPT = (
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers",
)  # fmt: skip


def table(
    rtype: ResourceType, objects: list[Obj], resource_version: str | None, include: str | None
) -> Obj:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (already served at the asked-for version).

    ``include``: the ``includeObject`` query parameter (None, ``Metadata``, ``Object``, ``None``);
    any other value is a 400, as in Kubernetes.
    """
    include = include or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise ApiError(
            400,
            "BadRequest",
            f'includeObject: Unsupported value: "{include}": supported values: "Metadata", '
            '"None", "Object"',
        )
    columns = _columns(rtype)
    rows = []
    for obj in objects:
        row: Obj = {"cells": [get(obj) for _, get in columns]}
        if include == "Object":
            row["object"] = obj
        elif include == "Metadata":
            meta = obj.get("metadata") or {}
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {k: meta[k] for k in _META_KEPT if k in meta},
            }
        rows.append(row)
    metadata: Obj = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [definition for definition, _ in columns],
        "rows": rows,
    }
