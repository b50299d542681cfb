"""Helpers for the controller integration tests: manifests, a running controller, a recorder.

The controller runs in-process (``Controller`` over ``KubeAccess``) but talks HTTP to the
sandbox process like any client. Tests read and write through the official ``kubernetes``
client only. The ``Recorder`` watches the routing objects, ReplicaSets and Rollouts of some
namespaces in background threads and keeps every version it sees, ordered by resourceVersion
(the sandbox has one counter for every write, as etcd does), so that a test can assert on the
whole sequence of traffic states rather than on the few it happened to poll.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rollout.cluster.kube import KubeAccess, load_api_client
from rollout.controller.runtime import Controller
from rollout.domain.revision import HASH_LABEL
from tests.integration.sandbox_helpers import (
    GROUP,
    VERSION,
    Obj,
    _watch,
    apps_v1,
    core_v1,
    custom_objects,
    eventually,
)

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1beta1"
READY_AFTER = "sandbox.rollout.dev/ready-after"
CRASH = "sandbox.rollout.dev/crash"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"

Steps = list[Obj]  # a canary's steps, as in the manifest

# An unknown field the router must carry through untouched (Istio's types are schema-less in
# the sandbox, as a CRD with x-kubernetes-preserve-unknown-fields would be).
CUSTOM = {"a": 1}


# -- manifests ---------------------------------------------------------------------------------


def pod_template(app: str, image: str, *, crash: bool = False) -> Obj:
    annotations = {READY_AFTER: "0.1"}
    if crash:
        annotations[CRASH] = "true"
    return {
        "metadata": {"labels": {"app": app}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def subset_routing(
    vs: str | list[Obj] = "reviews", dr: str = "reviews", routes: list[str] | None = None
) -> Obj:
    refs = vs if isinstance(vs, list) else [{"name": vs, "routes": routes or ["primary"]}]
    return {
        "istio": {
            "virtualServices": refs,
            "destinationRule": {"name": dr, "stableSubset": "stable", "canarySubset": "canary"},
        }
    }


def host_routing(vs: str = "reviews", stable: str = "reviews-stable") -> Obj:
    return {
        "istio": {
            "virtualServices": [{"name": vs, "routes": ["primary"]}],
            "stableService": stable,
            "canaryService": stable.replace("-stable", "-canary"),
        }
    }


def rollout_manifest(
    name: str = "reviews",
    *,
    steps: Steps,
    image: str = "example.com/reviews:1",
    replicas: int = 5,
    routing: Obj | None = None,
    scale_down: int = 1,
    abort_scale_down: int = 1,
    crash: bool = False,
) -> Obj:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, image, crash=crash),
            "trafficRouting": routing or subset_routing(),
            "strategy": {
                "canary": {
                    "steps": steps,
                    "scaleDownDelaySeconds": scale_down,
                    "abortScaleDownDelaySeconds": abort_scale_down,
                }
            },
        },
    }


def virtual_service(
    name: str = "reviews",
    *,
    host: str = "reviews",
    stable: Obj | None = None,
    canary: Obj | None = None,
    route: str = "primary",
) -> Obj:
    """A VirtualService whose managed route is ``route``, with plenty that must survive.

    Another named route with a uri match comes first (header routes go between the two), the
    managed route has retries, timeout, fault, headers, corsPolicy and an unknown field, and a
    catch-all route to stable follows.
    """
    stable = stable or {"host": host, "subset": "stable"}
    canary = canary or {"host": host, "subset": "canary"}
    return {
        "apiVersion": f"{ISTIO_GROUP}/{ISTIO_VERSION}",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": {"team": "shop"}},
        "spec": {
            "hosts": [host],
            "gateways": ["mesh"],
            "x-custom": copy.deepcopy(CUSTOM),
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin", "port": {"number": 8080}}}],
                    "timeout": "3s",
                },
                {
                    "name": route,
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                    "timeout": "10s",
                    "fault": {
                        "delay": {"percentage": {"value": 0.5}, "fixedDelay": "5s"},
                    },
                    "headers": {"request": {"set": {"x-env": "prod"}}},
                    "corsPolicy": {
                        "allowOrigins": [{"exact": "https://example.com"}],
                        "allowMethods": ["GET", "POST"],
                    },
                    "x-custom": copy.deepcopy(CUSTOM),
                    "route": [
                        {"destination": copy.deepcopy(stable), "weight": 100},
                        {"destination": copy.deepcopy(canary), "weight": 0},
                    ],
                },
                {
                    "name": "fallback",
                    "route": [{"destination": {"host": "static"}}],
                },
            ],
        },
    }


# Istio's CRD stores every field here but ``x-custom`` (its schema prunes unknown fields): compare
# a DestinationRule with ``Cluster.as_stored(destination_rule())``, not with this literal.
TRAFFIC_POLICY = {
    "loadBalancer": {"simple": "LEAST_REQUEST"},
    "connectionPool": {"http": {"http1MaxPendingRequests": 10}},
    "x-custom": CUSTOM,
}


def destination_rule(name: str = "reviews", *, host: str = "reviews", app: str = "reviews") -> Obj:
    return {
        "apiVersion": f"{ISTIO_GROUP}/{ISTIO_VERSION}",
        "kind": "DestinationRule",
        "metadata": {"name": name},
        "spec": {
            "host": host,
            "trafficPolicy": copy.deepcopy(TRAFFIC_POLICY),
            "subsets": [
                {"name": "stable", "labels": {"app": app}},
                {
                    "name": "canary",
                    "labels": {"app": app},
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                },
            ],
        },
    }


def service(name: str, app: str = "reviews") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080}]},
    }


# -- reading routing objects -------------------------------------------------------------------


def http_route(vs: Obj, name: str = "primary") -> Obj:
    for route in vs["spec"].get("http") or []:
        if route.get("name") == name:
            found: Obj = route
            return found
    raise AssertionError(f"no http route {name} in {vs['metadata']['name']}")


def is_canary(destination: Obj) -> bool:
    host = str(destination.get("host", ""))
    return destination.get("subset") == "canary" or host.startswith("reviews-canary")


def canary_weight(vs: Obj, route: str = "primary") -> int:
    """The canary's weight in ``route``; asserts the two weights add up to 100."""
    entries = http_route(vs, route)["route"]
    weights = {is_canary(e["destination"]): int(e.get("weight", 0)) for e in entries}
    assert weights[True] + weights[False] == 100, entries
    return weights[True]


def mirror_of(vs: Obj, route: str = "primary") -> float | None:
    r = http_route(vs, route)
    if "mirror" not in r:
        assert "mirrorPercentage" not in r, r
        return None
    assert is_canary(r["mirror"]), r
    return float(r["mirrorPercentage"]["value"])


def route_names(vs: Obj) -> list[str]:
    return [str(r.get("name")) for r in vs["spec"].get("http") or []]


def subset_labels(dr: Obj) -> dict[str, str | None]:
    return {s["name"]: (s.get("labels") or {}).get(HASH_LABEL) for s in dr["spec"]["subsets"]}


def without_weights(vs: Obj, route: str = "primary") -> Obj:
    """The spec with the managed weights removed: what the router must never change."""
    spec = copy.deepcopy(vs["spec"])
    for r in spec.get("http") or []:
        if r.get("name") == route:
            for entry in r.get("route") or []:
                entry.pop("weight", None)
    return {"spec": spec, "labels": vs["metadata"].get("labels"), "kind": vs.get("kind")}


# -- a namespace's objects, through the official client ----------------------------------------


class Cluster:
    """Reads and writes of one namespace's objects through the official client."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.custom = custom_objects(api_client)
        self.core = core_v1(api_client)
        self.apps = apps_v1(api_client)

    def ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    # istio

    def create_istio(self, plural: str, body: Obj, namespace: str | None = None) -> Obj:
        created: Obj = self.custom.create_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.ns(namespace), plural, body
        )
        return created

    def get_istio(self, plural: str, name: str, namespace: str | None = None) -> Obj:
        found: Obj = self.custom.get_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.ns(namespace), plural, name
        )
        return found

    def as_stored(self, plural: str, body: Obj) -> Obj:
        """``body`` as this API server would store it (a server-side dry-run create under
        another name; nothing is stored): a real Istio CRD's schema prunes unknown fields
        such as ``x-custom``, the sandbox keeps them."""
        renamed = copy.deepcopy(body)
        renamed["metadata"]["name"] = f"{body['metadata']['name']}-as-stored"
        stored: Obj = self.custom.create_namespaced_custom_object(
            ISTIO_GROUP, ISTIO_VERSION, self.namespace, plural, renamed, dry_run="All"
        )
        return stored

    def vs(self, name: str = "reviews", namespace: str | None = None) -> Obj:
        return self.get_istio("virtualservices", name, namespace)

    def dr(self, name: str = "reviews") -> Obj:
        return self.get_istio("destinationrules", name)

    def replace_vs(self, body: Obj, namespace: str | None = None) -> Obj:
        replaced: Obj = self.custom.replace_namespaced_custom_object(
            ISTIO_GROUP,
            ISTIO_VERSION,
            self.ns(namespace),
            "virtualservices",
            body["metadata"]["name"],
            body,
        )
        return replaced

    # services

    def create_service(self, body: Obj) -> None:
        self.core.create_namespaced_service(self.namespace, body)

    def service_selector(self, name: str) -> dict[str, str]:
        svc = self.core.read_namespaced_service(name, self.namespace)
        return dict(svc.spec.selector or {})

    # rollouts

    def create_rollout(self, body: Obj) -> Obj:
        created: Obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "rollouts", body
        )
        return created

    def rollout(self, name: str = "reviews") -> Obj:
        found: Obj = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "rollouts", name
        )
        return found

    def status(self, name: str = "reviews") -> Obj:
        status: Obj = self.rollout(name).get("status") or {}
        return status

    def patch_rollout(self, patch: Obj, name: str = "reviews") -> Obj:
        patched: Obj = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            "rollouts",
            name,
            patch,
            _content_type="application/merge-patch+json",
        )
        return patched

    def set_template(self, template: Obj, name: str = "reviews") -> Obj:
        return self.patch_rollout({"spec": {"template": template}}, name)

    def operator(self, status: Obj, name: str = "reviews") -> Obj:
        """An operator action: a merge patch of the status subresource."""
        patched: Obj = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            "rollouts",
            name,
            {"status": status},
            _content_type="application/merge-patch+json",
        )
        return patched

    def promote(self, name: str = "reviews") -> Obj:
        return self.operator({"pauseConditions": []}, name)

    def abort(self, name: str = "reviews") -> Obj:
        return self.operator({"abort": True}, name)

    def retry(self, name: str = "reviews") -> Obj:
        return self.operator({"abort": False}, name)

    # replica sets and events

    def replica_sets(self) -> dict[str, Obj]:
        """ReplicaSets by name, as raw JSON."""
        reply = self.apps.list_namespaced_replica_set(self.namespace, _preload_content=False)
        items = json.loads(reply.data)["items"]
        return {rs["metadata"]["name"]: rs for rs in items}

    def replica_set(self, name: str) -> Obj:
        rs = self.replica_sets().get(name)
        assert rs is not None, f"no ReplicaSet {name}"
        return rs

    def events(self, name: str = "reviews") -> list[Obj]:
        """Events about the Rollout ``name``, oldest first: (type, reason, message) dicts."""
        listed = self.core.list_namespaced_event(self.namespace)
        out = [
            {
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "rv": e.metadata.resource_version,
            }
            for e in listed.items
            if e.involved_object.kind == "Rollout" and e.involved_object.name == name
        ]
        out.sort(key=lambda e: int(e["rv"]))
        return out

    def wait_events(
        self, reason: str, count: int = 1, name: str = "reviews", timeout: float = 3.0
    ) -> list[Obj]:
        """The events of ``reason`` once there are at least ``count`` (events are sent after
        the status write that they describe, so they can trail it)."""

        def look() -> list[Obj]:
            found = [e for e in self.events(name) if e["reason"] == reason]
            assert len(found) >= count, found
            return found

        return eventually(look, timeout=timeout, interval=0.05)

    # waiting

    def wait_status(
        self, check: Callable[[Obj], bool], name: str = "reviews", timeout: float = 10.0
    ) -> Obj:
        """Poll the Rollout's status until ``check`` holds; the status."""

        def look() -> Obj:
            status = self.status(name)
            assert check(status), status
            return status

        return eventually(look, timeout=timeout, interval=0.05)

    def wait_healthy(self, revision: str | None = None, name: str = "reviews") -> Obj:
        def healthy(s: Obj) -> bool:
            return s.get("phase") == "Healthy" and (
                revision is None or s.get("stableRevision") == revision
            )

        return self.wait_status(healthy, name)


def consistently(fn: Callable[[], None], duration: float, interval: float = 0.05) -> None:
    """Call ``fn`` for ``duration`` seconds; every call must pass (the opposite of eventually).

    For what must *not* happen: a paused rollout must not move, whatever the timers do.
    """
    deadline = time.monotonic() + duration
    while True:
        fn()
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def condition(status: Obj, type_: str) -> Obj:
    for cond in status.get("conditions") or []:
        if cond["type"] == type_:
            found: Obj = cond
            return found
    raise AssertionError(f"no condition {type_} in {status.get('conditions')}")


# -- the controller ----------------------------------------------------------------------------


class ControllerHandle:
    """An in-process ``Controller`` on one namespace, over its own HTTP client."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        workers: int = 2,
        prometheus_url: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workers = workers
        self.prometheus_url = prometheus_url
        self.controller: Controller | None = None

    def start(self) -> Controller:
        access = KubeAccess(load_api_client(str(self.kubeconfig)))
        controller = Controller(
            access,
            namespace=self.namespace,
            workers=self.workers,
            prometheus_url=self.prometheus_url,
        )
        assert controller.start_caches(timeout=10), "watch caches did not fill"
        controller.start_workers()
        self.controller = controller
        return controller

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# -- the recorder ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One version of one object, as a watch delivered it."""

    rv: int
    at: float  # time.monotonic() on arrival
    type: str
    kind: str
    namespace: str
    name: str
    obj: Obj = field(compare=False, repr=False)


@dataclass(frozen=True)
class _Source:
    kind: str
    namespace: str
    list_fn: Callable[..., Any]
    args: tuple[Any, ...]


class Recorder:
    """Watches kinds in namespaces and keeps every version seen; start before acting."""

    KINDS = ("VirtualService", "DestinationRule", "Service", "ReplicaSet", "Rollout")

    def __init__(self, api_client: client.ApiClient, namespaces: Iterable[str]) -> None:
        self.api_client = api_client
        self.sources: list[_Source] = []
        self.namespaces: list[str] = []
        for ns in namespaces:
            self._add_sources(ns)
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def _add_sources(self, ns: str) -> list[_Source]:
        custom = custom_objects(self.api_client)
        core = core_v1(self.api_client)
        apps = apps_v1(self.api_client)
        added = [
            _Source(
                "VirtualService",
                ns,
                custom.list_namespaced_custom_object,
                (ISTIO_GROUP, ISTIO_VERSION, ns, "virtualservices"),
            ),
            _Source(
                "DestinationRule",
                ns,
                custom.list_namespaced_custom_object,
                (ISTIO_GROUP, ISTIO_VERSION, ns, "destinationrules"),
            ),
            _Source("Service", ns, core.list_namespaced_service, (ns,)),
            _Source("ReplicaSet", ns, apps.list_namespaced_replica_set, (ns,)),
            _Source(
                "Rollout",
                ns,
                custom.list_namespaced_custom_object,
                (GROUP, VERSION, ns, "rollouts"),
            ),
        ]
        self.namespaces.append(ns)
        self.sources += added
        return added

    def watch(self, namespace: str) -> None:
        """Also watch ``namespace`` from now on (a running recorder; no-op if watched)."""
        if namespace in self.namespaces:
            return
        self._start(self._add_sources(namespace))

    def start(self) -> Recorder:
        self._start(self.sources)
        return self

    def _start(self, sources: list[_Source]) -> None:
        ready = []
        for source in sources:
            started = threading.Event()
            ready.append(started)
            thread = threading.Thread(
                target=self._run,
                args=(source, started),
                name=f"recorder-{source.kind}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        for started in ready:
            assert started.wait(10), "recorder did not start"

    def stop(self) -> None:
        self._stop.set()  # the watch threads notice within their short server timeout

    def _record(self, type_: str, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        seen = Seen(
            int(meta["resourceVersion"]),
            time.monotonic(),
            type_,
            kind,
            meta.get("namespace", ""),
            meta["name"],
            obj,
        )
        with self._lock:
            self._seen.append(seen)

    def _list(self, source: _Source) -> str:
        raw: Any = source.list_fn(*source.args, _preload_content=False)
        data = json.loads(raw.data)
        for obj in data.get("items") or []:
            self._record("ADDED", source.kind, obj)
        return str(data["metadata"]["resourceVersion"])

    def _run(self, source: _Source, started: threading.Event) -> None:
        try:
            version = self._list(source)
        except Exception as error:  # pragma: no cover - reported by the test
            self.errors.append(f"{source.kind}: {error}")
            started.set()
            return
        started.set()
        while not self._stop.is_set():
            w = _watch.Watch()
            try:
                for event in w.stream(
                    source.list_fn, *source.args, resource_version=version, timeout_seconds=1
                ):
                    obj = event["raw_object"]
                    if event["type"] == "BOOKMARK":
                        version = obj["metadata"]["resourceVersion"]
                        continue
                    if event["type"] == "ERROR":
                        raise ApiException(status=obj.get("code", 500), reason=str(obj))
                    version = obj["metadata"]["resourceVersion"]
                    self._record(event["type"], source.kind, obj)
                    if self._stop.is_set():
                        w.stop()
                        break
            except ApiException as error:
                if self._stop.is_set():
                    return
                if error.status == 410:
                    version = self._list(source)
                    continue
                self.errors.append(f"{source.kind}: {error}")
                return
            except Exception as error:
                if not self._stop.is_set():
                    self.errors.append(f"{source.kind}: {error!r}")
                return

    # -- queries --------------------------------------------------------------------------------

    def timeline(self, kinds: Iterable[str] | None = None) -> list[Seen]:
        """Every version seen, in resourceVersion order (deduplicated)."""
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            seen = list(self._seen)
        unique = {(s.kind, s.namespace, s.name, s.rv): s for s in seen}
        return sorted(
            (s for s in unique.values() if wanted is None or s.kind in wanted),
            key=lambda s: s.rv,
        )

    def of(self, kind: str, name: str, namespace: str | None = None) -> list[Seen]:
        return [
            s
            for s in self.timeline([kind])
            if s.name == name and (namespace is None or s.namespace == namespace)
        ]

    def states(
        self, kind: str, name: str, view: Callable[[Obj], Any], namespace: str | None = None
    ) -> list[Any]:
        """``view`` of each version of one object, consecutive repeats collapsed."""
        out: list[Any] = []
        for seen in self.of(kind, name, namespace):
            if seen.type == "DELETED":
                continue
            value = view(seen.obj)
            if not out or out[-1] != value:
                out.append(value)
        return out

    def weights(self, name: str = "reviews", namespace: str | None = None) -> list[int]:
        return self.states("VirtualService", name, canary_weight, namespace)

    def catch_up(self, timeout: float = 5.0) -> None:
        """Wait until every object that exists now has been seen at its current version."""
        current: dict[tuple[str, str, str], int] = {}
        for source in list(self.sources):
            raw: Any = source.list_fn(*source.args, _preload_content=False)
            for obj in json.loads(raw.data).get("items") or []:
                meta = obj["metadata"]
                key = (source.kind, meta.get("namespace", ""), meta["name"])
                current[key] = int(meta["resourceVersion"])

        def caught_up() -> None:
            assert not self.errors, self.errors
            seen: dict[tuple[str, str, str], int] = {}
            for s in self.timeline():
                key = (s.kind, s.namespace, s.name)
                seen[key] = max(seen.get(key, 0), s.rv)
            behind = {k: v for k, v in current.items() if seen.get(k, 0) < v}
            assert not behind, f"the recorder has not seen {behind} yet"

        eventually(caught_up, timeout=timeout, interval=0.02)
