"""The ``Rollout`` custom resource: a workload and how its new versions reach users."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from rollout.api.base import ApiModel
from rollout.api.gate import Analysis
from rollout.api.meta import LabelSelector, ObjectMeta
from rollout.api.status import RolloutStatus
from rollout.api.strategy import Strategy
from rollout.api.traffic import TrafficRouting

GROUP = "rollout.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class PodTemplateMetadata(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(ApiModel):
    """A PodTemplateSpec as in a Deployment. The pod spec is passed through to ReplicaSets."""

    metadata: PodTemplateMetadata = Field(default_factory=PodTemplateMetadata)
    spec: dict[str, Any] = Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})

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
    selector: LabelSelector = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "selector is immutable"}
            ]
        }
    )
    template: PodTemplate
    min_ready_seconds: int = Field(default=0, ge=0)
    revision_history_limit: int = Field(default=3, ge=0)
    progress_deadline_seconds: int = Field(default=600, ge=1)
    traffic_routing: TrafficRouting
    analysis: Analysis | None = None
    strategy: Strategy


class Rollout(ApiModel):
    api_version: Literal["rollout.dev/v1alpha1"]
    kind: Literal["Rollout"]
    metadata: ObjectMeta
    spec: RolloutSpec
    status: RolloutStatus | None = None

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"
