"""Istio traffic routing (``spec.trafficRouting.istio``).

One or more VirtualServices (``name`` or ``name.namespace``) with the http routes the controller
may change. The split is subset-level (a DestinationRule with a stable and a canary subset) or
host-level (a stable and a canary Service), never both.
"""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from rollout.api.base import ApiModel
from rollout.api.cel import rules
from rollout.api.meta import DNS_LABEL

# "reviews" or "reviews.shop": a DNS-1123 name, optionally followed by a namespace.
VS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"


class VirtualServiceRef(ApiModel):
    name: str = Field(min_length=1, max_length=127, pattern=VS_NAME)
    """The VirtualService's name, or name.namespace for one in another namespace."""
    routes: list[str] | None = Field(default=None, min_length=1, max_length=32)
    """Names of the http routes whose destination weights the controller sets. Default: the
    VirtualService's only http route (it must then have exactly one)."""

    @property
    def vs_name(self) -> str:
        return self.name.split(".", 1)[0]

    def vs_namespace(self, default: str) -> str:
        """The VirtualService's namespace: after the dot, else the Rollout's own."""
        return self.name.split(".", 1)[1] if "." in self.name else default


class DestinationRuleRef(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            ("self.stableSubset != self.canarySubset", "stableSubset and canarySubset must differ")
        )
    )

    name: str = Field(min_length=1, max_length=253, pattern=DNS_LABEL)
    """The DestinationRule, in the Rollout's namespace, whose two subsets split the traffic."""
    stable_subset: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """The subset that serves the stable revision; the controller points it at that revision's
    pods."""
    canary_subset: str = Field(min_length=1, max_length=63, pattern=DNS_LABEL)
    """The subset that serves the new revision; it must differ from stableSubset."""

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.stable_subset == self.canary_subset:
            raise ValueError("stableSubset and canarySubset must differ")
        return self


class IstioTrafficRouting(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.stableService) == has(self.canaryService)",
                "stableService and canaryService go together",
            ),
            (
                "has(self.destinationRule) != has(self.stableService)",
                "set either destinationRule (subset-level split) or stableService and "
                "canaryService (host-level split)",
            ),
            (
                "!has(self.stableService) || self.stableService != self.canaryService",
                "stableService and canaryService must differ",
            ),
        )
    )

    virtual_services: list[VirtualServiceRef] = Field(min_length=1, max_length=10)
    """The VirtualServices whose routes the controller moves (1 to 10)."""
    destination_rule: DestinationRuleRef | None = None
    """Subset-level split: one Service, two subsets of a DestinationRule. Set this, or stableService
    and canaryService."""
    stable_service: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    """Host-level split: the Service the controller points at the stable revision's pods. Set
    together with canaryService."""
    canary_service: str | None = Field(default=None, max_length=63, pattern=DNS_LABEL)
    """Host-level split: the Service the controller points at the new revision's pods. Set together
    with stableService."""

    @model_validator(mode="after")
    def _one_split(self) -> Self:
        if (self.stable_service is None) != (self.canary_service is None):
            raise ValueError("stableService and canaryService go together")
        if (self.destination_rule is None) == (self.stable_service is None):
            raise ValueError(
                "set either destinationRule (subset-level split) or stableService and "
                "canaryService (host-level split)"
            )
        if self.stable_service is not None and self.stable_service == self.canary_service:
            raise ValueError("stableService and canaryService must differ")
        return self


class TrafficRouting(ApiModel):
    istio: IstioTrafficRouting
    """Split traffic with Istio VirtualServices."""
