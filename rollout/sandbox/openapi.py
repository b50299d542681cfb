"""The OpenAPI documents the sandbox serves, and the strict field check they describe.

Generated from what the sandbox knows: a custom resource's schema is its CRD's
``openAPIV3Schema`` (``metadata`` replaced by a reference to ``ObjectMeta``, as the apiserver
does); a built-in kind gets a small structural schema: its top-level fields (so an unknown
top-level field is caught) with everything below them open (``x-kubernetes-preserve-unknown-
fields``). Every kind's schema carries ``x-kubernetes-group-version-kind``, and every kind has
collection and item paths whose operations carry it too; PATCH lists the ``fieldValidation`` and
``dryRun`` query parameters, which is how kubectl (``QueryParamVerifierV3``) learns that the
server validates fields itself, so it sends ``fieldValidation=Strict`` instead of validating on the
client. PATCH does not list strategic merge patch: kubectl then builds its strategic patches for
built-in kinds from its own compiled types (our schemas hold no patch merge keys).

Served as the apiserver serves them:

- ``/openapi/v3``: ``{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=H"},
  "apis/G/V": ...}}``; ``/openapi/v3/api/v1`` and ``/openapi/v3/apis/G/V``: one OpenAPI 3.0
  document per group/version (JSON);
- ``/openapi/v2``: one Swagger 2.0 document (JSON only: the protobuf form kubectl asks for is
  answered 406, and kubectl then falls back as it does when v2 is unavailable).

Documents are built on demand and cached until a type is added or removed
(``Registry.generation``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from rollout.sandbox import schema as crschema
from rollout.sandbox.resources import Registry, ResourceType

__all__ = ["OpenApi", "schema_of", "unknown_fields"]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
OPEN: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _s(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": description,
    }


def _obj(description: str) -> dict[str, Any]:
    return {**OPEN, "description": description}


def _list(description: str) -> dict[str, Any]:
    return {"type": "array", "items": dict(OPEN), "description": description}


OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have.",
    "properties": {
        "annotations": _map("Unstructured key value map stored with a resource."),
        "creationTimestamp": {
            **_s("When this object was created (set by the server)."),
            "format": "date-time",
        },
        "deletionGracePeriodSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "Seconds allowed for graceful deletion.",
        },
        "deletionTimestamp": {
            **_s("When this object will be deleted (set by the server)."),
            "format": "date-time",
        },
        "finalizers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Must be empty before the object is deleted.",
        },
        "generateName": _s("Prefix of a server-generated name, used if name is empty."),
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "A sequence number of the desired state's generations.",
        },
        "labels": _map("Map of string keys and values to organize and select objects."),
        "managedFields": _list("Which field manager owns which fields."),
        "name": _s("Name must be unique within a namespace."),
        "namespace": _s("The namespace of a namespaced object."),
        "ownerReferences": _list("Objects this object depends on."),
        "resourceVersion": _s("An opaque value for optimistic concurrency and watch."),
        "selfLink": _s("Deprecated; not set."),
        "uid": _s("The server-set unique identifier of this object."),
    },
}

_SPEC = _obj("The desired state of the object.")
_STATUS = _obj("The most recently observed state of the object (read-only).")
_SPEC_STATUS = {"spec": _SPEC, "status": _STATUS}

# Top-level fields of the built-in kinds (k8s.io/api types), everything below them open.
BUILTIN_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("", "namespaces"): _SPEC_STATUS,
    ("", "services"): _SPEC_STATUS,
    ("", "pods"): _SPEC_STATUS,
    ("", "events"): {
        "action": _s("What action was taken/failed regarding the regarding object."),
        "count": {"type": "integer", "description": "The number of times this event occurred."},
        "eventTime": {**_s("When this event was first observed."), "format": "date-time"},
        "firstTimestamp": {**_s("When this event was first recorded."), "format": "date-time"},
        "involvedObject": {
            "type": "object",
            "description": "The object that this event is about.",
            "properties": {
                k: _s(f"{k} of the referent.")
                for k in (
                    "apiVersion",
                    "fieldPath",
                    "kind",
                    "name",
                    "namespace",
                    "resourceVersion",
                    "uid",
                )
            },
        },
        "lastTimestamp": {
            **_s("When this event was most recently recorded."),
            "format": "date-time",
        },
        "message": _s("A human-readable description of the status of this operation."),
        "reason": _s("A short, machine-understandable reason for the transition."),
        "related": _obj("Optional secondary object for more complex actions."),
        "reportingComponent": _s("Name of the controller that emitted this Event."),
        "reportingInstance": _s("ID of the controller instance."),
        "series": _obj("Data about the Event series this event represents."),
        "source": _obj("The component reporting this event."),
        "type": _s("Type of this event (Normal, Warning)."),
    },
    ("", "configmaps"): {
        "binaryData": _map("Binary data, base64-encoded."),
        "data": _map("Configuration data."),
        "immutable": {"type": "boolean", "description": "Whether the data can be updated."},
    },
    ("", "secrets"): {
        "data": _map("Secret data, base64-encoded."),
        "immutable": {"type": "boolean", "description": "Whether the data can be updated."},
        "stringData": _map("Write-only string data, merged into data."),
        "type": _s("Used to facilitate programmatic handling of secret data."),
    },
    ("", "serviceaccounts"): {
        "automountServiceAccountToken": {
            "type": "boolean",
            "description": "Whether pods mount a token.",
        },
        "imagePullSecrets": _list("Secrets for pulling images."),
        "secrets": _list("Secrets pods running as this service account may use."),
    },
    ("apps", "replicasets"): _SPEC_STATUS,
    ("apps", "deployments"): _SPEC_STATUS,
    ("coordination.k8s.io", "leases"): {"spec": _SPEC},
    ("rbac.authorization.k8s.io", "roles"): {"rules": _list("The PolicyRules of this Role.")},
    ("rbac.authorization.k8s.io", "clusterroles"): {
        "aggregationRule": _obj("How to build the rules of this ClusterRole from others."),
        "rules": _list("The PolicyRules of this ClusterRole."),
    },
    ("rbac.authorization.k8s.io", "rolebindings"): {
        "roleRef": _obj("The Role or ClusterRole bound."),
        "subjects": _list("The subjects the role applies to."),
    },
    ("rbac.authorization.k8s.io", "clusterrolebindings"): {
        "roleRef": _obj("The ClusterRole bound."),
        "subjects": _list("The subjects the role applies to."),
    },
    ("policy", "poddisruptionbudgets"): _SPEC_STATUS,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _SPEC_STATUS,
}

_PACKAGES = {
    "": "io.k8s.api.core.v1",
    "apps": "io.k8s.api.apps.v1",
    "coordination.k8s.io": "io.k8s.api.coordination.v1",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "policy": "io.k8s.api.policy.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
}


def _builtin_schema(rtype: ResourceType) -> dict[str, Any]:
    fields = BUILTIN_FIELDS.get(rtype.key, _SPEC_STATUS)
    return {
        "type": "object",
        "description": f"{rtype.kind} (a built-in kind; fields below the top level are not "
        "described by the rollout sandbox).",
        "properties": {
            "apiVersion": _s("APIVersion defines the versioned schema of this object."),
            "kind": _s("Kind is a string value representing the REST resource."),
            "metadata": OBJECT_META_SCHEMA,
            **fields,
        },
    }


def schema_of(rtype: ResourceType, version: str) -> dict[str, Any]:
    """The structural schema of ``rtype`` at ``version`` (metadata inline, no ``$ref``).

    A CRD's ``openAPIV3Schema``; for a built-in kind (or a CRD-like type without a schema, such
    as the sandbox's Istio types) the top-level fields with everything below them open.
    """
    if rtype.schemas.get(version):
        return rtype.schemas[version]
    if rtype.custom:
        return {"type": "object", "properties": {**_SPEC_STATUS}}
    return _builtin_schema(rtype)


def unknown_fields(rtype: ResourceType, version: str, obj: Mapping[str, Any]) -> list[str]:
    """The unknown fields of a request body, as the apiserver's strict decoding names them.

    ``metadata.x`` for a key ObjectMeta does not have; below that, the fields the type's schema
    (``schema_of``) prunes. A non-object body or metadata yields nothing (other checks refuse it).
    """
    if not isinstance(obj, dict):
        return []
    found: list[str] = []
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        known = OBJECT_META_SCHEMA["properties"]
        found += [f"metadata.{k}" for k in meta if k not in known]
    return found + crschema.unknown_fields(obj, schema_of(rtype, version))


def _schema_name(rtype: ResourceType, version: str) -> str:
    package = _PACKAGES.get(rtype.group)
    if package is not None and not rtype.custom:
        return f"{package}.{rtype.kind}"
    reverse = ".".join(reversed(rtype.group.split(".")))
    return f"{reverse}.{version}.{rtype.kind}"


def _gvk(rtype: ResourceType, version: str) -> dict[str, str]:
    return {"group": rtype.group, "version": version, "kind": rtype.kind}


def _component(rtype: ResourceType, version: str, ref: str) -> dict[str, Any]:
    """The kind's schema as a document component: metadata by reference, the GVK extension."""
    body = copy.deepcopy(schema_of(rtype, version))
    props = body.setdefault("properties", {})
    props["metadata"] = {"$ref": f"{ref}{OBJECT_META}"}
    props.setdefault("apiVersion", _s("APIVersion defines the versioned schema of this object."))
    props.setdefault("kind", _s("Kind is a string value representing the REST resource."))
    body["x-kubernetes-group-version-kind"] = [_gvk(rtype, version)]
    return body


_QUERY = {
    "dryRun": "When present, modifications are not persisted. Valid value: All.",
    "fieldManager": "A name associated with the actor making these changes.",
    "fieldValidation": "How the server treats unknown fields: Ignore, Warn or Strict.",
}
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")


def _operations(
    rtype: ResourceType, version: str, ref: str, v2: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection path's and the item path's operations."""
    gvk = _gvk(rtype, version)
    target = {"$ref": f"{ref}{_schema_name(rtype, version)}"}

    def query(names: tuple[str, ...]) -> list[dict[str, Any]]:
        if v2:
            return [
                {
                    "name": n,
                    "in": "query",
                    "type": "string",
                    "uniqueItems": True,
                    "description": _QUERY[n],
                }
                for n in names
            ]
        return [
            {
                "name": n,
                "in": "query",
                "schema": {"type": "string", "uniqueItems": True},
                "description": _QUERY[n],
            }
            for n in names
        ]

    def op(action: str, verb: str, names: tuple[str, ...], body: tuple[str, ...]) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "operationId": f"{verb}{rtype.kind}",
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": query(names),
        }
        if v2:
            operation["responses"] = {"200": {"description": "OK", "schema": target}}
            if body:
                operation["consumes"] = list(body)
                operation["parameters"].append(
                    {"name": "body", "in": "body", "required": True, "schema": {"type": "object"}}
                )
        else:
            operation["responses"] = {
                "200": {"description": "OK", "content": {"application/json": {"schema": target}}}
            }
            if body:
                operation["requestBody"] = {
                    "content": {t: {"schema": {"type": "object"}} for t in body}
                }
        return operation

    writes = ("dryRun", "fieldManager", "fieldValidation")
    collection = {
        "get": op("list", "list", (), ()),
        "post": op("post", "create", writes, ("application/json",)),
        "delete": op("deletecollection", "deleteCollectionOf", ("dryRun",), ()),
    }
    item = {
        "get": op("get", "read", (), ()),
        "put": op("put", "replace", writes, ("application/json",)),
        "patch": op("patch", "patch", writes, _PATCH_TYPES),
        "delete": op("delete", "delete", ("dryRun",), ()),
    }
    return collection, item


def _prefix(rtype: ResourceType, version: str) -> str:
    return f"/apis/{rtype.group}/{version}" if rtype.group else f"/api/{version}"


def _paths(types: list[tuple[ResourceType, str]], ref: str, v2: bool) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rtype, version in types:
        base = _prefix(rtype, version)
        if rtype.namespaced:
            base += "/namespaces/{namespace}"
        collection, item = _operations(rtype, version, ref, v2)
        paths[f"{base}/{rtype.plural}"] = collection
        paths[f"{base}/{rtype.plural}/{{name}}"] = item
    return paths


def _v2_schema(node: Any) -> Any:
    """A v3 schema as Swagger 2.0 has it: no ``nullable``, no combinators, v2 references."""
    if isinstance(node, dict):
        out = {
            k: _v2_schema(v)
            for k, v in node.items()
            if k not in ("nullable", "anyOf", "oneOf", "allOf", "not")
        }
        if isinstance(out.get("$ref"), str):
            out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
        return out
    if isinstance(node, list):
        return [_v2_schema(v) for v in node]
    return node


def _encode(doc: dict[str, Any]) -> tuple[bytes, str]:
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return data, hashlib.sha512(data).hexdigest().upper()


class OpenApi:
    """The documents for one registry, rebuilt when its types change."""

    V3 = "#/components/schemas/"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._generation = -1
        self._v3: dict[str, tuple[bytes, str]] = {}
        self._v2: bytes | None = None

    def _types(self) -> list[tuple[ResourceType, str]]:
        return sorted(
            ((t, v) for t in self.registry.all() for v in t.versions),
            key=lambda tv: (tv[0].group, tv[1], tv[0].plural),
        )

    def _refresh(self) -> None:
        generation = self.registry.generation
        if generation == self._generation:
            return
        by_gv: dict[str, list[tuple[ResourceType, str]]] = {}
        for rtype, version in self._types():
            gv = _prefix(rtype, version).lstrip("/")
            by_gv.setdefault(gv, []).append((rtype, version))
        self._v3 = {gv: _encode(self._v3_document(types)) for gv, types in by_gv.items()}
        self._v2 = None
        self._generation = generation

    def _v3_document(self, types: list[tuple[ResourceType, str]]) -> dict[str, Any]:
        schemas: dict[str, Any] = {OBJECT_META: OBJECT_META_SCHEMA}
        for rtype, version in types:
            schemas[_schema_name(rtype, version)] = _component(rtype, version, self.V3)
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (rollout sandbox)", "version": "unversioned"},
            "paths": _paths(types, self.V3, v2=False),
            "components": {"schemas": schemas},
        }

    def v3_index(self) -> dict[str, Any]:
        """``/openapi/v3``: each group/version's document and its content hash."""
        with self._lock:
            self._refresh()
            return {
                "paths": {
                    gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
                    for gv, (_, digest) in sorted(self._v3.items())
                }
            }

    def v3_document(self, gv: str) -> bytes | None:
        """``/openapi/v3/<gv>`` (``api/v1``, ``apis/G/V``) as JSON bytes, None if not served."""
        with self._lock:
            self._refresh()
            found = self._v3.get(gv)
            return found[0] if found else None

    def v2_document(self) -> bytes:
        """``/openapi/v2`` as JSON bytes (Swagger 2.0)."""
        with self._lock:
            self._refresh()
            if self._v2 is None:
                types = self._types()
                definitions: dict[str, Any] = {OBJECT_META: OBJECT_META_SCHEMA}
                for rtype, version in types:
                    component = _component(rtype, version, "#/definitions/")
                    definitions[_schema_name(rtype, version)] = _v2_schema(component)
                doc = {
                    "swagger": "2.0",
                    "info": {"title": "Kubernetes (rollout sandbox)", "version": "unversioned"},
                    "paths": _paths(types, "#/definitions/", v2=True),
                    "definitions": definitions,
                }
                self._v2 = _encode(doc)[0]
            return self._v2
