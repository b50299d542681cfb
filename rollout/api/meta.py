"""Kubernetes object metadata and label selectors, as far as our resources use them."""

from __future__ import annotations

from typing import Annotated, Literal

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
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, max_length=64)


class LabelSelector(ApiModel):
    """A ``metav1.LabelSelector``."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=64)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=64)

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
