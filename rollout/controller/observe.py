"""Step 1 of a reconcile: turn a Rollout and its world into the planner's frozen ``Observed``.

Everything is read from the watch caches (ReplicaSets owned by the Rollout, its routing objects)
and from the router's read-back of the weights really applied; nothing here writes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError

from rollout.api.manifest import InvalidManifest, parse_rollout
from rollout.api.rollout import Rollout
from rollout.api.status import Measurement, RolloutStatus
from rollout.cluster.access import Obj
from rollout.domain.observed import Observed, Preflight, ReplicaSetView, RouteState
from rollout.domain.revision import HASH_LABEL, parse_revision_number, pod_template_hash
from rollout.routers.base import RouteConfigError, TrafficRouter

log = logging.getLogger(__name__)

SCALE_DOWN_AT = "rollout.dev/scale-down-at"


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def status_of(obj: Obj) -> RolloutStatus:
    """The stored status; an unreadable one (hand-edited) counts as empty, and says so."""
    try:
        return RolloutStatus.model_validate(obj.get("status") or {})
    except ValidationError as error:
        meta = obj.get("metadata", {})
        log.warning(
            "%s/%s: ignoring unreadable status: %s", meta.get("namespace"), meta.get("name"), error
        )
        return RolloutStatus()


def replica_set_view(rs: Obj) -> ReplicaSetView | None:
    meta = rs.get("metadata", {})
    revision = (meta.get("labels") or {}).get(HASH_LABEL)
    if not revision:
        return None
    status = rs.get("status") or {}
    return ReplicaSetView(
        revision=revision,
        replicas=int((rs.get("spec") or {}).get("replicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        pods=int(status.get("replicas", 0)),
        created_at=parse_time(meta.get("creationTimestamp")),
        scale_down_at=parse_time((meta.get("annotations") or {}).get(SCALE_DOWN_AT)),
        number=parse_revision_number(meta.get("annotations")),
    )


def owned_by(obj: Obj, uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


class Measurer(Protocol):
    """Takes the gate measurements that are due (``rollout.controller.gates``)."""

    def measure(
        self, rollout: Rollout, status: RolloutStatus, replica_sets: list[Obj], now: datetime
    ) -> tuple[tuple[str, Measurement], ...]: ...

    def preflight(
        self,
        rollout: Rollout,
        status: RolloutStatus,
        replica_sets: list[Obj],
        revision: str,
    ) -> Preflight: ...


def needs_preflight(
    rollout: Rollout, status: RolloutStatus, revision: str, route: RouteState
) -> bool:
    """A canary that has a gate and no traffic yet: ``revision`` is not the stable one, the
    rollout is not aborted on it, and the route read back gives it no traffic at all (no
    weight, no mirror, no header route). Its gate must pass preflight before its first
    traffic (issue 12, section 3)."""
    if rollout.spec.analysis is None or status.stable_revision in (None, revision):
        return False
    if status.abort and status.canary_revision == revision:
        return False
    return not (route.canary_revision == revision and route.sends_canary_traffic)


def observe(
    obj: Obj,
    replica_sets: list[Obj],
    router: TrafficRouter,
    measurer: Measurer | None = None,
    now: datetime | None = None,
) -> tuple[Observed, Rollout | None]:
    """The Observed for one Rollout object, and its parsed model (None when invalid).

    With a ``measurer``, the gate measurements due at ``now`` are taken here, after the
    preflight of a canary that has no traffic yet; while that preflight fails, no
    measurement is taken (it would fail the same way, and no gate is judged on it).
    """
    meta = obj.get("metadata", {})
    base: dict[str, Any] = {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", "default"),
        "generation": int(meta.get("generation", 1)),
        "status": status_of(obj),
    }
    try:
        rollout = parse_rollout(obj)
    except InvalidManifest as invalid:
        return Observed(
            spec=None, revision=None, problems=tuple(map(str, invalid.problems)), **base
        ), None
    views = tuple(
        view
        for rs in replica_sets
        if owned_by(rs, meta.get("uid", "")) and (view := replica_set_view(rs)) is not None
    )
    route: RouteState | None = None
    route_error = None
    try:
        route = router.read(rollout)
        route_error = route.problem
    except RouteConfigError as error:
        route_error = str(error)
    owned = [rs for rs in replica_sets if owned_by(rs, meta.get("uid", ""))]
    revision = pod_template_hash(rollout.spec.template.wire())
    measurements: tuple[tuple[str, Measurement], ...] = ()
    preflight: Preflight | None = None
    if measurer is not None and now is not None and route is not None and route_error is None:
        status = base["status"]
        if needs_preflight(rollout, status, revision, route):
            preflight = measurer.preflight(rollout, status, owned, revision)
        if preflight is None or preflight.ok:
            measurements = measurer.measure(rollout, status, owned, now)
    observed = Observed(
        measurements=measurements,
        preflight=preflight,
        spec=rollout.spec,
        revision=revision,
        replica_sets=views,
        route=route,
        route_error=route_error,
        **base,
    )
    return observed, rollout
