"""The TrafficRouter seam and its registry.

A router reads back the traffic really applied (``read``), makes it look like a desired
``RouteState`` (``apply``, idempotent, True when it changed anything) and sends everything to
stable (``reset``). Only the routes and fields it manages change; everything else in the
user's objects is preserved. A routing configuration that cannot work (a missing
VirtualService, route or subset) raises ``RouteConfigError`` with a precise message; the
controller reports it as InvalidSpec and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from rollout.api.rollout import Rollout
from rollout.domain.observed import RouteState


class RouteConfigError(Exception):
    """The Rollout's traffic routing does not match the objects in the cluster."""


class TrafficRouter(Protocol):
    def read(self, rollout: Rollout) -> RouteState: ...

    def apply(self, rollout: Rollout, desired: RouteState) -> bool: ...

    def reset(self, rollout: Rollout) -> None: ...


RouterFactory = Callable[..., TrafficRouter]
_REGISTRY: dict[str, RouterFactory] = {}


def register(name: str, factory: RouterFactory) -> None:
    _REGISTRY[name] = factory


def router_for(name: str) -> RouterFactory:
    """The factory registered as ``name``; an unknown name is an error, never a default."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise RouteConfigError(f"unknown traffic router {name!r} (known: {known})") from None
