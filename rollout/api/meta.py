"""Kubernetes object metadata and label selectors, as far as our resources use them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from rollout.api.base import ApiModel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# A label value is at most 63 characters in Kubernetes. The bound also keeps the estimated cost of
# the CEL rule comparing selector.matchLabels with the template's labels within the API server's
# budget (an unbounded string is costed as a whole 3 MiB request).
LabelValue = Annotated[str, Field(max_length=63)]


class ObjectMeta(ApiModel):
    """``metadata`` of a manifest. Server-set fields (managedFields, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    resource_version: str | None = None
    uid: str | None = None


class LabelSelectorRequirement(ApiModel):
    key: str = Field(min_length=1, max_length=317)
    """The label key the requirement applies to."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value is compared: In, NotIn, Exists or DoesNotExist."""
    values: list[str] = Field(default_factory=list, max_length=64)
    """The values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """A ``metav1.LabelSelector``."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=64)
    """Labels a pod must have, each with exactly this value."""
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=64)
    """More requirements on a pod's labels; all of them must hold."""

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` are selected, by Kubernetes' selector semantics."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    def as_query(self) -> str:
        """The selector as a string for ``status.selector`` (the scale subresource, HPA)."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            if req.operator == "Exists":
                parts.append(req.key)
            elif req.operator == "DoesNotExist":
                parts.append(f"!{req.key}")
            else:
                op = "in" if req.operator == "In" else "notin"
                parts.append(f"{req.key} {op} ({','.join(sorted(req.values))})")
        return ",".join(parts)


# What the API server checks in any object's metadata (k8s.io/apimachinery validation):
# ObjectMeta's fields, qualified names for label and annotation keys and finalizers, label
# values. ``metadata_problems`` repeats it so that ``rollout lint`` refuses what the server does.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX = re.compile(DNS_SUBDOMAIN)
_OWNER_FIELDS = ("apiVersion", "kind", "name", "uid")
# The annotations of an object, keys and values, may total 256 KiB (apimachinery's
# TotalAnnotationSizeLimitB). ``kubectl apply`` (client-side) adds its last-applied-configuration
# annotation, a copy of the manifest, so a manifest applied that way meets the limit sooner.
TOTAL_ANNOTATION_SIZE = 256 * 1024


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or None.

    The rule of apimachinery's ``IsQualifiedName``: an optional DNS-subdomain prefix of at most
    253 characters, then a name of 1..63 alphanumerics, ``-``, ``_``, ``.``, starting and ending
    with an alphanumeric.
    """
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return f"{key!r} is not a qualified name: at most one '/'"
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX.match(prefix)):
        return f"{key!r} is not a qualified name: the prefix must be a DNS subdomain"
    if not name or len(name) > 63 or not _NAME_PART.match(name):
        return (
            f"{key!r} is not a qualified name: the name part has 1 to 63 alphanumeric "
            "characters, '-', '_' or '.', and starts and ends with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a label value (empty, or at most 63 characters as a name part)."""
    if value == "" or (len(value) <= 63 and _NAME_PART.match(value)):
        return None
    return (
        f"{value!r} is not a label value: at most 63 alphanumeric characters, '-', '_' or '.', "
        "starting and ending with an alphanumeric"
    )


def metadata_problems(metadata: Any) -> list[tuple[str, str]]:
    """(path under ``metadata``, reason) for each thing the API server refuses in ``metadata``.

    Unknown fields (strict decoding), label keys and values, annotation keys, finalizers and
    ownerReferences' required fields. Types are left to the models.
    """
    if not isinstance(metadata, dict):
        return []
    found = [(f, "unknown field") for f in metadata if f not in OBJECT_META_FIELDS]
    labels = metadata.get("labels")
    for key, value in (labels or {}).items() if isinstance(labels, dict) else ():
        problem = qualified_name_problem(str(key))
        if problem:
            found.append((f"labels.{key}", problem))
        if isinstance(value, str) and (problem := label_value_problem(value)):
            found.append((f"labels.{key}", problem))
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        # apimachinery ValidateAnnotationsSize: keys and values together, in bytes.
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > TOTAL_ANNOTATION_SIZE:
            found.append(
                ("annotations", f"{size} bytes: may not be more than {TOTAL_ANNOTATION_SIZE}")
            )
    for key in annotations or {} if isinstance(annotations, dict) else ():
        # The server checks annotation keys lowercased (apimachinery ValidateAnnotations).
        if problem := qualified_name_problem(str(key).lower()):
            found.append((f"annotations.{key}", problem))
    finalizers = metadata.get("finalizers")
    for i, name in enumerate(finalizers if isinstance(finalizers, list) else []):
        if problem := qualified_name_problem(str(name)):
            found.append((f"finalizers[{i}]", problem))
    owners = metadata.get("ownerReferences")
    for i, owner in enumerate(owners if isinstance(owners, list) else []):
        for field in _OWNER_FIELDS:
            if not isinstance(owner, dict) or not owner.get(field):
                found.append((f"ownerReferences[{i}].{field}", "required field is missing"))
    return found
