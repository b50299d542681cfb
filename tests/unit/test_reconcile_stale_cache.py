"""The reconciler against a watch cache that lags one status write behind.

After a status write, another watch event (the VirtualService the reconcile just changed, a
ReplicaSet) can bring the key back before the write itself has come back through the watch.
The reconcile must plan from what it wrote, not from the stale copy: planning a promotion again
from the old status would point the stable side back at the old revision.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from rollout.api.manifest import parse_rollout
from rollout.api.rollout import Rollout
from rollout.cluster.access import Conflict, NotFound, Obj, Resource
from rollout.controller.metrics import Metrics
from rollout.controller.reconcile import Reconciler
from rollout.domain.observed import RouteState
from rollout.domain.revision import HASH_LABEL, pod_template_hash
from tests.unit.world import example

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
OLD = "oldstablexx"


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


class FakeAccess:
    """Just enough of ClusterAccess: a status subresource with resourceVersion preconditions."""

    def __init__(self, rollout: Obj) -> None:
        self.rollout = copy.deepcopy(rollout)
        self.events: list[str] = []
        self.writes: list[tuple[str, str]] = []

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        if res.kind != "Rollout":
            raise NotFound(f"{res.kind} {name}")
        return copy.deepcopy(self.rollout)

    def patch_status(self, res: Resource, namespace: str | None, name: str, patch: Any) -> Obj:
        wanted = patch["metadata"]["resourceVersion"]
        current = self.rollout["metadata"]["resourceVersion"]
        if wanted != current:
            raise Conflict(f"stale resourceVersion {wanted} (now {current})")
        updated = copy.deepcopy(self.rollout)
        updated["status"] = _merge(updated.get("status") or {}, patch["status"])
        updated["metadata"]["resourceVersion"] = str(int(current) + 1)
        self.rollout = updated
        return copy.deepcopy(updated)

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **_: Any) -> Obj:
        self.writes.append((res.plural, name))
        if res.kind != "Rollout":
            return {}
        # The controller's one Rollout write besides the status: its rollout.dev/revision.
        updated = _merge(copy.deepcopy(self.rollout), patch)
        updated["metadata"]["resourceVersion"] = str(
            int(self.rollout["metadata"]["resourceVersion"]) + 1
        )
        self.rollout = updated
        return copy.deepcopy(updated)

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self.writes.append((res.plural, body["metadata"]["name"]))
        return body

    def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        self.writes.append((res.plural, name))

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        self.events.append(reason)


class FakeRouter:
    def __init__(self, route: RouteState) -> None:
        self.route = route
        self.applied: list[RouteState] = []

    def read(self, rollout: Rollout) -> RouteState:
        return self.route

    def apply(self, rollout: Rollout, desired: RouteState) -> bool:
        self.applied.append(desired)
        changed = desired != self.route
        self.route = desired
        return changed

    def reset(self, rollout: Rollout) -> None:
        raise AssertionError("not used")


def replica_set(revision: str, uid: str, replicas: int) -> Obj:
    return {
        "metadata": {
            "name": f"reviews-{revision}",
            "namespace": "shop",
            "labels": {HASH_LABEL: revision},
            "ownerReferences": [{"kind": "Rollout", "uid": uid, "controller": True}],
        },
        "spec": {"replicas": replicas},
        "status": {"availableReplicas": replicas, "readyReplicas": replicas},
    }


def ready_to_promote() -> tuple[Obj, str]:
    """A Rollout with all steps done, its canary full size and serving 100%; and its revision."""
    doc = example("canary")
    del doc["spec"]["analysis"]
    doc["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 50}]
    doc["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    new = pod_template_hash(parse_rollout(doc).spec.template.wire())
    doc["status"] = {
        "stableRevision": OLD,
        "canaryRevision": new,
        "currentStepIndex": 1,
        "pauseConditions": [],
    }
    return doc, new


def test_a_reconcile_on_a_stale_cache_does_not_undo_a_promotion() -> None:
    doc, new = ready_to_promote()  # this reconcile promotes it
    stale = json.loads(json.dumps(doc))  # what the cache keeps serving
    access = FakeAccess(doc)
    router = FakeRouter(RouteState(OLD, new, 100))
    sets = [replica_set(OLD, "u-1", 4), replica_set(new, "u-1", 4)]
    reconciler = Reconciler(
        access,  # type: ignore[arg-type]
        router,
        lambda namespace, name: stale,
        lambda namespace, uid: sets,
        Metrics(),
        lambda: NOW,
    )

    reconciler.reconcile("shop/reviews")
    assert router.applied == [RouteState(new, new)]
    assert access.rollout["status"]["stableRevision"] == new
    assert access.events.count("Promoted") == 1

    # The VirtualService's watch event comes first: the cache still holds the old status.
    outcome = reconciler.reconcile("shop/reviews")
    assert router.applied == [RouteState(new, new)], "the stable side went back to the old pods"
    assert access.events.count("Promoted") == 1
    assert outcome.requeue_after != 0.0  # no Conflict: it planned from its own write

    # Once the cache catches up, it is read again: a steady rollout, nothing to do.
    stale.clear()
    stale.update(copy.deepcopy(access.rollout))
    before = access.rollout["metadata"]["resourceVersion"]
    reconciler.reconcile("shop/reviews")
    assert router.applied == [RouteState(new, new)]
    assert access.rollout["metadata"]["resourceVersion"] == before  # no status change either


class RefusingEvents(FakeAccess):
    """The API refuses Events, as it does in a namespace being deleted."""

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        raise NotFound('namespaces "shop" not found')


def test_an_event_the_api_refuses_does_not_fail_the_reconcile() -> None:
    doc, new = ready_to_promote()
    access = RefusingEvents(doc)
    router = FakeRouter(RouteState(OLD, new, 100))
    sets = [replica_set(OLD, "u-1", 4), replica_set(new, "u-1", 4)]
    metrics = Metrics()
    reconciler = Reconciler(
        access,  # type: ignore[arg-type]
        router,
        lambda namespace, name: access.rollout,
        lambda namespace, uid: sets,
        metrics,
        lambda: NOW,
    )
    outcome = reconciler.reconcile("shop/reviews")
    # The promotion happened and is in the status; only its Event is missing.
    assert router.applied == [RouteState(new, new)]
    assert access.rollout["status"]["stableRevision"] == new
    assert outcome.requeue_after != 0.0  # not retried as a failure
    # rollout_events_total counts the Events sent, not those planned
    assert metrics.registry.get_sample_value("rollout_events_total") == 0
