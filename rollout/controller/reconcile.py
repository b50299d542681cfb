"""One reconcile of one Rollout: observe, plan, execute, persist, then say when to come back.

The plan is pure (``rollout.domain.planner``); this module only moves data between it and
the seams. Events are sent after the status is written, so a reconcile that loses a race (its
status patch is a Conflict) and runs again does not report the same transition twice.

The Rollout comes from the watch cache, which can be one write behind: another watch event
(a ReplicaSet, the VirtualService this reconcile just changed) can bring the key back before
our own status write has come back through the watch. Planning from that stale status would
repeat decisions already taken (after a promotion: point the stable subset back at the old
revision, for one reconcile). So the object our last status write returned replaces the
cached one for as long as the cache still holds the version that write replaced.

A write the API refuses for good (``ClusterError.rejects``: 400, 403, 422 ... on a ReplicaSet,
a routing object or the status) is not retried with backoff: sending it again would get the
same answer. A refused plan write leaves the status as it was but for the ``InvalidSpec``
condition (reason ``ApiRejected``, the refused write and the API's message), phase Degraded,
``Progressing=False``, and one Warning Event ``ApiRejected``; the plan's later actions (its
traffic changes) are not made. The Rollout is reconciled again when it or one of its objects
changes (a fix), or after ``REJECTED_REQUEUE_SECONDS`` (an RBAC or admission fix elsewhere);
the same refusal then changes nothing and sends no second Event. A refused status write cannot
be shown on the status: it is one Warning Event per distinct refusal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rollout.api.status import RolloutStatus, Weights
from rollout.cluster.access import ClusterAccess, ClusterError, Conflict, NotFound, Obj
from rollout.controller.execute import ApiRejected, Executor
from rollout.controller.metrics import Metrics
from rollout.controller.observe import Measurer, observe
from rollout.controller.persist import persist
from rollout.domain import planner
from rollout.domain.observed import RouteState, reverted_message
from rollout.domain.plan import EmitEvent, SetRoute
from rollout.domain.revision import Numbered, revision_numbers
from rollout.domain.status import blocked
from rollout.routers.base import TrafficRouter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

API_REJECTED = "ApiRejected"
# How long a Rollout whose write the API refused waits before trying again, when nothing of
# it changes meanwhile (a fix of RBAC, a quota or an admission policy is not watched).
REJECTED_REQUEUE_SECONDS = 300.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    requeue_after: float | None
    writes: int
    wrote_status: bool


class Reconciler:
    def __init__(
        self,
        access: ClusterAccess,
        router: TrafficRouter,
        rollouts: Callable[[str, str], Obj | None],
        replica_sets: Callable[[str, str], list[Obj]],
        metrics: Metrics,
        clock: Clock = utc_now,
        measurer: Measurer | None = None,
    ) -> None:
        """``rollouts(namespace, name)``: the cached Rollout; ``replica_sets(namespace, uid)``:
        the cached ReplicaSets of ``namespace`` controlled by the owner ``uid`` (from an index,
        not a scan; others in the list are ignored)."""
        self.access = access
        self.measurer = measurer
        self.router = router
        self.rollouts = rollouts
        self.replica_sets = replica_sets
        self.metrics = metrics
        self.clock = clock
        self.executor = Executor(access, router)
        # key -> (the resourceVersion our last status write replaced, the object it returned)
        self._written: dict[str, tuple[str, Obj]] = {}
        # key -> the last refusal of its status write that an Event reported
        self._status_refused: dict[str, str] = {}
        self._lock = threading.Lock()

    def _freshest(self, key: str, cached: Obj | None) -> Obj | None:
        """The cached Rollout, or the one our own last write returned if the cache lags."""
        with self._lock:
            written = self._written.get(key)
            if written is None:
                return cached
            replaced, obj = written
            if cached is not None and _version(cached) == replaced:
                return obj
            del self._written[key]  # the cache caught up (or moved on, or the Rollout is gone)
            return cached

    def _remember(self, key: str, replaced: Obj, updated: Obj | None) -> None:
        with self._lock:
            if updated is None:
                self._written.pop(key, None)
            else:
                self._written[key] = (_version(replaced), updated)

    def reconcile(self, key: str) -> Outcome:
        namespace, _, name = key.partition("/")
        obj = self._freshest(key, self.rollouts(namespace, name))
        if obj is not None and (obj.get("metadata") or {}).get("deletionTimestamp"):
            # Being deleted (finalizers, foreground deletion): its dependents are the garbage
            # collector's now; nothing is created, scaled or routed for it any more.
            obj = None
        if obj is None:
            self.metrics.forget(key)
            with self._lock:
                self._status_refused.pop(key, None)
            return Outcome(None, 0, False)
        started = time.perf_counter()
        now = self.clock()
        observed, rollout = observe(
            obj,
            self.replica_sets(namespace, str(obj.get("metadata", {}).get("uid", ""))),
            self.router,
            self.measurer,
            now,
        )
        plan = planner.plan(observed, now)
        writes = 0
        status = plan.status
        events = plan.of_type(EmitEvent)
        requeue_after = plan.requeue_after
        routed: list[SetRoute] = []
        number: int | None = None  # the current revision's number, once its ReplicaSet has it
        if rollout is not None:
            existing = {rs.revision for rs in observed.replica_sets}
            numbers = revision_numbers(
                (Numbered(v.revision, v.number, v.created_at) for v in observed.replica_sets),
                observed.revision,
            )
            try:
                writes += self.executor.run(obj, rollout, plan.actions, existing, routed, numbers)
                writes += self.executor.number_replica_sets(rollout, observed.replica_sets, numbers)
                if observed.revision in existing:
                    number = numbers[observed.revision]
                status = _with_applied_weights(status, plan.of_type(SetRoute))
                events = events + _reverted(observed.route, routed)
            except ApiRejected as rejected:
                # Report it; the plan's status and events did not happen.
                writes += rejected.writes
                log.warning("%s: the API refused a write: %s", key, rejected)
                refusal = blocked(observed, now, str(rejected), reason=API_REJECTED)
                status, events = refusal.status, refusal.of_type(EmitEvent)
                requeue_after = REJECTED_REQUEUE_SECONDS
        try:
            updated = persist(self.access, obj, status)
            wrote = updated is not None
            if wrote:
                self._remember(key, obj, updated)
        except Conflict:
            # Someone (an operator flag, or our own previous write still in flight in the
            # cache) changed the Rollout: plan again on fresh data, sending nothing twice.
            log.debug("%s: status conflict, reconciling again", key)
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
            return Outcome(0.0, writes, False)
        except NotFound:
            return Outcome(None, writes, False)
        except ClusterError as error:
            if not error.rejects:
                raise
            writes += self._status_refused_once(key, obj, error)
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
            return Outcome(REJECTED_REQUEUE_SECONDS, writes, False)
        with self._lock:
            self._status_refused.pop(key, None)
        writes += int(wrote)
        if number is not None:
            annotated = self.executor.annotate_rollout(updated or obj, number)
            if annotated is not None:
                writes += 1
                self._remember(key, obj, annotated)
        sent = self.executor.emit(obj, events)
        writes += sent
        self.metrics.events.inc(sent)
        for event in events:
            if event.type == "Warning" and event.reason in (
                planner.ABORT_ANALYSIS,
                planner.ABORT_DEADLINE,
                planner.ABORT_OPERATOR,
            ):
                self.metrics.aborts.labels(event.reason).inc()
            log.info("%s: %s: %s", key, event.reason, event.message)
        weights = plan.status.weights
        self.metrics.observe_rollout(key, plan.status.phase, weights.canary if weights else 0)
        self.metrics.writes.inc(writes)
        self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
        return Outcome(requeue_after, writes, wrote)

    def _status_refused_once(self, key: str, obj: Obj, error: ClusterError) -> int:
        """One Warning Event per distinct refusal of ``key``'s status write; events sent."""
        namespace, _, name = key.partition("/")
        message = f"writing the status of Rollout {namespace}/{name}: {error.detail}"
        log.warning("%s: the API refused the status write: %s", key, error)
        with self._lock:
            if self._status_refused.get(key) == message:
                return 0
            self._status_refused[key] = message
        sent = self.executor.emit(obj, [EmitEvent("Warning", API_REJECTED, message)])
        self.metrics.events.inc(sent)
        return sent


def _with_applied_weights(status: RolloutStatus, routes: list[SetRoute]) -> RolloutStatus:
    """The weights the router has just written (the API accepted exactly these), so the
    status shows them now rather than one reconcile later, saving a status write per step."""
    if not routes:
        return status
    route = routes[-1].route
    weights = Weights(
        stable=route.stable_weight, canary=route.canary_weight, mirror=route.mirror_percent
    )
    return status.model_copy(update={"weights": weights})


def _reverted(read: RouteState | None, routed: list[SetRoute]) -> list[EmitEvent]:
    """One Normal Event when this reconcile's route write undid edits made by someone else
    (the router's read-back found them: ``RouteState.edits``)."""
    if read is None or not read.edits or not routed:
        return []
    message = reverted_message(read.edits, routed[-1].route)
    return [EmitEvent("Normal", "RouteReverted", message)]


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
