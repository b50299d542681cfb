"""The ``Rollout`` custom resource: a workload and how its new versions reach users."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from rollout.api.base import ApiModel
from rollout.api.cel import rules
from rollout.api.gate import Analysis
from rollout.api.meta import LabelSelector, ObjectMeta
from rollout.api.status import RolloutStatus
from rollout.api.strategy import Strategy
from rollout.api.traffic import TrafficRouting

GROUP = "rollout.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


# The longest Rollout name the controller can use. Every name and label value it derives from
# the Rollout's name must be valid Kubernetes names and labels
# (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/,
# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set):
#
# - the pods' ``service.istio.io/canonical-name`` label is the Rollout's name (unless the template
#   sets it): a label value, at most 63 characters. This is the binding limit;
# - ReplicaSets ``<name>-<10-character hash>``: DNS-1123 subdomains, at most 253 (<= 74 here);
# - their pods' names come from ``generateName: <replicaset>-``, which the API server cuts to 58
#   characters before adding 5 random ones, so they are always valid;
# - Events ``<name>.<random>``, owner references, annotations: subdomains or free text.
#
# ``rollout.api.rollout.MAX_NAME`` is checked by the CRD (a CEL rule at the root, which may read
# ``metadata.name``) and by the model (``RolloutMeta``), so lint, the controller and the API server
# all refuse a longer name. docs/architecture.md ("Names") says more.
MAX_NAME = 63
NAME_MESSAGE = (
    f"a Rollout name has at most {MAX_NAME} characters: it is the value of its pods' "
    "service.istio.io/canonical-name label, and a Kubernetes label value has at most "
    f"{MAX_NAME} characters"
)


class RolloutMeta(ObjectMeta):
    """``metadata`` of a Rollout: a name no longer than ``MAX_NAME``."""

    @field_validator("name")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        if len(name) > MAX_NAME:
            raise ValueError(f"{NAME_MESSAGE}, not {len(name)}")
        return name


class PodTemplateMetadata(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels of the pods. They must include every label of spec.selector.matchLabels."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations of the pods."""


class PodTemplate(ApiModel):
    """A PodTemplateSpec as in a Deployment. The pod spec is passed through to ReplicaSets."""

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    """Labels and annotations of the pods."""
    spec: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    """The pods' spec, as in a Deployment (containers, volumes and so on). It is passed unchanged to
    the ReplicaSets the controller creates; at least one container, each with a name."""

    @field_validator("spec")
    @classmethod
    def _has_containers(cls, spec: dict[str, Any]) -> dict[str, Any]:
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("a pod template needs spec.containers with at least one container")
        for i, container in enumerate(containers):
            if not isinstance(container, dict) or not container.get("name"):
                raise ValueError(f"containers[{i}] needs a name")
        return spec


class RolloutSpec(ApiModel):
    """``spec``. Cross-field rules are CEL here and ``rollout.api.semantics`` in Python."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.selector.matchLabels) || self.selector.matchLabels.all(k,"
                    " has(self.template.metadata) && has(self.template.metadata.labels)"
                    " && k in self.template.metadata.labels"
                    " && self.template.metadata.labels[k] == self.selector.matchLabels[k])",
                    "message": "selector.matchLabels must match template.metadata.labels",
                },
                {
                    "rule": "has(self.analysis) || has(self.strategy.canary)"
                    " || (has(self.strategy.blueGreen)"
                    " && !has(self.strategy.blueGreen.prePromotionAnalysis)"
                    " && !has(self.strategy.blueGreen.postPromotionAnalysis))",
                    "message": "blueGreen promotion analysis and the mirror strategy need "
                    "spec.analysis",
                },
                {
                    "rule": "has(self.analysis) || !has(self.strategy.canary)"
                    " || !has(self.strategy.canary.steps)"
                    " || !self.strategy.canary.steps.exists(s, has(s.analysis))",
                    "message": "analysis steps need spec.analysis",
                },
            ]
        }
    )

    replicas: int = Field(default=1, ge=0)
    """Number of pods of the stable revision, and of a new revision once it is promoted. Default
    1."""
    selector: LabelSelector = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "selector is immutable"}
            ]
        }
    )
    """Selects the Rollout's pods by label; it must match template.metadata.labels. It cannot be
    changed after creation."""
    template: PodTemplate
    """The pods to run. Changing it starts a new revision, which the strategy rolls out."""
    min_ready_seconds: int = Field(default=0, ge=0)
    """Seconds a new pod must be ready, without crashing, before it counts as available. Default
    0."""
    revision_history_limit: int = Field(default=3, ge=0)
    """Number of old ReplicaSets kept, scaled to zero, for rollout undo. Default 3."""
    progress_deadline_seconds: int = Field(default=600, ge=1)
    """Seconds a step may wait for available pods or for a passing gate before the Rollout becomes
    Degraded (reason ProgressDeadlineExceeded). Pauses do not count. Default 600."""
    traffic_routing: TrafficRouting
    """How traffic is split between the stable revision and the new one."""
    analysis: Analysis | None = None
    """The gate: Prometheus checks measured every interval while a new revision gets traffic; a
    failed gate sends all traffic back to stable. Required by analysis steps, by blue-green
    promotion analysis and by the mirror strategy."""
    strategy: Strategy
    """How a new revision reaches users: exactly one of canary, blueGreen or mirror."""


class Rollout(ApiModel):
    # Kubernetes lets a rule at the root of a CRD's schema read metadata.name (and generateName).
    model_config = ConfigDict(
        json_schema_extra=rules((f"self.metadata.name.size() <= {MAX_NAME}", NAME_MESSAGE))
    )

    api_version: Literal["rollout.dev/v1alpha1"]
    """rollout.dev/v1alpha1."""
    kind: Literal["Rollout"]
    """Rollout."""
    metadata: RolloutMeta
    """The object's metadata; the name has at most 63 characters."""
    spec: RolloutSpec
    """The workload and how its new versions reach users."""
    status: RolloutStatus | None = None
    """The state the controller observed and acts on. Written by the controller, except the operator
    requests abort, promoteFull and pauseConditions, which the rollout CLI (abort, promote, pause)
    and Argo CD actions set."""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"
