"""The controller process: watch caches, the queue, workers and timers around the Reconciler.

Watch events enqueue the key of the Rollout they concern: a Rollout itself, the owner of a
ReplicaSet, every Rollout whose traffic routing names a changed VirtualService,
DestinationRule or Service, or whose gate names a changed AnalysisTemplate (so that a canary
held by its preflight for a missing template goes on once the template is created). Workers
take keys from the queue (never one key on two workers), reconcile, and schedule the next look
through the timers when the plan asks for one. A failed reconcile is retried with capped
exponential backoff — except one whose write the leader fence refused (``NotLeader``): that
key is dropped, with no retry and no Event, since this replica is about to stop (a new leader
reconciles every Rollout when it starts).

Sharding (``shard_selector``, a label selector): the Rollout cache lists and watches only the
Rollouts it selects, so this controller never holds another shard's Rollout. Every key it
reconciles is read from that cache, and a key whose Rollout is not there is a no-op (nothing
is created, changed or deleted): a ReplicaSet event of another shard's Rollout is not even
queued, and a Rollout whose labels move it to another shard leaves the cache through the
watch's DELETED, which cancels its timer; its retries and requeues are dropped from then on.
A reconcile already running at that moment writes its status with the resourceVersion it read,
which the label change has moved on: the API refuses it (409) and the retry finds no Rollout.
The other caches (ReplicaSets, routing objects, templates) are not sharded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rollout.cluster.access import (
    ANALYSIS_TEMPLATES,
    DESTINATION_RULES,
    REPLICA_SETS,
    ROLLOUTS,
    SERVICES,
    VIRTUAL_SERVICES,
    ClusterAccess,
    ClusterError,
    NotFound,
    NotLeader,
    Obj,
    Resource,
)
from rollout.cluster.cache import Informer
from rollout.controller.gates import GateMeasurer
from rollout.controller.metrics import Metrics
from rollout.controller.queue import WorkQueue
from rollout.controller.reconcile import Clock, Reconciler, utc_now
from rollout.controller.timers import Timers
from rollout.routers.base import RouteConfigError
from rollout.routers.istio import IstioRouter

log = logging.getLogger(__name__)

# Informer indexes: ReplicaSets by controller owner (namespace, uid); Rollouts by the routing
# objects (plural, namespace, name) and the AnalysisTemplates (namespace, name) they name.
OWNER = "owner"
ROUTING = "routing"
TEMPLATES = "templates"


def rollout_key(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def routing_refs(rollout: Obj) -> set[tuple[str, str, str]]:
    """``(plural, namespace, name)`` of the routing objects a raw Rollout names."""
    namespace = rollout.get("metadata", {}).get("namespace", "")
    istio = ((rollout.get("spec") or {}).get("trafficRouting") or {}).get("istio") or {}
    refs: set[tuple[str, str, str]] = set()
    for vs in istio.get("virtualServices") or []:
        name = str((vs or {}).get("name", ""))
        vs_name, _, vs_namespace = name.partition(".")
        refs.add(("virtualservices", vs_namespace or namespace, vs_name))
    dr = istio.get("destinationRule") or {}
    if dr.get("name"):
        refs.add(("destinationrules", namespace, dr["name"]))
    for field in ("stableService", "canaryService"):
        if istio.get(field):
            refs.add(("services", namespace, istio[field]))
    return refs


def controller_uids(replica_set: Obj) -> list[tuple[str, str]]:
    """``(namespace, uid)`` of the controller owner of a raw ReplicaSet (the owner index)."""
    meta = replica_set.get("metadata", {})
    namespace = meta.get("namespace") or ""
    return [
        (namespace, str(ref["uid"]))
        for ref in meta.get("ownerReferences") or []
        if isinstance(ref, dict) and ref.get("controller") and ref.get("uid")
    ]


def template_refs(rollout: Obj) -> set[tuple[str, str]]:
    """``(namespace, name)`` of the AnalysisTemplates a raw Rollout's gate names."""
    namespace = rollout.get("metadata", {}).get("namespace", "")
    analysis = (rollout.get("spec") or {}).get("analysis") or {}
    refs = set()
    for check in analysis.get("checks") or []:
        ref = (check or {}).get("templateRef") or {}
        if ref.get("name"):
            refs.add((namespace, str(ref["name"])))
    return refs


Intent = tuple[object, bool, bool, frozenset[str], object]


def operator_intent(rollout: Obj) -> Intent:
    """What users set: the spec's generation, the abort and promoteFull flags, the pauses (a
    ``pausedByUser`` request counting as the PausedByUser pause it becomes);
    and the step, to tell a pause the user lifted from one the controller ended."""
    status = rollout.get("status") or {}
    pauses = frozenset(str(p.get("reason")) for p in status.get("pauseConditions") or [])
    if status.get("pausedByUser") is True:  # the Argo CD pause action's request
        pauses |= {"PausedByUser"}
    return (
        rollout.get("metadata", {}).get("generation"),
        bool(status.get("abort")),
        bool(status.get("promoteFull")),
        pauses,
        status.get("currentStepIndex"),
    )


def is_operator_action(before: Intent, after: Intent) -> bool:
    """A new spec, abort set or cleared (abort, retry), promoteFull set, a user's pause added
    or lifted (pause, resume), a step's pause lifted with the step unchanged (promote).

    Not the echo of the controller's own status write: it ends a step's pause in the write
    that moves to the next step (every timed pause of every Rollout: as urgent keys they
    crowded the urgent worker, and an abort waited behind them), and it clears promoteFull
    once promoted. The CLI's status patches never change the step (``rollout.ops``).
    """
    generation, abort, promote_full, pauses, step = before
    if generation != after[0] or abort != after[1] or (after[2] and not promote_full):
        return True
    if ("PausedByUser" in pauses) != ("PausedByUser" in after[3]):
        return True
    return bool(pauses - after[3]) and step == after[4]


def is_abort(before: Intent, after: Intent) -> bool:
    """``status.abort`` set: served before every other operator action (traffic off a canary
    goes before a burst of new specs)."""
    return after[1] and not before[1]


class CacheReader:
    """The router's reads, served from the watch caches.

    A controller limited to one namespace (``--namespace``) has no cache of the others, yet a
    Rollout may name a VirtualService there (``name.namespace``, e.g. a gateway's in
    istio-system): those reads go to the API. Such an object is not watched, so an edit of it
    is seen at the Rollout's next reconcile rather than at once.
    """

    def __init__(self, informers: dict[str, Informer], access: ClusterAccess) -> None:
        self.informers = informers
        self.access = access

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        informer = self.informers.get(res.plural)
        if informer is None or informer.namespace not in (None, namespace):
            try:
                return self.access.get(res, namespace, name)
            except NotFound:
                return None
        return informer.get(namespace, name)


class Controller:
    def __init__(
        self,
        access: ClusterAccess,
        *,
        namespace: str | None = None,
        workers: int = 4,
        metrics: Metrics | None = None,
        clock: Clock = utc_now,
        prometheus_url: str | None = None,
        shard_selector: str | None = None,
    ) -> None:
        self.access = access
        self.namespace = namespace
        self.shard_selector = shard_selector or None
        self.workers = workers
        self.metrics = metrics or Metrics()
        self.queue = WorkQueue(on_wait=self.metrics.queue_wait_seconds.observe)
        self.metrics.queue_depth.set_function(lambda: len(self.queue))
        self.timers = Timers(self.queue.add)
        self.informers: dict[str, Informer] = {
            res.plural: Informer(
                access,
                res,
                namespace,
                label_selector=self.shard_selector if res is ROLLOUTS else None,
            )
            for res in (
                ROLLOUTS,
                REPLICA_SETS,
                VIRTUAL_SERVICES,
                DESTINATION_RULES,
                SERVICES,
                ANALYSIS_TEMPLATES,
            )
        }
        # What handlers and reconciles look up instead of scanning every object.
        self.informers["replicasets"].add_index(OWNER, controller_uids)
        self.informers["rollouts"].add_index(ROUTING, routing_refs)
        self.informers["rollouts"].add_index(TEMPLATES, template_refs)
        self.router = IstioRouter(access, CacheReader(self.informers, access))
        self.gates = GateMeasurer(access, self.informers["analysistemplates"].get, prometheus_url)
        self.reconciler = Reconciler(
            access,
            self.router,
            self.informers["rollouts"].get,
            self._owned_replica_sets,
            self.metrics,
            clock,
            self.gates,
        )
        self.informers["rollouts"].add_handler(self._on_rollout)
        self.informers["replicasets"].add_handler(self._on_replica_set)
        for plural in ("virtualservices", "destinationrules", "services"):
            self.informers[plural].add_handler(self._routing_handler(plural))
        self.informers["analysistemplates"].add_handler(self._on_template)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # key -> what the user last asked for; a change of it is served before anything else
        self._intent: dict[str, Intent] = {}
        self.ready = threading.Event()

    def _owned_replica_sets(self, namespace: str, uid: str) -> list[Obj]:
        return self.informers["replicasets"].by_index(OWNER, (namespace, uid))

    # -- event handlers (run on informer threads: quick) --------------------------------------

    def _on_rollout(self, type_: str, obj: Obj) -> None:
        key = rollout_key(obj)
        if type_ == "DELETED":
            self.timers.cancel(key)
            self._intent.pop(key, None)
            self.queue.add(key)
            return
        intent = operator_intent(obj)
        previous = self._intent.get(key)
        self._intent[key] = intent
        if previous is None:
            self.queue.add(key)
        else:
            urgent = is_operator_action(previous, intent)
            self.queue.add(key, urgent=urgent, abort=is_abort(previous, intent))

    def _on_replica_set(self, type_: str, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == "Rollout" and ref.get("controller"):
                key = f"{meta.get('namespace', '')}/{ref.get('name', '')}"
                if self._owns(key):  # not another shard's (nor an unknown) Rollout
                    self.queue.add(key)

    def _owns(self, key: str) -> bool:
        """Whether ``key``'s Rollout is in this controller's cache (its shard)."""
        namespace, _, name = key.partition("/")
        return self.informers["rollouts"].get(namespace, name) is not None

    def _routing_handler(self, plural: str) -> Callable[[str, Obj], None]:
        def handler(type_: str, obj: Obj) -> None:
            meta = obj.get("metadata", {})
            changed = (plural, meta.get("namespace", ""), meta.get("name", ""))
            for rollout in self.informers["rollouts"].by_index(ROUTING, changed):
                self.queue.add(rollout_key(rollout))

        return handler

    def _on_template(self, type_: str, obj: Obj) -> None:
        meta = obj.get("metadata", {})
        changed = (meta.get("namespace", ""), meta.get("name", ""))
        for rollout in self.informers["rollouts"].by_index(TEMPLATES, changed):
            self.queue.add(rollout_key(rollout))

    # -- running --------------------------------------------------------------------------

    def start_caches(self, timeout: float = 60.0) -> bool:
        for informer in self.informers.values():
            informer.start()
        synced = all(i.synced.wait(timeout) for i in self.informers.values())
        if synced:
            self.ready.set()
        return synced

    def start_workers(self) -> None:
        self.timers.start()
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        # One more worker takes only urgent keys (an operator's abort, promote or pause, a new
        # spec): when every worker is busy, an abort is not kept waiting for one to finish.
        thread = threading.Thread(
            target=self._work, args=(True,), name="worker-urgent", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        for rollout in self.informers["rollouts"].list():
            self.queue.add(rollout_key(rollout))

    def _work(self, urgent_only: bool = False) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=1.0, urgent_only=urgent_only)
            if key is None:
                continue
            try:
                outcome = self.reconciler.reconcile(key)
            except NotLeader as error:
                self.queue.forget(key)
                log.debug("%s: not reconciled: %s", key, error)
            except (ClusterError, RouteConfigError) as error:
                if not self._owns(key):  # gone, or moved to another shard meanwhile
                    self.queue.forget(key)
                    log.debug("%s: not retried, no longer in this shard: %s", key, error)
                    continue
                delay = self.queue.backoff(key)
                self.metrics.errors.inc()
                log.warning("%s: reconcile failed (%s); retrying in %.2fs", key, error, delay)
                self.timers.after(key, delay)
            except Exception:
                if not self._owns(key):
                    self.queue.forget(key)
                    log.exception(
                        "%s: reconcile crashed; not retried, no longer in this shard", key
                    )
                    continue
                delay = self.queue.backoff(key)
                self.metrics.errors.inc()
                log.exception("%s: reconcile crashed; retrying in %.2fs", key, delay)
                self.timers.after(key, delay)
            else:
                self.queue.forget(key)
                after = outcome.requeue_after
                # A status write comes back as a watch event, which brings the key back with a
                # fresh cache; an immediate requeue is only needed when nothing was written.
                if (
                    after is not None
                    and not (after == 0 and outcome.wrote_status)
                    and self._owns(key)
                ):
                    self.timers.after(key, after)
            finally:
                self.queue.done(key)

    def stop(self) -> None:
        """Stop taking keys, let running reconciles finish, stop timers and caches."""
        self._stop.set()
        self.queue.shut_down()
        for thread in self._threads:
            thread.join(timeout=30)
        self.timers.stop()
        self.gates.close()
        for informer in self.informers.values():
            informer.stop()
