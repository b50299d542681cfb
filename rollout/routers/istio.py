"""The Istio traffic router: VirtualService weights, mirror and header routes; pinned subsets.

What it owns, and nothing else:

- in each named http route of each VirtualService: the ``weight`` of the stable and canary
  destinations, and ``mirror``/``mirrorPercentage`` when they point at the canary;
- whole http routes named after the strategy's ``setHeaderRoute`` steps, placed before the
  first weighted route and sending matching requests to the canary;
- the ``rollout.dev/pod-template-hash`` label of the DestinationRule's stable and canary
  subsets (subset-level split), or in the stable and canary Services' selectors (host-level).

Everything else in those objects — other routes, matches, retries, timeouts, faults, headers,
trafficPolicy, fields this code does not know — is written back exactly as read. Every write is
a JSON patch whose first operation ``test``s the whole list it replaces, so a concurrent edit
fails with 422 and the write is retried after a fresh read, never applied over it.

Order of writes: when the canary revision changes while the canary has traffic, the traffic is
drained first; then the revision labels; then the weights. So traffic never reaches pods of a
revision it was not meant for, and at promotion both subsets point at the new pods before the
canary weight returns to 0.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from rollout.api.rollout import Rollout
from rollout.api.strategy import SetHeaderRoute
from rollout.api.traffic import IstioTrafficRouting, VirtualServiceRef
from rollout.cluster.access import (
    DESTINATION_RULES,
    SERVICES,
    VIRTUAL_SERVICES,
    ClusterAccess,
    Conflict,
    Invalid,
    NotFound,
    Obj,
    Resource,
)
from rollout.domain.observed import RouteState
from rollout.domain.revision import HASH_LABEL
from rollout.routers.base import RouteConfigError, register

WRITE_ATTEMPTS = 5


class Reader(Protocol):
    """Where reads come from: the watch cache in the controller, the API otherwise."""

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None: ...


class ApiReader:
    def __init__(self, access: ClusterAccess) -> None:
        self.access = access

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.access.get(res, namespace, name)
        except NotFound:
            return None


@dataclass(frozen=True)
class _Side:
    """How to recognise the stable or canary destination of a route."""

    subset: str | None = None  # subset-level split
    service: str | None = None  # host-level split

    def matches(self, destination: Obj) -> bool:
        if self.subset is not None:
            return destination.get("subset") == self.subset
        host = str(destination.get("host", ""))
        return host == self.service or host.startswith(f"{self.service}.")

    def describe(self) -> str:
        return f"subset {self.subset}" if self.subset else f"host {self.service}"


@dataclass(frozen=True)
class _Sides:
    stable: _Side
    canary: _Side


def _sides(istio: IstioTrafficRouting) -> _Sides:
    if istio.destination_rule is not None:
        dr = istio.destination_rule
        return _Sides(_Side(subset=dr.stable_subset), _Side(subset=dr.canary_subset))
    return _Sides(_Side(service=istio.stable_service), _Side(service=istio.canary_service))


def header_route_names(rollout: Rollout) -> set[str]:
    canary = rollout.spec.strategy.canary
    if canary is None:
        return set()
    return {s.set_header_route.name for s in canary.steps if s.set_header_route is not None}


class IstioRouter:
    def __init__(self, access: ClusterAccess, reader: Reader | None = None) -> None:
        self.access = access
        self.reader: Reader = reader if reader is not None else ApiReader(access)
        self.fresh = ApiReader(access)

    # -- read -------------------------------------------------------------------------------

    def read(self, rollout: Rollout) -> RouteState:
        return self._read(rollout, self.reader)

    def _read(self, rollout: Rollout, reader: Reader) -> RouteState:
        istio = rollout.spec.traffic_routing.istio
        sides = _sides(istio)
        managed = header_route_names(rollout)
        seen: list[tuple[int, float, tuple[SetHeaderRoute, ...]]] = []
        for ref in istio.virtual_services:
            vs = self._virtual_service(rollout, ref, reader)
            http = vs.get("spec", {}).get("http") or []
            for index in _targets(vs, ref):
                route = http[index]
                stable_i, canary_i = _destinations(vs, route, sides)
                entries = route["route"]
                weight = int(entries[canary_i].get("weight", 0))
                mirror = 0.0
                if _mirrors_canary(route, entries[canary_i]):
                    mirror = float((route.get("mirrorPercentage") or {}).get("value", 100.0))
                seen.append((weight, mirror, _read_header_routes(http, managed)))
        stable_rev, canary_rev = self._revisions(rollout, sides, reader)
        weight, mirror, headers = seen[0]
        return RouteState(
            stable_rev,
            canary_rev,
            weight,
            mirror,
            headers,
            consistent=all(s == seen[0] for s in seen),
        )

    def _virtual_service(self, rollout: Rollout, ref: VirtualServiceRef, reader: Reader) -> Obj:
        namespace = ref.vs_namespace(rollout.namespace)
        vs = reader.get(VIRTUAL_SERVICES, namespace, ref.vs_name)
        if vs is None:
            raise RouteConfigError(f"VirtualService {namespace}/{ref.vs_name} not found")
        return vs

    def _revisions(
        self, rollout: Rollout, sides: _Sides, reader: Reader
    ) -> tuple[str | None, str | None]:
        istio = rollout.spec.traffic_routing.istio
        if istio.destination_rule is not None:
            subsets = _subsets(self._destination_rule(rollout, reader), istio)
            return (
                subsets[0].get("labels", {}).get(HASH_LABEL),
                subsets[1].get("labels", {}).get(HASH_LABEL),
            )
        revisions = []
        for service in (istio.stable_service, istio.canary_service):
            assert service is not None
            svc = reader.get(SERVICES, rollout.namespace, service)
            if svc is None:
                raise RouteConfigError(f"Service {rollout.namespace}/{service} not found")
            revisions.append((svc.get("spec", {}).get("selector") or {}).get(HASH_LABEL))
        return revisions[0], revisions[1]

    def _destination_rule(self, rollout: Rollout, reader: Reader) -> Obj:
        dr_ref = rollout.spec.traffic_routing.istio.destination_rule
        assert dr_ref is not None
        dr = reader.get(DESTINATION_RULES, rollout.namespace, dr_ref.name)
        if dr is None:
            raise RouteConfigError(f"DestinationRule {rollout.namespace}/{dr_ref.name} not found")
        return dr

    # -- apply ------------------------------------------------------------------------------

    def apply(self, rollout: Rollout, desired: RouteState) -> bool:
        current = self._read(rollout, self.fresh)
        changed = False
        if desired.canary_revision != current.canary_revision and current.sends_canary_traffic:
            drained = RouteState(current.stable_revision, current.canary_revision)
            changed |= self._write_virtual_services(rollout, drained)
        changed |= self._write_revisions(rollout, desired)
        changed |= self._write_virtual_services(rollout, desired)
        return changed

    def reset(self, rollout: Rollout) -> None:
        current = self._read(rollout, self.fresh)
        stable = current.stable_revision
        self.apply(rollout, RouteState(stable, stable))

    def _write_virtual_services(self, rollout: Rollout, desired: RouteState) -> bool:
        istio = rollout.spec.traffic_routing.istio
        changed = False
        for ref in istio.virtual_services:
            namespace = ref.vs_namespace(rollout.namespace)

            def rebuild(vs: Obj, ref: VirtualServiceRef = ref) -> Any:
                return _desired_http(vs, ref, istio, desired, header_route_names(rollout))

            changed |= self._guarded_replace(
                VIRTUAL_SERVICES,
                namespace,
                ref.vs_name,
                "/spec/http",
                lambda vs: vs.get("spec", {}).get("http"),
                rebuild,
                lambda ref=ref: self._virtual_service(rollout, ref, self.fresh),
            )
        return changed

    def _write_revisions(self, rollout: Rollout, desired: RouteState) -> bool:
        istio = rollout.spec.traffic_routing.istio
        if istio.destination_rule is not None:
            dr_ref = istio.destination_rule

            def relabel(dr: Obj) -> Any:
                subsets = copy.deepcopy(dr.get("spec", {}).get("subsets") or [])
                wanted = {
                    dr_ref.stable_subset: desired.stable_revision,
                    dr_ref.canary_subset: desired.canary_revision,
                }
                for subset in subsets:
                    revision = wanted.get(subset.get("name"))
                    if revision is not None:
                        subset.setdefault("labels", {})[HASH_LABEL] = revision
                return subsets

            return self._guarded_replace(
                DESTINATION_RULES,
                rollout.namespace,
                dr_ref.name,
                "/spec/subsets",
                lambda dr: dr.get("spec", {}).get("subsets"),
                relabel,
                lambda: _checked_dr(self._destination_rule(rollout, self.fresh), istio),
            )
        changed = False
        pairs = (
            (istio.stable_service, desired.stable_revision),
            (istio.canary_service, desired.canary_revision),
        )
        for service, revision in pairs:
            assert service is not None
            if revision is None:
                continue

            def select(svc: Obj, revision: str = revision) -> Any:
                return {**(svc.get("spec", {}).get("selector") or {}), HASH_LABEL: revision}

            def fetch(service: str = service) -> Obj:
                svc = self.fresh.get(SERVICES, rollout.namespace, service)
                if svc is None:
                    raise RouteConfigError(f"Service {rollout.namespace}/{service} not found")
                return svc

            changed |= self._guarded_replace(
                SERVICES,
                rollout.namespace,
                service,
                "/spec/selector",
                lambda svc: svc.get("spec", {}).get("selector"),
                select,
                fetch,
            )
        return changed

    def _guarded_replace(
        self,
        res: Resource,
        namespace: str,
        name: str,
        path: str,
        current_of: Any,
        desired_of: Any,
        fetch: Any,
    ) -> bool:
        """Replace the list/map at ``path`` if it differs, guarded by a ``test`` of its value."""
        for _ in range(WRITE_ATTEMPTS):
            obj = fetch()
            current = current_of(obj)
            wanted = desired_of(obj)
            if wanted == current:
                return False
            ops: list[Obj] = [
                {"op": "test", "path": path, "value": current}
                if current is not None
                else {"op": "add", "path": path, "value": wanted},
                {"op": "replace", "path": path, "value": wanted},
            ]
            try:
                self.access.patch(res, namespace, name, ops, patch_type="json")
                return True
            except (Conflict, Invalid):
                continue  # changed under us: read again and rebuild
        raise Conflict(f"{res.kind} {namespace}/{name} kept changing; gave up after retries")


# -- pure helpers on Istio objects ----------------------------------------------------------


def _targets(vs: Obj, ref: VirtualServiceRef) -> list[int]:
    """Indexes of the weighted routes to manage in ``vs``."""
    meta = vs.get("metadata", {})
    where = f"VirtualService {meta.get('namespace')}/{meta.get('name')}"
    http = vs.get("spec", {}).get("http") or []
    names = [r.get("name") for r in http]
    if ref.routes is None:
        if len(http) != 1:
            raise RouteConfigError(
                f"{where} has {len(http)} http routes: name the one(s) to manage in "
                "trafficRouting.istio.virtualServices[].routes"
            )
        return [0]
    missing = [r for r in ref.routes if r not in names]
    if missing:
        listed = ", ".join(str(n) for n in names if n) or "none named"
        raise RouteConfigError(
            f"{where} has no http route named {', '.join(missing)} (routes: {listed})"
        )
    return [names.index(r) for r in ref.routes]


def _destinations(vs: Obj, route: Obj, sides: _Sides) -> tuple[int, int]:
    meta = vs.get("metadata", {})
    vs_name = f"{meta.get('namespace')}/{meta.get('name')}"
    where = f"route {route.get('name') or '(unnamed)'} of VirtualService {vs_name}"
    entries = route.get("route") or []
    found: dict[str, int] = {}
    for i, entry in enumerate(entries):
        destination = entry.get("destination") or {}
        for label, side in (("stable", sides.stable), ("canary", sides.canary)):
            if side.matches(destination):
                found[label] = i
    for label, side in (("stable", sides.stable), ("canary", sides.canary)):
        if label not in found:
            raise RouteConfigError(f"{where} has no {label} destination ({side.describe()})")
    if len(entries) != 2:
        raise RouteConfigError(
            f"{where} has {len(entries)} destinations: it must route to exactly the stable and "
            "the canary destination"
        )
    return found["stable"], found["canary"]


def _mirrors_canary(route: Obj, canary_entry: Obj) -> bool:
    mirror = route.get("mirror")
    return isinstance(mirror, dict) and mirror == canary_entry.get("destination")


def _read_header_routes(http: list[Obj], managed: set[str]) -> tuple[SetHeaderRoute, ...]:
    found = []
    for route in http:
        if route.get("name") not in managed:
            continue
        try:
            found.append(
                SetHeaderRoute.model_validate({"name": route["name"], "match": route.get("match")})
            )
        except ValidationError:
            continue  # edited beyond recognition: the desired state rewrites it
    return tuple(found)


def _header_route(route: SetHeaderRoute, canary_destination: Obj) -> Obj:
    return {
        "name": route.name,
        "match": [m.wire() for m in route.match],
        "route": [{"destination": copy.deepcopy(canary_destination), "weight": 100}],
    }


def _desired_http(
    vs: Obj,
    ref: VirtualServiceRef,
    istio: IstioTrafficRouting,
    desired: RouteState,
    managed: Iterable[str],
) -> list[Obj]:
    sides = _sides(istio)
    http = copy.deepcopy(vs.get("spec", {}).get("http") or [])
    targets = set(_targets(vs, ref))
    canary_destination: Obj = {}
    for index in targets:
        route = http[index]
        stable_i, canary_i = _destinations(vs, route, sides)
        entries = route["route"]
        entries[stable_i]["weight"] = 100 - desired.canary_weight
        entries[canary_i]["weight"] = desired.canary_weight
        canary_destination = entries[canary_i].get("destination") or {}
        if desired.mirror_percent > 0:
            route["mirror"] = copy.deepcopy(canary_destination)
            route["mirrorPercentage"] = {"value": float(desired.mirror_percent)}
        elif _mirrors_canary(route, entries[canary_i]):
            route.pop("mirror", None)
            route.pop("mirrorPercentage", None)
    managed_names = set(managed)
    first = min(targets)
    before = [r for r in http[:first] if r.get("name") not in managed_names]
    after = [r for r in http[first:] if r.get("name") not in managed_names]
    headers = [_header_route(r, canary_destination) for r in desired.header_routes]
    return before + headers + after


def _subsets(dr: Obj, istio: IstioTrafficRouting) -> tuple[Obj, Obj]:
    dr_ref = istio.destination_rule
    assert dr_ref is not None
    by_name = {s.get("name"): s for s in dr.get("spec", {}).get("subsets") or []}
    meta = dr.get("metadata", {})
    for subset in (dr_ref.stable_subset, dr_ref.canary_subset):
        if subset not in by_name:
            raise RouteConfigError(
                f"DestinationRule {meta.get('namespace')}/{meta.get('name')} has no subset "
                f"named {subset}"
            )
    return by_name[dr_ref.stable_subset], by_name[dr_ref.canary_subset]


def _checked_dr(dr: Obj, istio: IstioTrafficRouting) -> Obj:
    _subsets(dr, istio)
    return dr


register("istio", IstioRouter)
