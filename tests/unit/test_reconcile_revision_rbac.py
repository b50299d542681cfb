"""Without ``patch`` on rollouts (an RBAC from before revision numbers), the controller cannot
record ``rollout.dev/revision`` on the Rollout: it says so once per number, keeps rolling out
and does not send the refused patch again on every reconcile.

The ClusterAccess seam is faked (``FakeAccess``): the Rollout's metadata patch is refused
with 403 Forbidden, as a real API server refuses it; the status subresource and the
ReplicaSets are allowed, as the chart's older ClusterRole allowed them.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rollout.cluster.access import Forbidden, Obj, Resource, Unavailable
from rollout.domain.observed import RouteState
from tests.unit.test_reconcile_api_rejections import reconciler_for
from tests.unit.test_reconcile_stale_cache import (
    OLD,
    FakeAccess,
    FakeRouter,
    ready_to_promote,
    replica_set,
)

RBAC = (
    'rollouts.rollout.dev "reviews" is forbidden: User "system:serviceaccount:rollouts:'
    'rollout-controller" cannot patch resource "rollouts" in API group "rollout.dev"'
)


class NoRolloutPatch(FakeAccess):
    """Refuses patches of the Rollout itself (not its status) with ``error``; counts them."""

    def __init__(self, rollout: Obj, error: Exception) -> None:
        super().__init__(rollout)
        self.error = error
        self.refused = 0

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **kw: Any) -> Obj:
        if res.kind == "Rollout":
            self.refused += 1
            raise self.error
        return super().patch(res, namespace, name, patch, **kw)


def reconcile_three_times(error: Exception) -> tuple[NoRolloutPatch, str]:
    doc, new = ready_to_promote()
    access = NoRolloutPatch(doc, error)
    router = FakeRouter(RouteState(OLD, new, 100))
    sets = [replica_set(OLD, "u-1", 4), replica_set(new, "u-1", 4)]
    for s in sets:  # numbered already: the one write left is the Rollout's annotation
        number = "1" if s is sets[0] else "2"
        s["metadata"]["annotations"] = {"rollout.dev/revision": number}
    reconciler = reconciler_for(access, router, sets)
    for _ in range(3):
        reconciler.reconcile("shop/reviews")
    return access, new


def test_a_refused_revision_annotation_is_logged_once_and_the_rollout_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rollout.controller")
    access, new = reconcile_three_times(Forbidden(RBAC, code=403, reason="Forbidden"))
    assert access.rollout["status"]["stableRevision"] == new  # promoted all the same
    assert access.rollout["status"]["phase"] == "Healthy"
    assert "rollout.dev/revision" not in (access.rollout["metadata"].get("annotations") or {})
    assert access.refused == 1, "the refused patch was sent again on every reconcile"
    warnings = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "revision 2 not recorded on the Rollout" in warnings[0] and "forbidden" in warnings[0]


def test_a_passing_failure_of_the_annotation_is_tried_again() -> None:
    access, _ = reconcile_three_times(Unavailable("503 Service Unavailable", code=503))
    assert access.refused == 3  # not final: each reconcile tries again
