"""Step 3 of a reconcile: apply a plan's actions, in order, through the seams.

ReplicaSets are named ``<rollout>-<hash>``, selected by ``rollout.dev/pod-template-hash``,
owned by the Rollout (so they go when it goes), and their pods carry Istio's
``service.istio.io/canonical-name`` (the Rollout) and ``canonical-revision`` (the hash) unless
the template sets them: Istio's metrics then tell the two versions apart by
``destination_canonical_revision``. Every action is idempotent; a stale cache that makes a
create collide with an existing ReplicaSet falls back to scaling it.

A write the API refuses for good (``ClusterError.rejects``: 400, 403, 422 ...) stops the plan
there and raises ``ApiRejected``, which says what was being done and quotes the API, e.g.
``creating ReplicaSet shop/reviews-5d8f...: ReplicaSet.apps "reviews-5d8f..." is invalid: ...``;
the reconciler reports it on the Rollout rather than retrying it with backoff.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, NoReturn

from rollout.api.rollout import Rollout
from rollout.cluster.access import (
    REPLICA_SETS,
    ROLLOUTS,
    ClusterAccess,
    ClusterError,
    Conflict,
    NotFound,
    NotLeader,
    Obj,
)
from rollout.controller.observe import SCALE_DOWN_AT
from rollout.domain.observed import ReplicaSetView
from rollout.domain.plan import (
    Action,
    DeleteReplicaSet,
    EmitEvent,
    MarkScaleDown,
    ScaleReplicaSet,
    SetRoute,
)
from rollout.domain.revision import (
    HASH_LABEL,
    REVISION_ANNOTATION,
    TEMPLATE_ANNOTATION,
    record_template,
    replica_set_name,
)
from rollout.routers.base import TrafficRouter

log = logging.getLogger(__name__)

COMPONENT = "rollout-controller"
CANONICAL_NAME = "service.istio.io/canonical-name"
CANONICAL_REVISION = "service.istio.io/canonical-revision"


def replica_set_for(
    obj: Obj, rollout: Rollout, revision: str, replicas: int, number: int | None = None
) -> Obj:
    """The ReplicaSet of one revision of ``rollout``; ``number``: its revision number
    (``REVISION_ANNOTATION``, see ``rollout.domain.revision.revision_numbers``)."""
    meta = obj["metadata"]
    spec = rollout.spec
    template = copy.deepcopy(spec.template.wire())
    labels = {**template.get("metadata", {}).get("labels", {}), HASH_LABEL: revision}
    labels.setdefault(CANONICAL_NAME, rollout.metadata.name)
    labels.setdefault(CANONICAL_REVISION, revision)
    template.setdefault("metadata", {})["labels"] = labels
    selector = spec.selector.wire()
    selector["matchLabels"] = {**selector.get("matchLabels", {}), HASH_LABEL: revision}
    # The template as hashed: the API stores the ReplicaSet's with pod defaults filled in.
    recorded = record_template(spec.template.wire())
    annotations = {} if recorded is None else {TEMPLATE_ANNOTATION: recorded}
    if number is not None:
        annotations[REVISION_ANNOTATION] = str(number)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": replica_set_name(rollout.metadata.name, revision),
            "namespace": rollout.namespace,
            "labels": {**spec.template.metadata.labels, HASH_LABEL: revision},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": obj.get("apiVersion", "rollout.dev/v1alpha1"),
                    "kind": "Rollout",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": spec.min_ready_seconds,
            "selector": selector,
            "template": template,
        },
    }


class ApiRejected(Exception):
    """The API refused a write of the plan for good; the message names the write and quotes
    the API. ``writes``: the writes made before it."""

    def __init__(self, message: str, writes: int = 0) -> None:
        super().__init__(message)
        self.writes = writes


def _reraise(error: ClusterError, doing: str, said: str | None = None) -> NoReturn:
    """Raise ``error`` as an ``ApiRejected`` (``doing: said``, by default the API's own
    message) when it is a final refusal; else raise it as it is, to be retried."""
    if error.rejects:
        raise ApiRejected(f"{doing}: {error.detail if said is None else said}") from error
    raise error


class Executor:
    def __init__(self, access: ClusterAccess, router: TrafficRouter) -> None:
        self.access = access
        self.router = router
        # (namespace, name) -> the revision number whose Rollout annotation the API refused
        # for good (an RBAC without patch on rollouts): not sent again until the number moves.
        self._unrecorded: dict[tuple[str, str], int] = {}

    def run(
        self,
        obj: Obj,
        rollout: Rollout,
        actions: tuple[Action, ...],
        existing: set[str],
        routed: list[SetRoute] | None = None,
        numbers: dict[str, int] | None = None,
    ) -> int:
        """Apply ``actions``; the number of API writes made (for the benchmarks).

        ``existing``: the revisions whose ReplicaSet the cache holds. ``routed``, if given,
        receives the SetRoute actions that changed anything. ``numbers``: the revision number
        a ReplicaSet created now carries (``revision_numbers``).
        """
        writes = 0
        for action in actions:
            try:
                wrote = self._apply(obj, rollout, action, existing, numbers or {})
            except ApiRejected as rejected:
                rejected.writes += writes
                raise
            if wrote and isinstance(action, SetRoute) and routed is not None:
                routed.append(action)
            writes += wrote
        return writes

    def _apply(
        self,
        obj: Obj,
        rollout: Rollout,
        action: Action,
        existing: set[str],
        numbers: dict[str, int],
    ) -> int:
        namespace = rollout.namespace
        match action:
            case ScaleReplicaSet(revision, replicas):
                exists = revision in existing
                number = numbers.get(revision)
                return self._scale(obj, rollout, revision, replicas, exists, number)
            case MarkScaleDown(revision, at):
                value: Any = at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None
                patch = {"metadata": {"annotations": {SCALE_DOWN_AT: value}}}
                name = replica_set_name(rollout.metadata.name, revision)
                try:
                    self.access.patch(REPLICA_SETS, namespace, name, patch)
                except NotFound:
                    return 0
                except ClusterError as error:
                    doing = f"marking ReplicaSet {namespace}/{name} for scale-down"
                    _reraise(error, doing)
                return 1
            case DeleteReplicaSet(revision):
                name = replica_set_name(rollout.metadata.name, revision)
                try:
                    self.access.delete(REPLICA_SETS, namespace, name)
                except NotFound:
                    return 0
                except ClusterError as error:
                    doing = f"deleting ReplicaSet {namespace}/{name}"
                    _reraise(error, doing)
                return 1
            case SetRoute(route):
                try:
                    return 1 if self.router.apply(rollout, route) else 0
                except ClusterError as error:
                    # The router's request names the routing object; the API's text follows.
                    _reraise(error, "routing traffic", str(error))
            case EmitEvent():
                return 0  # events go out after the status is written (see reconcile)
        raise AssertionError(action)

    def _being_deleted(self, rollout: Rollout) -> bool:
        """Whether the API (not the watch cache) says the Rollout is gone or being deleted.

        Asked before a ReplicaSet is created. In a foreground deletion the garbage collector
        deletes the Rollout's ReplicaSets once the Rollout carries its deletionTimestamp
        (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion);
        their DELETED events can reach the controller before the Rollout's own update does, and
        a reconcile from that stale copy would create them again for a dying owner (seen on a
        real kube-apiserver). Creating is rare (once per revision), so one GET is cheap.
        """
        try:
            live = self.access.get(ROLLOUTS, rollout.namespace, rollout.metadata.name)
        except NotFound:
            return True
        return bool((live.get("metadata") or {}).get("deletionTimestamp"))

    def _scale(
        self,
        obj: Obj,
        rollout: Rollout,
        revision: str,
        replicas: int,
        exists: bool,
        number: int | None = None,
    ) -> int:
        name = replica_set_name(rollout.metadata.name, revision)
        where = f"ReplicaSet {rollout.namespace}/{name}"
        patch = {"spec": {"replicas": replicas}}
        if not exists:
            if self._being_deleted(rollout):
                return 0
            body = replica_set_for(obj, rollout, revision, replicas, number)
            try:
                self.access.create(REPLICA_SETS, rollout.namespace, body)
                return 1
            except Conflict:
                pass  # the cache was behind: it exists, so scale it
            except ClusterError as error:
                _reraise(error, f"creating {where}")
        try:
            self.access.patch(REPLICA_SETS, rollout.namespace, name, patch)
        except ClusterError as error:
            # A 404 (deleted since the cache saw it) is retried: the next reconcile creates it.
            _reraise(error, f"scaling {where} to {replicas}")
        return 1

    def number_replica_sets(
        self, rollout: Rollout, views: tuple[ReplicaSetView, ...], numbers: dict[str, int]
    ) -> int:
        """Give each existing ReplicaSet the revision number ``numbers`` says (one merge patch
        of its ``REVISION_ANNOTATION``, only where it differs: a ReplicaSet from before the
        numbering, or an old revision that came back); the number of writes."""
        writes = 0
        for view in views:
            number = numbers.get(view.revision)
            if number is None or view.number == number:
                continue
            name = replica_set_name(rollout.metadata.name, view.revision)
            patch = {"metadata": {"annotations": {REVISION_ANNOTATION: str(number)}}}
            try:
                self.access.patch(REPLICA_SETS, rollout.namespace, name, patch)
            except NotFound:
                continue  # deleted since the cache saw it
            except ClusterError as error:
                doing = f"numbering ReplicaSet {rollout.namespace}/{name} as revision {number}"
                _reraise(error, doing)
            writes += 1
        return writes

    def annotate_rollout(self, obj: Obj, number: int) -> Obj | None:
        """Put the current revision's number on the Rollout (``REVISION_ANNOTATION`` in its
        metadata, as Argo Rollouts and Deployments do) when it differs; the updated Rollout,
        or None when nothing was written. A merge patch of that one annotation, so nothing the
        user wrote is touched and no generation changes. Best effort: the number is on the
        ReplicaSets already, so a refusal (an RBAC without ``patch`` on rollouts) is logged,
        and a final one (``ClusterError.rejects``) once per number: the same patch is not sent
        again on every reconcile until the number changes (or the controller restarts)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if (meta.get("annotations") or {}).get(REVISION_ANNOTATION) == str(number):
            self._unrecorded.pop(key, None)
            return None
        if self._unrecorded.get(key) == number:
            return None
        patch = {"metadata": {"annotations": {REVISION_ANNOTATION: str(number)}}}
        try:
            updated = self.access.patch(ROLLOUTS, meta.get("namespace"), meta["name"], patch)
        except NotLeader:
            raise
        except ClusterError as error:
            if error.rejects:
                self._unrecorded[key] = number
            log.warning("%s/%s: revision %d not recorded on the Rollout: %s", *key, number, error)
            return None
        self._unrecorded.pop(key, None)
        return updated

    def emit(self, obj: Obj, events: list[EmitEvent]) -> int:
        """Record the events; the number written. Best effort, as client-go's recorder: the
        status already says what happened, so an Event the API refuses (its namespace being
        deleted, say) is logged and dropped rather than failing and retrying the reconcile.
        ``NotLeader`` (the leader fence refused it: nothing was sent) stops the reconcile."""
        written = 0
        for event in events:
            try:
                self.access.event(obj, event.type, event.reason, event.message, COMPONENT)
                written += 1
            except NotLeader:
                raise
            except ClusterError as error:
                meta = obj.get("metadata") or {}
                log.warning(
                    "%s/%s: event %s not recorded: %s",
                    meta.get("namespace"),
                    meta.get("name"),
                    event.reason,
                    error,
                )
        return written
