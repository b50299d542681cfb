"""Simulated traffic through a cluster's VirtualServices, counted as Istio's sidecars count it.

The routing below is pure; what it routes over comes from a ``SnapshotSource``: inside the
sandbox, ``StoreSource`` reads the in-process ``Store``; against any API server,
``rollout.sandbox.mesh.ApiSource`` reads watch caches filled through the Kubernetes API
(``rollout sandbox traffic``). Every tick (~0.1 s) each host of each VirtualService receives
``rps`` requests per second, routed as Istio routes them:

- http routes in order, the first whose ``match`` fits the request (headers exact/prefix/regex,
  uri exact/prefix/regex against the path ``/``); ``user_share`` of the simulated users send
  ``end-user: jason``;
- a weighted destination (a lone destination without weight gets 100), ``mirror`` with
  ``mirrorPercentage`` and each entry of ``mirrors`` with its ``percentage`` (a mirrored
  request is also served and counted by the mirror);
- ``serve`` takes the request's path (``/`` by default, what the simulator's own traffic asks
  for), so a test can check where a request for ``/admin`` would go;
- a destination's ``subset`` through the DestinationRule of that host in the VirtualService's
  namespace, to the ReplicaSets whose pod template labels match both the subset's labels and
  the host Service's selector; a destination without subset through the Service's selector;
- among those ReplicaSets, one picked in proportion to its serving pods: the Ready pods it owns
  when the source sees Pods (a real cluster: kwok's pods; see ``Snapshot.ready_pods``), else
  ``status.availableReplicas`` (the sandbox has no Pods); with none the request fails with 503
  before any sidecar sees it, so nothing is recorded.

An object the router cannot read (no metadata, a weight that is not a number, a route that is
not a mapping) is skipped: a VirtualService that cannot be routed gets no traffic, the others do.

A revision behaves as its pod template's annotations say: ``sandbox.rollout.dev/error-rate``
(share of 5xx: exactly that share of the revision's requests, evenly spread, so any measurement
window sees it — see ``istio_metrics.ErrorShare``), ``sandbox.rollout.dev/latency-ms`` (median,
log-normal) and optionally ``sandbox.rollout.dev/latency-p99-ms``. Randomness is seeded, so a
run is reproducible.

Cost per tick: the simulator routes each VirtualService version from a plan made once per
snapshot (``plan_variant``; ``serve_planned`` makes the same random draws as ``serve``), the
snapshot's lookups are indexed, and ``StoreSource`` reuses its snapshot while none of the four
kinds was written: no scan of a namespace per simulated request.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rollout.sandbox.istio_metrics import ErrorShare, IstioMetrics, Workload, sample
from rollout.sandbox.resources import Registry
from rollout.sandbox.selectors import field_selector, label_selector
from rollout.sandbox.store import Obj, Store

ERROR_RATE = "sandbox.rollout.dev/error-rate"
LATENCY_MS = "sandbox.rollout.dev/latency-ms"
LATENCY_P99_MS = "sandbox.rollout.dev/latency-p99-ms"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"
HASH_LABEL = "rollout.dev/pod-template-hash"
DEFAULT_LATENCY_MS = 20.0
TEST_USER = {"end-user": "jason"}
PATH = "/"

log = logging.getLogger(__name__)


# -- the cluster as the router sees it ---------------------------------------------------------


def readable(obj: Any) -> bool:
    """Whether the router can use an object at all: a mapping with a named ``metadata``."""
    if not isinstance(obj, dict):
        return False
    meta = obj.get("metadata")
    return isinstance(meta, dict) and isinstance(meta.get("name"), str)


@dataclass(frozen=True)
class Snapshot:
    """Services, DestinationRules and ReplicaSets, by namespace (one consistent read).

    ``ready_pods`` maps a ReplicaSet's uid to how many Ready, not terminating pods it owns; a
    ReplicaSet absent from it (no Pods seen: the sandbox has none) serves with its
    ``status.availableReplicas``."""

    services: dict[str, list[Obj]] = field(default_factory=dict)
    destination_rules: dict[str, list[Obj]] = field(default_factory=dict)
    replicasets: dict[str, list[Obj]] = field(default_factory=dict)
    ready_pods: dict[str, int] = field(default_factory=dict)
    # Lookup indexes, built on first use (a snapshot is read-only once made): a lookup costs
    # O(matches), not a scan of the namespace per simulated request.
    _index: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def service(self, namespace: str, name: str) -> Obj | None:
        """The first Service named ``name`` in ``namespace``."""
        index = self._index.get("services")
        if index is None:
            index = {}
            for ns, objs in self.services.items():
                for obj in objs:
                    index.setdefault((ns, obj["metadata"]["name"]), obj)
            self._index["services"] = index
        found: Obj | None = index.get((namespace, name))
        return found

    def rules_for(self, namespace: str, name: str) -> list[Obj]:
        """The DestinationRules of ``namespace`` whose host is the Service ``name``, in order."""
        index = self._index.get("rules")
        if index is None:
            index = {}
            for ns, objs in self.destination_rules.items():
                for rule in objs:
                    spec = rule.get("spec") or {}
                    host = host_parts(str(spec.get("host") or ""), ns)[0]
                    index.setdefault((ns, host), []).append(rule)
            self._index["rules"] = index
        found: list[Obj] = index.get((namespace, name), [])
        return found

    def replicasets_labelled(self, namespace: str, key: str, value: str) -> list[Obj]:
        """The ReplicaSets of ``namespace`` whose pod template has label ``key=value``, in
        order."""
        index = self._index.get("replicasets")
        if index is None:
            index = {}
            for ns, objs in self.replicasets.items():
                for rs in objs:
                    for k, v in _template_labels(rs).items():
                        index.setdefault((ns, k, v), []).append(rs)
            self._index["replicasets"] = index
        found: list[Obj] = index.get((namespace, key, value), [])
        return found

    @staticmethod
    def of(
        services: list[Obj],
        rules: list[Obj],
        replicasets: list[Obj],
        pods: list[Obj] | None = None,
    ) -> Snapshot:
        """Group the objects by namespace, skipping those without a named ``metadata``;
        count the Ready pods of each owning ReplicaSet (``pods``: None when not seen)."""
        snapshot = Snapshot()
        for target, objs in (
            (snapshot.services, services),
            (snapshot.destination_rules, rules),
            (snapshot.replicasets, replicasets),
        ):
            for obj in objs:
                if readable(obj):
                    target.setdefault(obj["metadata"].get("namespace") or "", []).append(obj)
        for pod in pods or []:
            owner = pod_owner(pod)
            if owner is not None:
                snapshot.ready_pods[owner] = snapshot.ready_pods.get(owner, 0) + pod_ready(pod)
        return snapshot


def pod_owner(pod: Any) -> str | None:
    """The uid of the ReplicaSet controlling a pod, if any."""
    if not readable(pod):
        return None
    for ref in pod["metadata"].get("ownerReferences") or []:
        if (
            isinstance(ref, dict)
            and ref.get("kind") == "ReplicaSet"
            and ref.get("controller")
            and isinstance(ref.get("uid"), str)
        ):
            return str(ref["uid"])
    return None


def pod_ready(pod: Obj) -> int:
    """1 when a pod would be a Service endpoint: condition Ready is True, not terminating."""
    if pod["metadata"].get("deletionTimestamp"):
        return 0
    status = pod.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return 1 if condition.get("status") == "True" else 0
    return 0


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def host_parts(host: str, namespace: str) -> tuple[str, str]:
    """(service name, namespace) of a host: ``name``, ``name.ns`` or ``name.ns.svc.cluster...``."""
    labels = host.split(".")
    return labels[0], labels[1] if len(labels) > 1 and labels[1] else namespace


# -- matching ----------------------------------------------------------------------------------


def string_matches(rule: Any, value: str | None) -> bool:
    """Istio's StringMatch: ``exact``, ``prefix`` or ``regex`` (RE2, whole string)."""
    if not isinstance(rule, dict):
        return False
    if value is None:
        return False
    if "exact" in rule:
        return value == str(rule["exact"])
    if "prefix" in rule:
        return value.startswith(str(rule["prefix"]))
    if "regex" in rule:
        try:
            return re.fullmatch(str(rule["regex"]), value) is not None
        except re.error:
            return False
    return True  # an empty StringMatch matches anything present


def request_matches(condition: Any, headers: Mapping[str, str], uri: str = PATH) -> bool:
    """One HTTPMatchRequest: every condition it sets holds (conditions not simulated pass)."""
    if not isinstance(condition, dict):
        return False
    for name, rule in (condition.get("headers") or {}).items():
        if not string_matches(rule, headers.get(str(name).lower())):
            return False
    for name, rule in (condition.get("withoutHeaders") or {}).items():
        if string_matches(rule, headers.get(str(name).lower())):
            return False
    return "uri" not in condition or string_matches(condition["uri"], uri)


def select_route(routes: list[Any], headers: Mapping[str, str], uri: str = PATH) -> Obj | None:
    """The first http route whose ``match`` list (any of it; none: everything) fits."""
    for route in routes:
        if not isinstance(route, dict):
            continue
        matches = route.get("match")
        if not matches or any(request_matches(m, headers, uri) for m in matches):
            return route
    return None


def destination_weights(route: Obj) -> list[tuple[Obj, int]]:
    """(destination, weight) of a route: a lone destination without weight gets 100."""
    entries = [r for r in route.get("route") or [] if isinstance(r, dict)]
    if len(entries) == 1 and entries[0].get("weight") is None:
        return [(entries[0].get("destination") or {}, 100)]
    return [(e.get("destination") or {}, int(e.get("weight") or 0)) for e in entries]


def pick_destination(route: Obj, rng: random.Random) -> Obj | None:
    weighted = [(d, w) for d, w in destination_weights(route) if w > 0]
    if not weighted:
        return None
    return rng.choices([d for d, _ in weighted], weights=[w for _, w in weighted])[0]


def mirror_shares(route: Obj) -> list[tuple[float, Obj]]:
    """``(percent of requests, destination)`` of each mirror of ``route``: ``mirror`` with
    ``mirrorPercentage.value``, then each entry of ``mirrors`` with its ``percentage.value``
    (100 when not set; Istio's ``VirtualService`` reference)."""

    def percent(percentage: object) -> float:
        if isinstance(percentage, dict) and percentage.get("value") is not None:
            return float(percentage["value"])
        return 100.0

    found: list[tuple[float, Obj]] = []
    mirror = route.get("mirror")
    if isinstance(mirror, dict) and mirror.get("host"):
        found.append((percent(route.get("mirrorPercentage")), mirror))
    for entry in route.get("mirrors") or []:
        if isinstance(entry, dict) and isinstance(entry.get("destination"), dict):
            found.append((percent(entry.get("percentage")), entry["destination"]))
    return found


def mirror_destination(route: Obj, rng: random.Random) -> Obj | None:
    """The mirror, for ``mirrorPercentage.value`` % of requests (100 % when not set)."""
    mirror = route.get("mirror")
    if not isinstance(mirror, dict) or not mirror.get("host"):
        return None
    share, _ = mirror_shares(route)[0]  # the mirror comes first
    return mirror if rng.random() * 100.0 < share else None


def mirror_destinations(route: Obj, rng: random.Random) -> list[Obj]:
    """The mirrors a request is copied to: ``mirror`` (as ``mirror_destination``) and each
    entry of ``mirrors``, for its own ``percentage.value`` % of requests (100 % when not set)."""
    return [d for share, d in mirror_shares(route) if rng.random() * 100.0 < share]


# -- endpoints ---------------------------------------------------------------------------------


def _template_labels(rs: Obj) -> dict[str, str]:
    template = (rs.get("spec") or {}).get("template") or {}
    return _str_map((template.get("metadata") or {}).get("labels"))


def _template_annotations(rs: Obj) -> dict[str, str]:
    template = (rs.get("spec") or {}).get("template") or {}
    return _str_map((template.get("metadata") or {}).get("annotations"))


def _selected(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def subset_labels(
    snapshot: Snapshot, namespace: str, host: str, subset: str
) -> dict[str, str] | None:
    """The labels of ``subset`` in the DestinationRule for ``host`` in ``namespace``."""
    name, _ = host_parts(host, namespace)
    for rule in snapshot.rules_for(namespace, name):
        spec = rule.get("spec") or {}
        for entry in spec.get("subsets") or []:
            if isinstance(entry, dict) and entry.get("name") == subset:
                return _str_map(entry.get("labels"))
    return None


def serving_pods(snapshot: Snapshot, rs: Obj) -> int:
    """How many pods of a ReplicaSet serve: its Ready pods when Pods are seen, else
    ``status.availableReplicas`` (what the ReplicaSet controller counts from the same pods)."""
    uid = rs["metadata"].get("uid")
    if isinstance(uid, str) and uid in snapshot.ready_pods:
        return snapshot.ready_pods[uid]
    return int((rs.get("status") or {}).get("availableReplicas") or 0)


def endpoints(snapshot: Snapshot, namespace: str, destination: Obj) -> list[tuple[Obj, int]]:
    """(ReplicaSet, serving pods) behind a destination, those with any serving."""
    name, service_namespace = host_parts(str(destination.get("host") or ""), namespace)
    service = snapshot.service(service_namespace, name)
    if service is None:
        return []
    selector = _str_map((service.get("spec") or {}).get("selector"))
    if not selector:
        return []  # a Service without selector has no endpoints the sandbox manages
    wanted = dict(selector)
    subset = destination.get("subset")
    if subset:
        labels = subset_labels(snapshot, namespace, str(destination.get("host")), str(subset))
        if labels is None:
            return []  # an unknown subset: Envoy has no cluster for it
        wanted.update(labels)
        if any(selector.get(k, v) != v for k, v in labels.items()):
            return []  # the subset contradicts the Service's selector
    found = []
    # Candidates: the ReplicaSets with the rarest of the wanted labels (every one is needed).
    candidates = min(
        (snapshot.replicasets_labelled(service_namespace, k, v) for k, v in wanted.items()),
        key=len,
    )
    for rs in candidates:
        available = serving_pods(snapshot, rs)
        if available > 0 and _selected(_template_labels(rs), wanted):
            found.append((rs, available))
    return found


def pick_endpoint(found: list[tuple[Obj, int]], rng: random.Random) -> Obj | None:
    """A ReplicaSet, chosen in proportion to its available replicas."""
    serving = [(rs, n) for rs, n in found if n > 0]
    if not serving:
        return None
    return rng.choices([rs for rs, _ in serving], weights=[n for _, n in serving])[0]


# -- behaviour ---------------------------------------------------------------------------------


def _float(value: str | None, default: float | None) -> float | None:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        return default


def workload_of(rs: Obj, service: str) -> Workload:
    """The revision a ReplicaSet runs, named as Istio names it, and how it behaves."""
    labels = _template_labels(rs)
    annotations = _template_annotations(rs)
    meta = rs["metadata"]
    latency = _float(annotations.get(LATENCY_MS), DEFAULT_LATENCY_MS) or DEFAULT_LATENCY_MS
    p99 = _float(annotations.get(LATENCY_P99_MS), None)
    return Workload(
        namespace=meta.get("namespace") or "",
        service=labels.get(CANONICAL_NAME) or labels.get("app") or meta["name"],
        revision=labels.get(CANONICAL_REVISION)
        or labels.get(HASH_LABEL)
        or (meta.get("labels") or {}).get(HASH_LABEL)
        or "latest",
        error_rate=min(1.0, max(0.0, _float(annotations.get(ERROR_RATE), 0.0) or 0.0)),
        latency_ms=max(latency, 1e-3),
        latency_p99_ms=p99 if p99 is not None and p99 > 0 else None,
        workload=meta["name"],
        destination_service=service,
    )


# -- one request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    workload: Workload
    code: int
    millis: float


def serve(
    snapshot: Snapshot,
    virtual_service: Obj,
    headers: Mapping[str, str],
    rng: random.Random,
    uri: str = PATH,
    errors: ErrorShare | None = None,
) -> list[Served]:
    """What one request for ``uri`` to a VirtualService's host produces: the served copy, and
    the mirrors.

    ``errors`` decides which requests fail (exact shares); without it, a coin flip each."""
    namespace = virtual_service["metadata"].get("namespace") or ""
    route = select_route((virtual_service.get("spec") or {}).get("http") or [], headers, uri)
    if route is None:
        return []
    results = []
    for destination in (pick_destination(route, rng), *mirror_destinations(route, rng)):
        if destination is None:
            continue
        rs = pick_endpoint(endpoints(snapshot, namespace, destination), rng)
        if rs is None:
            continue  # 503 no healthy upstream: no destination sidecar records it
        service, _ = host_parts(str(destination.get("host") or ""), namespace)
        workload = workload_of(rs, service)
        code, millis = sample(workload, rng, errors)
        results.append(Served(workload, code, millis))
    return results


# -- routing plans: what ``serve`` decides, worked out once per VirtualService and snapshot ------


Table = tuple[list[Workload], list[float]]  # workloads and their cumulative weights


@dataclass(frozen=True)
class Variant:
    """The routing of one kind of request (with or without the test user's header): the
    weighted destinations, each with its serving revisions (an empty table: 503), and the
    mirrors with their shares in percent."""

    destinations: list[Table]
    cumulative: list[float]
    mirrors: list[tuple[float, Table]]

    @property
    def idle(self) -> bool:
        """No request of this kind is ever recorded."""
        return not any(t[0] for t in self.destinations) and not any(t[0] for _, t in self.mirrors)


def _table(snapshot: Snapshot, namespace: str, destination: Obj) -> Table:
    found = [(rs, n) for rs, n in endpoints(snapshot, namespace, destination) if n > 0]
    service, _ = host_parts(str(destination.get("host") or ""), namespace)
    workloads = [workload_of(rs, service) for rs, _ in found]
    total, cumulative = 0.0, []
    for _, n in found:
        total += n
        cumulative.append(total)
    return workloads, cumulative


def plan_variant(
    snapshot: Snapshot, virtual_service: Obj, headers: Mapping[str, str]
) -> Variant | None:
    """How ``serve`` routes a request with ``headers`` for the path ``/`` (None: no route)."""
    namespace = virtual_service["metadata"].get("namespace") or ""
    route = select_route((virtual_service.get("spec") or {}).get("http") or [], headers, PATH)
    if route is None:
        return None
    weighted = [(d, w) for d, w in destination_weights(route) if w > 0]
    total, cumulative = 0.0, []
    for _, w in weighted:
        total += w
        cumulative.append(total)
    mirrors = [(share, _table(snapshot, namespace, d)) for share, d in mirror_shares(route)]
    return Variant([_table(snapshot, namespace, d) for d, _ in weighted], cumulative, mirrors)


def serve_planned(
    variant: Variant, rng: random.Random, errors: ErrorShare | None = None
) -> list[Served]:
    """``serve`` of one request, from its plan: the same random draws in the same order
    (destination by weight, each mirror by its share, then each copy's revision by serving pods
    and its outcome), so the same seed gives the same requests."""
    chosen: list[Table] = []
    if variant.destinations:
        chosen.append(rng.choices(variant.destinations, cum_weights=variant.cumulative)[0])
    chosen += [table for share, table in variant.mirrors if rng.random() * 100.0 < share]
    results = []
    for workloads, cumulative in chosen:
        if workloads:
            workload = rng.choices(workloads, cum_weights=cumulative)[0]
            results.append(Served(workload, *sample(workload, rng, errors)))
    return results


# -- the simulator -----------------------------------------------------------------------------


class SnapshotSource(Protocol):
    """Where the simulator reads the cluster from, once per tick."""

    @property
    def closed(self) -> bool:
        """True once the cluster is gone: the simulator stops."""
        ...

    def read(self) -> tuple[Snapshot, list[Obj]]:
        """The cluster as the router sees it, and the VirtualServices to send traffic to."""
        ...


class StoreSource:
    """The sandbox's in-process ``Store``, read directly (no HTTP, no copies kept)."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self._last: tuple[tuple[int, ...], tuple[Snapshot, list[Obj]]] | None = None
        self._types = {
            plural: registry.get(group, plural)
            for group, plural in (
                ("", "services"),
                ("apps", "replicasets"),
                ("networking.istio.io", "virtualservices"),
                ("networking.istio.io", "destinationrules"),
            )
        }

    @property
    def closed(self) -> bool:
        return bool(self.store.closed)

    def _list(self, plural: str) -> list[Obj]:
        rtype = self._types[plural]
        if rtype is None:
            return []
        items, _ = self.store.list(rtype, None, label_selector(None), field_selector(None))
        return items

    def read(self) -> tuple[Snapshot, list[Obj]]:
        """The same snapshot object as last time while none of the four kinds was written."""
        versions = tuple(
            self.store.type_version(t.key) if t is not None else 0 for t in self._types.values()
        )
        if self._last is not None and self._last[0] == versions:
            return self._last[1]
        read = (
            Snapshot.of(
                self._list("services"), self._list("destinationrules"), self._list("replicasets")
            ),
            self._list("virtualservices"),
        )
        self._last = (versions, read)
        return read


class TrafficSimulator:
    """``rps`` requests per second to every host of every VirtualService the ``source`` shows,
    routed by ``serve`` and recorded in ``metrics``, every ``tick`` seconds in a thread."""

    def __init__(
        self,
        source: SnapshotSource,
        metrics: IstioMetrics,
        *,
        rps: float = 50.0,
        user_share: float = 0.1,
        tick: float = 0.1,
        seed: int = 7,
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.rps = rps
        self.user_share = user_share
        self.tick = tick
        self._random = random.Random(seed)
        self._errors = ErrorShare()
        self._carry: dict[tuple[str, str], float] = {}
        self._unroutable: set[tuple[str, str]] = set()
        # Routing plans of the current snapshot, by VirtualService (uid, resourceVersion): a
        # plan per version and snapshot, not a routing decision worked out per request.
        self._plans: dict[tuple[str, str], tuple[Variant | None, Variant | None]] = {}
        self._planned_for: Snapshot | None = None
        self._planned_list: list[Obj] | None = None
        # ids of the VirtualServices (held by ``_planned_list``) none of whose requests can be
        # served in ``_planned_for``: skipped until the snapshot changes.
        self._idle: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> tuple[Snapshot, list[Obj]]:
        return self.source.read()

    def step(self, seconds: float) -> int:
        """Send ``seconds`` worth of requests to every host; return how many were recorded.

        A VirtualService the router cannot read is skipped (logged once per version)."""
        snapshot, virtual_services = self.snapshot()
        if snapshot is not self._planned_for or virtual_services is not self._planned_list:
            self._plans = {}
            self._idle = set()
            self._planned_for = snapshot
            self._planned_list = virtual_services
        recorded = 0
        live: set[tuple[str, str]] = set()
        for vs in virtual_services:
            if id(vs) in self._idle:
                continue  # nothing of it can be served in this snapshot: not even looked at
            try:
                recorded += self._send(snapshot, vs, seconds, live)
            except Exception as error:  # a bad object must not stop the traffic of the others
                meta = vs.get("metadata") if isinstance(vs, dict) else None
                meta = meta if isinstance(meta, dict) else {}
                version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
                if version not in self._unroutable:
                    self._unroutable.add(version)
                    log.warning(
                        "VirtualService %s/%s cannot be routed, skipped: %r",
                        meta.get("namespace"),
                        meta.get("name"),
                        error,
                    )
        self._carry = {k: v for k, v in self._carry.items() if k in live}
        return recorded

    def _plan(self, snapshot: Snapshot, vs: Obj) -> tuple[Variant | None, Variant | None]:
        meta = vs["metadata"]
        version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        plan = self._plans.get(version)
        if plan is None:
            plan = (plan_variant(snapshot, vs, {}), plan_variant(snapshot, vs, TEST_USER))
            self._plans[version] = plan
        return plan

    def _send(self, snapshot: Snapshot, vs: Obj, seconds: float, live: set[tuple[str, str]]) -> int:
        recorded = 0
        plain, user_variant = self._plan(snapshot, vs)
        # A VirtualService none of whose requests can be served records nothing: its requests
        # are not drawn one by one (the outcome is the same: no sidecar sees them).
        idle = (plain is None or plain.idle) and (user_variant is None or user_variant.idle)
        for host in (vs.get("spec") or {}).get("hosts") or []:
            key = (str(vs["metadata"].get("uid")), str(host))
            live.add(key)
            due = self.rps * seconds + self._carry.get(key, 0.0)
            count = int(due)
            self._carry[key] = due - count
            if idle:
                self._idle.add(id(vs))
                continue
            for _ in range(count):
                user = self._random.random() < self.user_share
                variant = user_variant if user else plain
                if variant is None:
                    continue
                for served in serve_planned(variant, self._random, self._errors):
                    self.metrics.record(served.workload, served.code, served.millis)
                    recorded += 1
        return recorded

    def start(self) -> None:
        def loop() -> None:
            last = time.monotonic()
            while not self._stop.wait(self.tick) and not self.source.closed:
                now = time.monotonic()
                try:
                    self.step(now - last)
                except Exception:  # never let the traffic thread die silently
                    log.exception("simulated traffic: a tick failed")
                last = now

        self._thread = threading.Thread(target=loop, name="sandbox-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
