"""The safety oracle: five invariants judged over a recorded history of API objects. Pure.

A history is every version of the Rollouts, VirtualServices, DestinationRules, Services and
ReplicaSets of a test's namespaces, in resourceVersion order (the sandbox, like etcd, has one
counter for every write), each marked with whether the test itself wrote it. ``check`` replays
it and returns every violation of (issue 12, section 8):

1. each managed route's weights are integers in 0..100 summing to 100 (judged on the versions
   the test did not write: the test may write bad input on purpose);
2. no weighted destination (weight > 0, header routes included) or mirror sends traffic to a
   subset or Service whose selected revision has zero available replicas (``availableReplicas``
   of the ReplicaSets it selects, at that point of the history). Judged only once the Rollout
   whose pods it selects has been Healthy (before that there is no revision to protect), and
   only for states the controller wrote (a routing write that pointed traffic at a revision
   already unavailable for ``lag`` seconds) or left standing for more than ``grace`` seconds
   (a crash the test caused must be repaired within the grace, not at once);
3. after a Failed gate verdict for revision R (the run or a non-dry-run check Failed, or
   ``abortReason: AnalysisFailed``), the weight sent to R on a managed route never rises again,
   until an operator retry (``status.abort`` true -> false) or a new revision (an edit of
   ``spec.template``);
4. nothing the user wrote in a VirtualService or DestinationRule changes except the weights of
   managed routes, the revision label of the stable/canary subsets, the canary mirror of a
   managed route and header routes named after setHeaderRoute steps: each version the test did
   not write is compared with the last version the test wrote (or the first version seen, when
   the writer of the objects is not recorded, as in the e2e demo);
5. no promotion (``stableRevision`` switching to a new revision of a Rollout with canary steps)
   while a non-dry-run check's latest measurement in the current run is not Successful, unless
   the operator asked for ``promoteFull``.

The oracle is deliberately independent of the controller's code: it reads the objects as
``kubectl`` would and shares only the definition of a revision (the pod-template hash label).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rollout.domain.revision import HASH_LABEL

Obj = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name

GRACE_S = 2.5  # how long a state nobody wrote on purpose may stand before it is a violation
LAG_S = 1.0  # how stale the controller's view may be when it writes a routing object
OWN_ANNOTATION = "rollout.dev/"  # annotations the controller may add to record what it owns

NAMES = {
    1: "managed route weights are integers in 0..100 summing to 100",
    2: "no traffic to a revision with zero available replicas",
    3: "no weight rises for a revision after its Failed verdict",
    4: "only what the controller owns changes in the user's routing objects",
    5: "no promotion while a check's latest measurement is not Successful",
}


@dataclass(frozen=True)
class Version:
    """One version of one object, as a watch delivered it.

    ``rv`` is the resourceVersion (one counter for all objects), ``at`` the arrival time in
    seconds (``time.monotonic()``), ``type`` ADDED | MODIFIED | DELETED, ``by_test`` whether the
    test's own client wrote it.
    """

    rv: int
    at: float
    type: str
    kind: str
    namespace: str
    name: str
    obj: Obj = field(compare=False, repr=False)
    by_test: bool = False

    @property
    def key(self) -> Key:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Violation:
    invariant: int
    object: str  # Kind namespace/name
    rv: int
    message: str

    def __str__(self) -> str:
        where = f"{self.object} @rv {self.rv}"
        return f"[{self.invariant}] {NAMES[self.invariant]}: {where}: {self.message}"


def report(violations: Iterable[Violation]) -> str:
    """A readable list, one violation a line, in history order."""
    lines = [str(v) for v in sorted(violations, key=lambda v: (v.rv, v.invariant))]
    return "\n".join(lines)


# -- reading the objects ---------------------------------------------------------------------


def _istio(rollout: Obj) -> Obj:
    return ((rollout.get("spec") or {}).get("trafficRouting") or {}).get("istio") or {}


def _steps(rollout: Obj) -> list[Obj]:
    canary = ((rollout.get("spec") or {}).get("strategy") or {}).get("canary") or {}
    return list(canary.get("steps") or [])


def _vs_namespaces(rollout: Obj, namespace: str) -> set[str]:
    """The namespaces of the VirtualServices ``rollout`` (in ``namespace``) routes through
    (``name.namespace`` refers to another namespace's)."""
    return {
        str(ref.get("name", "")).partition(".")[2] or namespace
        for ref in _istio(rollout).get("virtualServices") or []
    }


def _header_names(rollout: Obj) -> set[str]:
    return {
        str(step["setHeaderRoute"].get("name"))
        for step in _steps(rollout)
        if isinstance(step.get("setHeaderRoute"), dict)
    }


def _short_host(host: str, namespace: str) -> tuple[str, str]:
    """(name, namespace) of a host: ``reviews``, ``reviews.shop``, ``reviews.shop.svc...``."""
    parts = host.split(".")
    return parts[0], parts[1] if len(parts) > 1 else namespace


def _selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _template_labels(obj: Obj) -> dict[str, Any]:
    template = (obj.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def _weight(entry: Obj, entries: list[Obj]) -> Any:
    if "weight" in entry:
        return entry["weight"]
    return 100 if len(entries) == 1 else 0


def _mirror_percent(route: Obj) -> float:
    percentage = route.get("mirrorPercentage")
    if isinstance(percentage, dict) and isinstance(percentage.get("value"), int | float):
        return float(percentage["value"])
    return 100.0


def _mirrors(route: Obj) -> list[tuple[Obj, float]]:
    """Every mirror of a route: ``mirror`` (+ ``mirrorPercentage``) and the ``mirrors`` list."""
    found: list[tuple[Obj, float]] = []
    if isinstance(route.get("mirror"), dict):
        found.append((route["mirror"], _mirror_percent(route)))
    for m in route.get("mirrors") or []:
        if isinstance(m, dict) and isinstance(m.get("destination"), dict):
            pct = (m.get("percentage") or {}).get("value", 100.0)
            found.append((m["destination"], float(pct) if isinstance(pct, int | float) else 100.0))
    return found


def _describe(destination: Obj) -> str:
    return json.dumps(destination, sort_keys=True, separators=(",", ":"))


class _World:
    """The latest version of every object at one point of the history."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.healthy: set[tuple[str, str]] = set()  # rollouts that have been Healthy
        # ReplicaSets without available replicas: since when, and what their pods carry
        self.zero_since: dict[Key, float] = {}
        self.rs_labels: dict[Key, dict[str, Any]] = {}

    def apply(self, v: Version) -> None:
        if v.type == "DELETED":
            self.objects.pop(v.key, None)
        else:
            self.objects[v.key] = v.obj
        if v.kind == "ReplicaSet":
            self.rs_labels[v.key] = _template_labels(v.obj)
            available = (v.obj.get("status") or {}).get("availableReplicas") or 0
            if v.type == "DELETED" or available == 0:
                self.zero_since.setdefault(v.key, v.at)
            else:
                self.zero_since.pop(v.key, None)
        if v.kind == "Rollout" and ((v.obj.get("status") or {}).get("phase")) == "Healthy":
            self.healthy.add((v.namespace, v.name))

    def of(self, kind: str, namespace: str | None = None) -> Iterator[tuple[Key, Obj]]:
        for key, obj in self.objects.items():
            if key[0] == kind and (namespace is None or key[1] == namespace):
                yield key, obj

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((kind, namespace, name))

    # -- who references what

    def rollouts_of_vs(self, namespace: str, name: str) -> list[Obj]:
        found = []
        for (_, ns, _), rollout in self.of("Rollout"):
            for ref in _istio(rollout).get("virtualServices") or []:
                ref_name = str(ref.get("name", ""))
                vs_name, _, vs_ns = ref_name.partition(".")
                if vs_name == name and (vs_ns or ns) == namespace:
                    found.append(rollout)
        return found

    def managed_routes(self, vs: Obj) -> set[int]:
        """Indexes of ``vs``'s http routes that some Rollout manages."""
        meta = vs.get("metadata") or {}
        http = (vs.get("spec") or {}).get("http") or []
        names = [r.get("name") if isinstance(r, dict) else None for r in http]
        managed: set[int] = set()
        for rollout in self.rollouts_of_vs(meta.get("namespace", ""), meta.get("name", "")):
            for ref in _istio(rollout).get("virtualServices") or []:
                if str(ref.get("name", "")).partition(".")[0] != meta.get("name"):
                    continue
                routes = ref.get("routes")
                if routes is None:
                    if len(http) == 1:
                        managed.add(0)
                    continue
                managed |= {i for i, n in enumerate(names) if n in routes}
        return managed

    def canary_sides(self, vs: Obj) -> list[tuple[str | None, str | None]]:
        """(canary subset, canary service) of each Rollout managing ``vs``."""
        meta = vs.get("metadata") or {}
        sides = []
        for rollout in self.rollouts_of_vs(meta.get("namespace", ""), meta.get("name", "")):
            istio = _istio(rollout)
            dr = istio.get("destinationRule") or {}
            sides.append((dr.get("canarySubset"), istio.get("canaryService")))
        return sides

    def is_canary(self, vs: Obj, destination: Obj) -> bool:
        ns = (vs.get("metadata") or {}).get("namespace", "")
        for subset, service in self.canary_sides(vs):
            if subset is not None and destination.get("subset") == subset:
                return True
            if service is not None:
                name, host_ns = _short_host(str(destination.get("host", "")), ns)
                if name == service and host_ns == ns and "subset" not in destination:
                    return True
        return False

    # -- where traffic goes

    def selector_of(self, vs_namespace: str, destination: Obj) -> tuple[str, dict[str, Any]] | None:
        """(namespace, pod labels) a destination selects; None if not a known subset/Service."""
        host = destination.get("host")
        if not isinstance(host, str) or not host:
            return None
        name, ns = _short_host(host, vs_namespace)
        subset = destination.get("subset")
        if subset is not None:
            for _, dr in self.of("DestinationRule", ns):
                dr_host = (dr.get("spec") or {}).get("host")
                if not isinstance(dr_host, str) or _short_host(dr_host, ns) != (name, ns):
                    continue
                for s in (dr.get("spec") or {}).get("subsets") or []:
                    if isinstance(s, dict) and s.get("name") == subset:
                        return ns, dict(s.get("labels") or {})
            return None
        svc = self.get("Service", ns, name)
        if svc is None:
            return None
        selector = (svc.get("spec") or {}).get("selector")
        return (ns, dict(selector)) if selector else None

    def rollout_selected(self, namespace: str, labels: dict[str, Any]) -> str | None:
        """The name of the Rollout whose pods ``labels`` select (revision label aside)."""
        general = {k: v for k, v in labels.items() if k != HASH_LABEL}
        if not general:
            return None
        for (_, _, name), rollout in self.of("Rollout", namespace):
            if _selects(general, _template_labels(rollout)):
                return name
        return None

    def available(self, namespace: str, labels: dict[str, Any]) -> int:
        total = 0
        for _, rs in self.of("ReplicaSet", namespace):
            if _selects(labels, _template_labels(rs)):
                value = (rs.get("status") or {}).get("availableReplicas") or 0
                total += int(value) if isinstance(value, int) else 0
        return total

    def unavailable_since(self, namespace: str, labels: dict[str, Any]) -> float:
        """Since when the pods ``labels`` select have had no available replica."""
        times = [
            at
            for key, at in self.zero_since.items()
            if key[1] == namespace and _selects(labels, self.rs_labels.get(key, {}))
        ]
        return max(times) if times else float("-inf")

    def revision_of(self, vs_namespace: str, destination: Obj) -> str | None:
        """The revision (hash) a destination pins; "*" when it selects every revision."""
        selected = self.selector_of(vs_namespace, destination)
        if selected is None:
            return None
        return str(selected[1].get(HASH_LABEL, "*"))


# -- invariant 1 -----------------------------------------------------------------------------


def _weights_violations(world: _World, v: Version) -> list[Violation]:
    out = []
    http = (v.obj.get("spec") or {}).get("http") or []
    for index in sorted(world.managed_routes(v.obj)):
        route = http[index]
        entries = [e for e in route.get("route") or [] if isinstance(e, dict)]
        weights = [_weight(e, entries) for e in entries]
        label = f"route {route.get('name') or index}"
        bad = [w for w in weights if not (type(w) is int and 0 <= w <= 100)]
        if bad:
            out.append(_v(1, v, f"{label}: weights {weights} (not integers in 0..100)"))
        elif entries and sum(weights) != 100:
            out.append(_v(1, v, f"{label}: weights {weights} sum to {sum(weights)}"))
    return out


def _v(invariant: int, v: Version, message: str) -> Violation:
    return Violation(invariant, f"{v.kind} {v.namespace}/{v.name}", v.rv, message)


# -- invariant 2 -----------------------------------------------------------------------------


@dataclass
class _Open:
    rv: int
    at: float
    obj: str
    message: str
    flagged: bool = False


def _traffic_targets(world: _World) -> dict[str, tuple[str, str, float]]:
    """Every live traffic target with no available replica.

    Returns {violation key: (object, message, since when the target has had no replica)}.
    """
    out: dict[str, tuple[str, str, float]] = {}
    for (_, ns, name), vs in world.of("VirtualService"):
        for index, route in enumerate((vs.get("spec") or {}).get("http") or []):
            if not isinstance(route, dict):
                continue
            entries = [e for e in route.get("route") or [] if isinstance(e, dict)]
            targets: list[tuple[str, Obj]] = []
            for entry in entries:
                weight = _weight(entry, entries)
                if isinstance(weight, int | float) and weight > 0:
                    targets.append((f"weight {weight}", entry.get("destination") or {}))
            for destination, pct in _mirrors(route):
                if pct > 0:
                    targets.append((f"mirror {pct:g}%", destination))
            for what, destination in targets:
                selected = world.selector_of(ns, destination)
                if selected is None:
                    continue
                sel_ns, labels = selected
                rollout = world.rollout_selected(sel_ns, labels)
                if rollout is None or (sel_ns, rollout) not in world.healthy:
                    continue
                if world.available(sel_ns, labels) > 0:
                    continue
                route_name = route.get("name") or f"#{index}"
                key = f"{ns}/{name}/{route_name}/{what.split()[0]}/{_describe(destination)}"
                revision = labels.get(HASH_LABEL, "(every revision)")
                message = (
                    f"route {route_name} sends {what} to {_describe(destination)}, which selects "
                    f"revision {revision} of Rollout {rollout}: 0 available replicas"
                )
                out[key] = (
                    f"VirtualService {ns}/{name}",
                    message,
                    world.unavailable_since(sel_ns, labels),
                )
    return out


class _Availability:
    """Invariant 2 over time: intervals during which traffic reaches 0 available replicas."""

    ROUTING = ("VirtualService", "DestinationRule", "Service")

    def __init__(self, grace: float, lag: float) -> None:
        self.grace = grace
        self.lag = lag
        self.open: dict[str, _Open] = {}
        self.out: list[Violation] = []

    def step(self, world: _World, v: Version) -> None:
        now = _traffic_targets(world)
        controller_routing_write = v.kind in self.ROUTING and not v.by_test
        for key, (obj, message, since) in now.items():
            if key in self.open:
                continue
            opened = _Open(v.rv, v.at, obj, message)
            self.open[key] = opened
            if controller_routing_write and v.at - since >= self.lag:
                opened.flagged = True
                self.out.append(
                    Violation(
                        2,
                        obj,
                        v.rv,
                        f"{message}; written by the controller "
                        + (
                            f"{v.at - since:.1f}s after the revision had none"
                            if since > float("-inf")
                            else "to a revision without any ReplicaSet"
                        ),
                    )
                )
        for key in [k for k in self.open if k not in now]:
            self._close(key, v.at, f"until rv {v.rv}")

    def _close(self, key: str, at: float, until: str) -> None:
        opened = self.open.pop(key)
        lasted = at - opened.at
        if not opened.flagged and lasted > self.grace:
            self.out.append(
                Violation(
                    2,
                    opened.obj,
                    opened.rv,
                    f"{opened.message}; stood {lasted:.1f}s ({until}), "
                    f"longer than the {self.grace:g}s grace",
                )
            )

    def finish(self, end: float) -> None:
        for key in list(self.open):
            self._close(key, end, "until the end of the test")


# -- invariant 3 -----------------------------------------------------------------------------


def _failed_verdict(status: Obj) -> bool:
    if status.get("abortReason") == "AnalysisFailed":
        return True
    analysis = status.get("analysis") or {}
    if analysis.get("phase") == "Failed":
        return True
    return any(
        c.get("phase") == "Failed" and not c.get("dryRun")
        for c in analysis.get("checks") or []
        if isinstance(c, dict)
    )


def _revision_weights(world: _World, namespace: str, rollout: Obj, revision: str) -> dict[str, int]:
    """The weight sent to ``revision`` on each managed route of ``rollout``."""
    out: dict[str, int] = {}
    for ref in _istio(rollout).get("virtualServices") or []:
        vs_name, _, vs_ns = str(ref.get("name", "")).partition(".")
        vs_ns = vs_ns or namespace
        vs = world.get("VirtualService", vs_ns, vs_name)
        if vs is None:
            continue
        http = (vs.get("spec") or {}).get("http") or []
        for index in sorted(world.managed_routes(vs)):
            entries = [e for e in http[index].get("route") or [] if isinstance(e, dict)]
            total = 0
            for entry in entries:
                pinned = world.revision_of(vs_ns, entry.get("destination") or {})
                weight = _weight(entry, entries)
                if pinned in (revision, "*") and isinstance(weight, int):
                    total += weight
            out[f"{vs_ns}/{vs_name}/{http[index].get('name') or index}"] = total
    return out


@dataclass
class _Verdict:
    revision: str
    rv: int
    weights: dict[str, int]
    template: Obj  # the spec.template judged: any edit of it is a new revision


class _AfterFailure:
    def __init__(self) -> None:
        self.verdicts: dict[tuple[str, str], _Verdict] = {}
        # reset by a retry or a new revision: the old verdict may linger in the status until
        # the controller starts over, so no new verdict until the status shows none
        self.stale: set[tuple[str, str]] = set()
        self.out: list[Violation] = []

    def on_rollout(self, world: _World, v: Version, previous: Obj | None) -> None:
        key = (v.namespace, v.name)
        if v.type == "DELETED":
            self.verdicts.pop(key, None)
            return
        status = v.obj.get("status") or {}
        verdict = self.verdicts.get(key)
        if verdict is not None:
            template = (v.obj.get("spec") or {}).get("template") or {}
            retried = bool(((previous or {}).get("status") or {}).get("abort")) and not bool(
                status.get("abort")
            )
            if retried or template != verdict.template:
                del self.verdicts[key]
                self.stale.add(key)
                verdict = None
        failed = _failed_verdict(status)
        if not failed:
            self.stale.discard(key)
        if verdict is None and failed and key not in self.stale and status.get("canaryRevision"):
            revision = str(status["canaryRevision"])
            weights = _revision_weights(world, v.namespace, v.obj, revision)
            template = (v.obj.get("spec") or {}).get("template") or {}
            self.verdicts[key] = _Verdict(revision, v.rv, weights, template)

    def step(self, world: _World, v: Version) -> None:
        for (ns, name), verdict in self.verdicts.items():
            rollout = world.get("Rollout", ns, name)
            if rollout is None:
                continue
            now = _revision_weights(world, ns, rollout, verdict.revision)
            for route, weight in now.items():
                before = verdict.weights.get(route, weight)
                if weight > before:
                    self.out.append(
                        _v(
                            3,
                            v,
                            f"route {route} sends {weight} to revision {verdict.revision} "
                            f"(was {before}) after its Failed verdict at rv {verdict.rv} "
                            f"(Rollout {ns}/{name})",
                        )
                    )
                verdict.weights[route] = weight


# -- invariant 4 -----------------------------------------------------------------------------


def _without_owned(world: _World, obj: Obj, header_names: set[str], baseline: Obj) -> Obj:
    """What the user owns in a VirtualService or DestinationRule (status aside)."""
    meta = obj.get("metadata") or {}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith(OWN_ANNOTATION)  # the controller's own record, whoever copied it
    }
    spec = copy.deepcopy(obj.get("spec") or {})
    if obj.get("kind") == "VirtualService" or "http" in spec:
        managed = world.managed_routes(obj)
        http = spec.get("http") or []
        kept = []
        for index, route in enumerate(http):
            if not isinstance(route, dict):
                kept.append(route)
                continue
            if _is_header_route(route.get("name"), header_names, http, managed):
                continue  # a header route the controller creates
            if index in managed:
                entries = route.get("route") or []
                for entry in entries:
                    if isinstance(entry, dict):
                        entry.pop("weight", None)
                if isinstance(route.get("mirror"), dict) and world.is_canary(obj, route["mirror"]):
                    route.pop("mirror", None)
                    route.pop("mirrorPercentage", None)
                if isinstance(route.get("mirrors"), list):
                    route["mirrors"] = [
                        m
                        for m in route["mirrors"]
                        if not (
                            isinstance(m, dict)
                            and isinstance(m.get("destination"), dict)
                            and world.is_canary(obj, m["destination"])
                        )
                    ]
                    if not route["mirrors"]:
                        del route["mirrors"]
            kept.append(route)
        if "http" in spec:
            spec["http"] = kept
    else:
        pinned = _pinned_subsets(world, meta.get("namespace", ""), meta.get("name", ""))
        for subset in spec.get("subsets") or []:
            if isinstance(subset, dict) and subset.get("name") in pinned:
                labels = subset.get("labels")
                if isinstance(labels, dict):
                    labels.pop(HASH_LABEL, None)
                    if not labels:
                        del subset["labels"]
    return {
        "labels": meta.get("labels") or {},
        "annotations": annotations,
        "spec": spec,
    }


def _is_header_route(name: Any, header_names: set[str], http: list[Any], managed: Any) -> bool:
    """A route named after a setHeaderRoute step: ``<step>``, or ``<step>-<managed route>``
    when the VirtualService has several managed routes."""
    if not isinstance(name, str):
        return False
    if name in header_names:
        return True
    routes = {r.get("name") for i, r in enumerate(http) if isinstance(r, dict) and i in managed}
    return any(f"{step}-{route}" == name for step in header_names for route in routes)


def _pinned_subsets(world: _World, namespace: str, name: str) -> set[str]:
    out: set[str] = set()
    for _, rollout in world.of("Rollout", namespace):
        dr = _istio(rollout).get("destinationRule") or {}
        if dr.get("name") == name:
            out |= {s for s in (dr.get("stableSubset"), dr.get("canarySubset")) if s}
    return out


def _differences(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for k in sorted(set(before) | set(after), key=str):
            out += _differences(before.get(k, "<absent>"), after.get(k, "<absent>"), f"{path}.{k}")
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += _differences(b, a, f"{path}[{i}]")
        return out
    if before == after:
        return []
    return [f"{path or '.'}: {_short(before)} -> {_short(after)}"]


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- invariant 5 -----------------------------------------------------------------------------


def _latest_measurements(status: Obj) -> dict[str, str | None]:
    """{check: None if its latest measurement is Successful, else what it is}, for the
    non-dry-run checks with a measurement in ``status``."""
    out: dict[str, str | None] = {}
    for c in (status.get("analysis") or {}).get("checks") or []:
        if not isinstance(c, dict) or c.get("dryRun"):
            continue
        measurements = c.get("measurements") or []
        if not measurements:
            continue
        last = measurements[-1] or {}
        out[str(c.get("name"))] = (
            None
            if last.get("phase") == "Successful"
            else f"check {c.get('name')}: latest measurement {last.get('phase')} "
            f"(value {last.get('value')}, {last.get('message') or 'no message'})"
        )
    return out


def _unsuccessful_checks(status: Obj) -> list[str]:
    return [p for p in _latest_measurements(status).values() if p is not None]


# -- the replay ------------------------------------------------------------------------------


def check(
    history: Iterable[Version],
    *,
    grace: float = GRACE_S,
    lag: float = LAG_S,
    end: float | None = None,
) -> list[Violation]:
    """Every violation of the five invariants in ``history``.

    ``history`` may come in any order and repeat versions; it is replayed in resourceVersion
    order. ``grace`` (s) is how long a state that nobody wrote on purpose may send traffic to
    a revision without available replicas; ``lag`` (s) how stale the controller's view may be
    when it writes; ``end`` (a ``time.monotonic()`` value) when the recording stopped (default:
    the last arrival).
    """
    unique = {(v.kind, v.namespace, v.name, v.rv): v for v in history}
    ordered = sorted(unique.values(), key=lambda v: v.rv)
    world = _World()
    availability = _Availability(grace, lag)
    after_failure = _AfterFailure()
    out: list[Violation] = []
    baselines: dict[Key, Obj] = {}
    previous_rollout: dict[Key, Obj] = {}
    promote_full: dict[Key, str | None] = {}  # rollout -> canary revision promoteFull was for
    # rollout -> (canary revision, template, {check: problem or None}): each check's latest
    # measurement seen for that canary, kept when a later status no longer shows it
    measured: dict[Key, tuple[Any, Any, dict[str, str | None]]] = {}
    header_history: list[tuple[float, str, set[str]]] = []  # (at, namespace, names)

    for v in ordered:
        world.apply(v)
        if v.kind == "Rollout" and v.type != "DELETED":
            for vs_ns in _vs_namespaces(v.obj, v.namespace):
                header_history.append((v.at, vs_ns, _header_names(v.obj)))
        if v.kind in ("VirtualService", "DestinationRule"):
            if v.type == "DELETED":
                if not v.by_test and v.key in baselines:
                    out.append(_v(4, v, "deleted, not by the test"))
                baselines.pop(v.key, None)
            elif v.by_test or v.key not in baselines:
                baselines[v.key] = v.obj
                if v.kind == "VirtualService" and not v.by_test:
                    out += _weights_violations(world, v)
            else:
                if v.kind == "VirtualService":
                    out += _weights_violations(world, v)
                names: set[str] = set()
                for at, ns, h in header_history:
                    if ns == v.namespace and at >= v.at - grace:
                        names |= h
                for (_, rollout_ns, _), rollout in world.of("Rollout"):
                    if v.namespace in _vs_namespaces(rollout, rollout_ns):
                        names |= _header_names(rollout)
                baseline = baselines[v.key]
                before = _without_owned(world, baseline, names, baseline)
                after = _without_owned(world, v.obj, names, baseline)
                diffs = _differences(before, after)
                if diffs:
                    wrote = (baseline.get("metadata") or {}).get("resourceVersion")
                    out.append(
                        _v(
                            4,
                            v,
                            f"changed since the user's version (rv {wrote}): "
                            + "; ".join(diffs[:6]),
                        )
                    )
        if v.kind == "Rollout":
            prev = previous_rollout.get(v.key)
            after_failure.on_rollout(world, v, prev)
            if v.type == "DELETED":
                previous_rollout.pop(v.key, None)
                measured.pop(v.key, None)
            else:
                out += _promotion_violations(v, prev, promote_full, measured)
                previous_rollout[v.key] = v.obj
        availability.step(world, v)
        after_failure.step(world, v)
    if ordered:
        availability.finish(end if end is not None else ordered[-1].at)
    return sorted(
        out + availability.out + after_failure.out, key=lambda x: (x.rv, x.invariant, x.message)
    )


def _promotion_violations(
    v: Version,
    prev: Obj | None,
    promote_full: dict[Key, str | None],
    measured: dict[Key, tuple[Any, Any, dict[str, str | None]]],
) -> list[Violation]:
    """Invariant 5 for one Rollout version. ``measured`` remembers each check's latest
    measurement for the current canary revision, so that a status that drops the analysis
    (or a run restarted without a measurement) before the promotion does not hide that the
    last verdict seen was not Successful; it is forgotten on a new canary revision, a new
    template or an operator retry."""
    status = v.obj.get("status") or {}
    before = (prev or {}).get("status") or {}
    template = (v.obj.get("spec") or {}).get("template")
    canary = status.get("canaryRevision") or before.get("canaryRevision")
    retried = bool(before.get("abort")) and not bool(status.get("abort"))
    memory = measured.get(v.key)
    if memory is not None and (memory[0] != before.get("canaryRevision") or retried):
        memory = None
    if memory is not None and memory[1] != template:
        memory = None
    latest = dict(memory[2]) if memory is not None else {}
    latest.update(_latest_measurements(before))
    if status.get("promoteFull"):
        promote_full[v.key] = canary
    old, new = before.get("stableRevision"), status.get("stableRevision")
    out: list[Violation] = []
    promoted = bool(old and new and old != new and _steps(v.obj))
    exempt = v.key in promote_full and promote_full[v.key] in (None, new, canary)
    if promoted and not exempt:
        remembered = [p for p in latest.values() if p is not None]
        problems = remembered + [p for p in _unsuccessful_checks(status) if p not in remembered]
        if problems:
            out.append(_v(5, v, f"stableRevision {old} -> {new} while " + "; ".join(problems)))
    # what this version shows, for the next one
    if status.get("canaryRevision") != before.get("canaryRevision") or retried or promoted:
        latest = {}
    latest.update(_latest_measurements(status))
    measured[v.key] = (status.get("canaryRevision"), template, latest)
    return out
