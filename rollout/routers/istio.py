"""The Istio traffic router: VirtualService weights, mirror and header routes; pinned subsets.

What it owns, and nothing else:

- in each managed http route (named in ``trafficRouting.istio.virtualServices[].routes``): the
  ``weight`` of the stable and canary destinations;
- the mirrors and header routes it created itself, recorded on the VirtualService in the
  ``rollout.dev/managed-routes`` annotation (JSON keyed by ``<namespace>/<rollout>``, so that
  Rollouts sharing a VirtualService do not clash), written in the same JSON patch as the
  change. It removes exactly those when they are no longer wanted (a step renamed or removed
  by a new revision, promotion, abort, fast rollback) and never changes or removes a route or
  mirror it did not create: a header step whose route name is taken, or a mirror step on a
  route with a ``mirror`` of its own, is refused (``RouteConfigError``, so InvalidSpec);
  when such a conflict appears mid-rollout the state is still read, with ``problem`` set,
  so that the planner can drain the canary's traffic;
- a mirror: ``mirror`` + ``mirrorPercentage`` on a route without one; an entry appended to the
  route's ``mirrors`` list when the user wrote one (Istio forbids both fields together);
- a header route per managed route and ``setHeaderRoute`` step, inserted just before its
  managed route: the managed route's match entries ANDed with the step's (every pair), its
  rewrite, timeout, retries, headers, fault, corsPolicy (everything but name, match,
  destinations and mirrors), sending all matching requests to the canary. Named after the step
  when the VirtualService has one managed route, ``<step>-<route>`` when it has several;
- the ``rollout.dev/pod-template-hash`` label of the DestinationRule's stable and canary
  subsets (subset-level split, recorded in the DestinationRule's ``rollout.dev/managed-subsets``
  annotation in the same patch), or in the stable and canary Services' selectors (host-level).

Everything else in those objects — other routes, matches, retries, timeouts, faults, headers,
trafficPolicy, fields this code does not know — is written back exactly as read. Every write is
a JSON patch that first ``test``s the list it replaces (and the annotations), so a concurrent
edit fails with 422 and the write is retried after a fresh read, never applied over it.

The read-back compares the objects with what the router last recorded: an owned thing changed
outside the controller comes back as a ``RouteEdit`` (and as an inconsistent state, so the
planner asks for its route again); the controller then reports the revert in an Event.

Order of writes: when the canary revision changes while the canary has traffic, the traffic is
drained first; then the revision labels; then the weights. So traffic never reaches pods of a
revision it was not meant for, and at promotion both subsets point at the new pods before the
canary weight returns to 0.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from rollout.api.rollout import Rollout, RolloutSpec
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
from rollout.domain.observed import RouteEdit, RouteState
from rollout.domain.revision import HASH_LABEL
from rollout.domain.steps import steps_of, traffic_at
from rollout.routers.base import RouteConfigError, register

WRITE_ATTEMPTS = 5
MANAGED_ROUTES = "rollout.dev/managed-routes"
MANAGED_SUBSETS = "rollout.dev/managed-subsets"
# Fields of a managed route a header route does not copy: it has its own name, match and
# destination, and mirrors nothing.
NOT_COPIED = frozenset({"name", "match", "route", "mirror", "mirrorPercentage", "mirrors"})


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


class _Session:
    """The API reads of one ``apply``: each object is read from the API at most once, then
    stands for what the API answered to this apply's own writes (a patch returns the object
    as written). A write that fails forgets the object, so its retry reads it again.

    Every patch built from a session object also ``test``s its ``resourceVersion``: a change by
    anyone since that read fails the patch (422) and it is rebuilt from a fresh read, so
    starting from an earlier read of the same apply is never less safe than reading just
    before the patch (whose guards were only the ``test``s of what it replaces).
    """

    def __init__(self, api: ApiReader) -> None:
        self.api = api
        self.objects: dict[tuple[str, str | None, str], Obj | None] = {}

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        key = (res.plural, namespace, name)
        if key not in self.objects:
            self.objects[key] = self.api.get(res, namespace, name)
        return self.objects[key]

    def wrote(self, res: Resource, namespace: str | None, name: str, obj: Obj | None) -> None:
        """The API's answer to a write of the object (None: unknown, read it again)."""
        key = (res.plural, namespace, name)
        if isinstance(obj, dict) and (obj.get("metadata") or {}).get("resourceVersion"):
            self.objects[key] = obj
        else:
            self.objects.pop(key, None)


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


def owner_key(rollout: Rollout) -> str:
    """The key of ``rollout``'s record in the ownership annotations: ``namespace/name``."""
    return f"{rollout.namespace}/{rollout.metadata.name}"


def _everything_asked(spec: RolloutSpec) -> tuple[float, tuple[SetHeaderRoute, ...]]:
    """The largest mirror share and every header route any step of ``spec`` asks for."""
    steps = steps_of(spec)
    mirror = 0.0
    headers: dict[str, SetHeaderRoute] = {}
    for index in range(len(steps)):
        traffic = traffic_at(steps, index)
        mirror = max(mirror, traffic.mirror)
        for route in traffic.header_routes:
            headers.setdefault(route.name, route)
    return mirror, tuple(headers.values())


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
        key = owner_key(rollout)
        mirror_asked, headers_asked = _everything_asked(rollout.spec)
        seen: list[tuple[int, float, tuple[SetHeaderRoute, ...]]] = []
        consistent = True
        edits: list[RouteEdit] = []
        problem: str | None = None
        for ref in istio.virtual_services:
            vs = self._virtual_service(rollout, ref, reader)
            # Whatever the steps will ask for must fit: refused now, before any change. What
            # does not fit is still read, so that the canary's traffic can be drained.
            try:
                desired_http(
                    vs, ref, istio, RouteState(None, None, 0, mirror_asked, headers_asked), key
                )
            except RouteConfigError as error:
                problem = problem or str(error)
            found = read_virtual_service(vs, ref, istio, key)
            seen.extend(found.seen)
            consistent &= found.consistent
            edits.extend(found.edits)
        stable_rev, canary_rev, subset_edits = self._revisions(rollout, reader)
        weight, mirror, headers = seen[0]
        return RouteState(
            stable_rev,
            canary_rev,
            weight,
            mirror,
            headers,
            consistent=consistent and all(s == seen[0] for s in seen),
            edits=(*edits, *subset_edits),
            problem=problem,
        )

    def _get(self, reader: Reader, res: Resource, namespace: str, name: str) -> Obj | None:
        """``name`` from ``reader``; missing there, from the API before it is called missing.

        A watch cache can lag behind the API: an object created just before the Rollout may
        not have reached it yet (each kind has its own watch, in no order with the others, see
        https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
        "Not found" is reported to the user (InvalidSpec, a Warning), so only the API says it.
        """
        found = reader.get(res, namespace, name)
        if found is None and reader is not self.fresh and not isinstance(reader, _Session):
            found = self.fresh.get(res, namespace, name)
        return found

    def _virtual_service(self, rollout: Rollout, ref: VirtualServiceRef, reader: Reader) -> Obj:
        namespace = ref.vs_namespace(rollout.namespace)
        vs = self._get(reader, VIRTUAL_SERVICES, namespace, ref.vs_name)
        if vs is None:
            raise RouteConfigError(f"VirtualService {namespace}/{ref.vs_name} not found")
        return vs

    def _revisions(
        self, rollout: Rollout, reader: Reader
    ) -> tuple[str | None, str | None, tuple[RouteEdit, ...]]:
        istio = rollout.spec.traffic_routing.istio
        if istio.destination_rule is not None:
            dr = self._destination_rule(rollout, reader)
            stable, canary = _subsets(dr, istio)
            return (
                stable.get("labels", {}).get(HASH_LABEL),
                canary.get("labels", {}).get(HASH_LABEL),
                _subset_edits(dr, istio, owner_key(rollout)),
            )
        revisions = []
        for service in (istio.stable_service, istio.canary_service):
            assert service is not None
            svc = self._get(reader, SERVICES, rollout.namespace, service)
            if svc is None:
                raise RouteConfigError(f"Service {rollout.namespace}/{service} not found")
            revisions.append((svc.get("spec", {}).get("selector") or {}).get(HASH_LABEL))
        return revisions[0], revisions[1], ()

    def _destination_rule(self, rollout: Rollout, reader: Reader) -> Obj:
        dr_ref = rollout.spec.traffic_routing.istio.destination_rule
        assert dr_ref is not None
        dr = self._get(reader, DESTINATION_RULES, rollout.namespace, dr_ref.name)
        if dr is None:
            raise RouteConfigError(f"DestinationRule {rollout.namespace}/{dr_ref.name} not found")
        return dr

    # -- apply ------------------------------------------------------------------------------

    def apply(self, rollout: Rollout, desired: RouteState) -> bool:
        """Route as ``desired`` says; whether anything changed.

        Decided from the API, not the watch cache: each routing object is read from the API
        once per apply (``_Session``), and every write starts from that read or from the
        API's answer to this apply's previous write of it (a failed write reads again).
        A weight step is then one GET of each object and one PATCH of the VirtualService.
        """
        session = _Session(self.fresh)
        return self._apply(rollout, desired, session)

    def _apply(self, rollout: Rollout, desired: RouteState, session: _Session) -> bool:
        current = self._read(rollout, session)
        changed = False
        if desired.canary_revision != current.canary_revision and current.sends_canary_traffic:
            drained = RouteState(current.stable_revision, current.canary_revision)
            changed |= self._write_virtual_services(rollout, drained, session)
        changed |= self._write_revisions(rollout, desired, session)
        changed |= self._write_virtual_services(rollout, desired, session)
        return changed

    def reset(self, rollout: Rollout) -> None:
        session = _Session(self.fresh)
        current = self._read(rollout, session)
        stable = current.stable_revision
        self._apply(rollout, RouteState(stable, stable), session)

    def _write_virtual_services(
        self, rollout: Rollout, desired: RouteState, session: _Session
    ) -> bool:
        istio = rollout.spec.traffic_routing.istio
        key = owner_key(rollout)
        changed = False
        for ref in istio.virtual_services:
            namespace = ref.vs_namespace(rollout.namespace)

            def ops_of(vs: Obj, ref: VirtualServiceRef = ref) -> list[Obj]:
                http, record = desired_http(vs, ref, istio, desired, key)
                current = vs.get("spec", {}).get("http")
                ops = _replace_ops("/spec/http", current, http)
                records = _records(vs, MANAGED_ROUTES)
                records[key] = record
                return ops + _annotation_ops(vs, MANAGED_ROUTES, _dump(records))

            def fetch(ref: VirtualServiceRef = ref) -> Obj:
                return self._virtual_service(rollout, ref, session)

            changed |= self._guarded(
                VIRTUAL_SERVICES, namespace, ref.vs_name, ops_of, fetch, session
            )
        return changed

    def _write_revisions(self, rollout: Rollout, desired: RouteState, session: _Session) -> bool:
        istio = rollout.spec.traffic_routing.istio
        if istio.destination_rule is not None:
            dr_ref = istio.destination_rule
            key = owner_key(rollout)

            def relabel(dr: Obj) -> list[Obj]:
                current = dr.get("spec", {}).get("subsets")
                subsets = copy.deepcopy(current or [])
                wanted = {
                    dr_ref.stable_subset: desired.stable_revision,
                    dr_ref.canary_subset: desired.canary_revision,
                }
                for subset in subsets:
                    revision = wanted.get(subset.get("name"))
                    if revision is not None:
                        subset.setdefault("labels", {})[HASH_LABEL] = revision
                ops = _replace_ops("/spec/subsets", current, subsets)
                if not ops:
                    return []
                records = _records(dr, MANAGED_SUBSETS)
                stable, canary = _subsets({"spec": {"subsets": subsets}}, istio)
                records[key] = {
                    "stable": stable.get("labels", {}).get(HASH_LABEL),
                    "canary": canary.get("labels", {}).get(HASH_LABEL),
                }
                return ops + _annotation_ops(dr, MANAGED_SUBSETS, _dump(records))

            return self._guarded(
                DESTINATION_RULES,
                rollout.namespace,
                dr_ref.name,
                relabel,
                lambda: _checked_dr(self._destination_rule(rollout, session), istio),
                session,
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

            def select(svc: Obj, revision: str = revision) -> list[Obj]:
                current = svc.get("spec", {}).get("selector")
                return _replace_ops(
                    "/spec/selector", current, {**(current or {}), HASH_LABEL: revision}
                )

            def fetch(service: str = service) -> Obj:
                svc = session.get(SERVICES, rollout.namespace, service)
                if svc is None:
                    raise RouteConfigError(f"Service {rollout.namespace}/{service} not found")
                return svc

            changed |= self._guarded(SERVICES, rollout.namespace, service, select, fetch, session)
        return changed

    def _guarded(
        self,
        res: Resource,
        namespace: str,
        name: str,
        ops_of: Callable[[Obj], list[Obj]],
        fetch: Callable[[], Obj],
        session: _Session,
    ) -> bool:
        """Apply the JSON patch ``ops_of`` builds from a fresh read (``fetch``, through the
        apply's ``session``); none: nothing to do. The patch also ``test``s the read's
        ``resourceVersion``.

        The operations start with ``test``s of what they replace, so a concurrent change fails
        the patch (409/422): read again and rebuild. A 422 is also how the API refuses an object
        for good (a schema or admission rule, annotations over their size limit): when the
        fresh read shows the object unchanged since the refused patch was built, the ``test``s
        held, so the 422 is that refusal and is raised as it is (``Invalid``: final), not
        retried as a conflict in a backoff loop.
        """
        refused: Invalid | None = None
        refused_version: str | None = None
        for _ in range(WRITE_ATTEMPTS):
            current = fetch()
            version = (current.get("metadata") or {}).get("resourceVersion")
            if refused is not None and version is not None and version == refused_version:
                raise refused
            ops = ops_of(current)
            if not ops:
                return False
            if version is not None:
                ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]
            try:
                written = self.access.patch(res, namespace, name, ops, patch_type="json")
            except Conflict:
                refused = None
                session.wrote(res, namespace, name, None)
                continue  # changed under us: read again and rebuild
            except Invalid as error:
                refused, refused_version = error, version
                session.wrote(res, namespace, name, None)
                continue  # a failed test (changed under us), or a refusal: read again
            session.wrote(res, namespace, name, written)
            return True
        raise Conflict(f"{res.kind} {namespace}/{name} kept changing; gave up after retries")


# -- JSON patches and annotations -----------------------------------------------------------


def _replace_ops(path: str, current: Any, wanted: Any) -> list[Obj]:
    """Replace the value at ``path`` by ``wanted``, guarded by a ``test`` of ``current``."""
    if wanted == current:
        return []
    if current is None:
        return [{"op": "add", "path": path, "value": wanted}]
    return [
        {"op": "test", "path": path, "value": current},
        {"op": "replace", "path": path, "value": wanted},
    ]


def _annotation_ops(obj: Obj, name: str, value: str) -> list[Obj]:
    """Set annotation ``name`` to ``value``, guarded by a ``test`` of all the annotations."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and annotations.get(name) == value:
        return []
    if not isinstance(annotations, dict):
        return [{"op": "add", "path": "/metadata/annotations", "value": {name: value}}]
    pointer = name.replace("~", "~0").replace("/", "~1")
    return [
        {"op": "test", "path": "/metadata/annotations", "value": annotations},
        {"op": "add", "path": f"/metadata/annotations/{pointer}", "value": value},
    ]


def _records(obj: Obj, name: str) -> dict[str, Any]:
    """The ownership records in annotation ``name``: {owner key: record}; unreadable: none.

    An unreadable record owns nothing: what it named is then the user's, never deleted.
    """
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(name)
    try:
        records = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return records if isinstance(records, dict) else {}


def _dump(records: dict[str, Any]) -> str:
    return json.dumps(records, sort_keys=True, separators=(",", ":"))


def _digest(route: Obj) -> str:
    """A short fingerprint of a route as written, to notice later edits by someone else."""
    text = json.dumps(route, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- pure helpers on Istio objects ----------------------------------------------------------


def _where(vs: Obj) -> str:
    meta = vs.get("metadata", {})
    return f"VirtualService {meta.get('namespace')}/{meta.get('name')}"


def _targets(vs: Obj, ref: VirtualServiceRef) -> list[int]:
    """Indexes of the weighted routes to manage in ``vs``."""
    where = _where(vs)
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
    where = f"route {route.get('name') or '(unnamed)'} of {_where(vs)}"
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


def combine_matches(route_match: list[Obj] | None, step: SetHeaderRoute, where: str) -> list[Obj]:
    """The managed route's match entries ANDed with the step's: one entry per pair.

    Istio ORs the entries of a ``match`` list and ANDs the conditions inside one entry, so
    ``(A or B) and (H1 or H2)`` is ``[A+H1, A+H2, B+H1, B+H2]``; a route without match is
    ``[H1, H2]``. A header both sides constrain differently cannot be written in one entry:
    ``RouteConfigError``.
    """
    combined = []
    for base in route_match or [{}]:
        for header_match in step.match:
            entry = copy.deepcopy(base)
            headers = dict(entry.get("headers") or {})
            lowered = {str(k).lower(): k for k in headers}
            for name, rule in header_match.wire()["headers"].items():
                existing = lowered.get(name.lower())
                if existing is not None and headers[existing] != rule:
                    raise RouteConfigError(
                        f"header route {step.name}: header {name} is also matched by {where} "
                        "with another condition; the two cannot be combined"
                    )
                headers[existing if existing is not None else name] = rule
            entry["headers"] = headers
            combined.append(entry)
    return combined


def header_route(
    managed: Obj, step: SetHeaderRoute, name: str, canary_entry: Obj, where: str
) -> Obj:
    """The header route for ``step`` inside the managed route ``managed``, named ``name``.

    It matches what ``managed`` matches AND the step's headers (``combine_matches``), keeps
    every other field of ``managed`` (rewrite, timeout, retries, headers, fault, corsPolicy,
    fields unknown here) and sends everything to the canary through ``canary_entry``, the
    managed route's canary destination with its own settings (its ``headers``); it mirrors
    nothing.
    """
    kept = {k: copy.deepcopy(v) for k, v in managed.items() if k not in NOT_COPIED}
    return {
        "name": name,
        "match": combine_matches(managed.get("match"), step, where),
        **kept,
        "route": [{**copy.deepcopy(canary_entry), "weight": 100}],
    }


def header_route_name(step: str, managed: str, managed_routes: int) -> str:
    """``step`` in a VirtualService with one managed route, ``step-route`` with several."""
    return step if managed_routes == 1 else f"{step}-{managed}"


def _owned_mirror(route: Obj, record: Obj) -> float | None:
    """The share mirrored by the mirror ``record`` says this Rollout put on ``route``."""
    destination = record.get("destination")
    if record.get("field") == "mirrors":
        mirrors = route.get("mirrors")
        index = _own_entry(mirrors, destination)
        if index is None or not isinstance(mirrors, list):
            return None
        return float((mirrors[index].get("percentage") or {}).get("value", 100.0))
    if route.get("mirror") == destination:
        return float((route.get("mirrorPercentage") or {}).get("value", 100.0))
    return None


def _own_entry(mirrors: Any, destination: Any) -> int | None:
    """The index of the router's entry in a ``mirrors`` list: the last one to ``destination``
    (it is appended after the user's, who may mirror to the same destination)."""
    if not isinstance(mirrors, list):
        return None
    for i in range(len(mirrors) - 1, -1, -1):
        entry = mirrors[i]
        if isinstance(entry, dict) and entry.get("destination") == destination:
            return i
    return None


def _drop_mirror(route: Obj, record: Obj) -> None:
    """Remove the mirror ``record`` says this Rollout added, and nothing else."""
    destination = record.get("destination")
    if record.get("field") == "mirrors":
        # The list itself is the user's (the router only appends to one they wrote): it
        # stays, even when it is empty again.
        mirrors = route.get("mirrors")
        index = _own_entry(mirrors, destination)
        if index is not None and isinstance(mirrors, list):
            del mirrors[index]
    elif route.get("mirror") == destination:
        route.pop("mirror", None)
        route.pop("mirrorPercentage", None)


def _add_mirror(route: Obj, destination: Obj, percent: float, where: str) -> Obj:
    """Mirror ``percent`` of ``route`` to ``destination``; the ownership record of it."""
    if isinstance(route.get("mirrors"), list):
        route["mirrors"].append(
            {"destination": copy.deepcopy(destination), "percentage": {"value": percent}}
        )
        return {
            "route": route.get("name"),
            "field": "mirrors",
            "destination": destination,
            "percent": percent,
        }
    if "mirror" in route:
        raise RouteConfigError(
            f"{where} already has a mirror this Rollout did not create: write it as "
            "mirrors: [{destination: ..., percentage: ...}] so that the canary's mirror can be "
            "added next to it"
        )
    route["mirror"] = copy.deepcopy(destination)
    route["mirrorPercentage"] = {"value": percent}
    return {
        "route": route.get("name"),
        "field": "mirror",
        "destination": destination,
        "percent": percent,
    }


def desired_http(
    vs: Obj, ref: VirtualServiceRef, istio: IstioTrafficRouting, desired: RouteState, key: str
) -> tuple[list[Obj], Obj]:
    """The http routes of ``vs`` for ``desired``, and the new ownership record of ``key``.

    The header routes and mirrors the current record lists are removed, then those of
    ``desired`` are added; user routes and fields stay as they are. Raises
    ``RouteConfigError`` when something the user wrote is in the way.
    """
    sides = _sides(istio)
    where = _where(vs)
    http: list[Obj] = copy.deepcopy(vs.get("spec", {}).get("http") or [])
    targets = _targets(vs, ref)
    record = _records(vs, MANAGED_ROUTES).get(key) or {}
    owned_routes = {
        name for entry in record.get("headerRoutes") or [] for name in entry.get("routes") or {}
    }
    old_mirrors = record.get("mirrors") or []
    weights: dict[str, int] = {}
    mirrors: list[Obj] = []
    headers_of: dict[int, list[Obj]] = {}
    header_records: dict[str, dict[str, str]] = {}
    for index in targets:
        route = http[index]
        name = str(route.get("name"))
        route_where = f"route {name} of {where}"
        stable_i, canary_i = _destinations(vs, route, sides)
        entries = route["route"]
        entries[stable_i]["weight"] = 100 - desired.canary_weight
        entries[canary_i]["weight"] = desired.canary_weight
        weights[name] = desired.canary_weight
        canary_destination = entries[canary_i].get("destination") or {}
        for old in old_mirrors:
            if isinstance(old, dict) and old.get("route") == route.get("name"):
                _drop_mirror(route, old)
        if desired.mirror_percent > 0:
            added = _add_mirror(
                route, canary_destination, float(desired.mirror_percent), route_where
            )
            mirrors.append(added)
        built = []
        for step in desired.header_routes:
            route_name = header_route_name(step.name, name, len(targets))
            built.append(header_route(route, step, route_name, entries[canary_i], route_where))
            header_records.setdefault(step.name, {})[route_name] = _digest(built[-1])
        headers_of[index] = built
    result: list[Obj] = []
    taken = set()
    for index, route in enumerate(http):
        if index not in headers_of and route.get("name") in owned_routes:
            continue  # one of ours, not wanted any more (or rebuilt below)
        result.extend(headers_of.get(index, []))
        result.append(route)
        taken.add(route.get("name"))
    for built in headers_of.values():
        for h in built:
            if h["name"] in taken:
                raise RouteConfigError(
                    f"route {h['name']} already exists in {where} and was not created by "
                    "this Rollout"
                )
    new_record: Obj = {"weights": weights}
    if header_records:
        new_record["headerRoutes"] = [
            {
                "step": step.name,
                "match": [m.wire() for m in step.match],
                "routes": header_records[step.name],
            }
            for step in desired.header_routes
        ]
    if mirrors:
        new_record["mirrors"] = mirrors
    return result, new_record


@dataclass(frozen=True)
class _Found:
    seen: list[tuple[int, float, tuple[SetHeaderRoute, ...]]]
    consistent: bool
    edits: tuple[RouteEdit, ...]


def read_virtual_service(
    vs: Obj, ref: VirtualServiceRef, istio: IstioTrafficRouting, key: str
) -> _Found:
    """The traffic ``vs`` gives each managed route, as far as ``key`` owns it.

    Header routes and mirrors count only when the ownership record lists them and they are
    there. ``consistent`` is False when the VirtualService is not exactly what the router
    would write for the state read (an owned route edited, deleted or misplaced); ``edits``
    say what changed since the router's last write.
    """
    sides = _sides(istio)
    where = _where(vs)
    http = vs.get("spec", {}).get("http") or []
    record = _records(vs, MANAGED_ROUTES).get(key) or {}
    by_name = {r.get("name"): r for r in http}
    edits: list[RouteEdit] = []
    headers: list[SetHeaderRoute] = []
    consistent = True
    for entry in record.get("headerRoutes") or []:
        routes = entry.get("routes") or {}
        for name, digest in routes.items():
            found = by_name.get(name)
            if found is None or _digest(found) != digest:
                state = "deleted" if found is None else "edited"
                edits.append(RouteEdit("header route", f"header route {name} of {where}", state))
        if not all(name in by_name for name in routes):
            consistent = False
            continue
        try:
            headers.append(
                SetHeaderRoute.model_validate(
                    {"name": entry.get("step"), "match": entry.get("match")}
                )
            )
        except ValidationError:
            consistent = False  # a record edited beyond recognition: rewritten from desired
    seen = []
    recorded_weights = record.get("weights") or {}
    for index in _targets(vs, ref):
        route = http[index]
        name = route.get("name")
        stable_i, canary_i = _destinations(vs, route, sides)
        entries = route["route"]
        weight = int(entries[canary_i].get("weight", 0))
        stable_weight = int(entries[stable_i].get("weight", 0))
        if recorded_weights.get(name) is not None and recorded_weights[name] != weight:
            edits.append(
                RouteEdit("weights", f"route {name} of {where}", f"{stable_weight}/{weight}")
            )
        mirror = 0.0
        for owned in record.get("mirrors") or []:
            if isinstance(owned, dict) and owned.get("route") == name:
                share = _owned_mirror(route, owned)
                if share is None:
                    edits.append(
                        RouteEdit("mirror", f"mirror of route {name} of {where}", "deleted")
                    )
                    consistent = False
                else:
                    if owned.get("percent") is not None and owned["percent"] != share:
                        what = f"mirror of route {name} of {where}"
                        edits.append(RouteEdit("mirror", what, f"edited to {share}%"))
                    mirror = share
        seen.append((weight, mirror, tuple(headers)))
    if consistent and seen:
        weight, mirror, found_headers = seen[0]
        try:
            rebuilt, _ = desired_http(
                vs, ref, istio, RouteState(None, None, weight, mirror, found_headers), key
            )
            consistent = rebuilt == http
        except RouteConfigError:
            consistent = False
    return _Found(seen, consistent, tuple(edits))


def _subset_edits(dr: Obj, istio: IstioTrafficRouting, key: str) -> tuple[RouteEdit, ...]:
    """The pinned subset labels that differ from what the router last wrote."""
    record = _records(dr, MANAGED_SUBSETS).get(key)
    dr_ref = istio.destination_rule
    if not isinstance(record, dict) or dr_ref is None:
        return ()
    meta = dr.get("metadata", {})
    where = f"DestinationRule {meta.get('namespace')}/{meta.get('name')}"
    stable, canary = _subsets(dr, istio)
    edits = []
    for side, name, subset in (
        ("stable", dr_ref.stable_subset, stable),
        ("canary", dr_ref.canary_subset, canary),
    ):
        label = (subset.get("labels") or {}).get(HASH_LABEL)
        if record.get(side) is not None and label != record.get(side):
            edits.append(RouteEdit("subset", f"{side} subset {name} of {where}", str(label)))
    return tuple(edits)


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
