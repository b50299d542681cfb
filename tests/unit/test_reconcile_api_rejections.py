"""A write the API refuses for good is reported on the Rollout, once, and not retried in a loop.

The ClusterAccess seam is faked: it refuses what a real API server refuses (a ReplicaSet the
ReplicaSet schema rejects: 422 Invalid; RBAC: 403 Forbidden; a malformed request: 400), as
``KubeAccess`` reports it (``ClusterError`` with the code and the API's own message).
Refusals that can pass on a second try (409, 429, 5xx, a 404 on a patch) stay errors that the
runtime retries with backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rollout.api.manifest import parse_rollout
from rollout.cluster.access import (
    ClusterError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Obj,
    Resource,
    Unavailable,
)
from rollout.controller.metrics import Metrics
from rollout.controller.reconcile import REJECTED_REQUEUE_SECONDS, Outcome, Reconciler
from rollout.domain.observed import RouteState
from rollout.domain.revision import pod_template_hash
from tests.unit.test_reconcile_stale_cache import (
    OLD,
    FakeAccess,
    FakeRouter,
    ready_to_promote,
    replica_set,
)
from tests.unit.world import example

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
LABEL_MESSAGE = (
    'ReplicaSet.apps "{name}" is invalid: spec.template.metadata.labels: Invalid value: '
    '"not ok": a valid label must be an empty string or consist of alphanumeric characters'
)
RBAC_MESSAGE = (
    'replicasets.apps is forbidden: User "system:serviceaccount:rollouts:rollout-controller" '
    'cannot create resource "replicasets" in API group "apps" in the namespace "shop"'
)


def invalid(name: str) -> ClusterError:
    detail = LABEL_MESSAGE.format(name=name)
    return Invalid(f"POST /apis/apps/v1/namespaces/shop/replicasets: {detail}", detail=detail)


def forbidden(name: str) -> ClusterError:
    return Forbidden(
        f"POST /apis/apps/v1/namespaces/shop/replicasets: {RBAC_MESSAGE}",
        code=403,
        reason="Forbidden",
        detail=RBAC_MESSAGE,
    )


def bad_request(name: str) -> ClusterError:
    detail = "the body of the request was in an unknown format"
    return ClusterError(f"POST ...: {detail}", code=400, reason="BadRequest", detail=detail)


class Refusing(FakeAccess):
    """Creates and patches of ReplicaSets fail with ``error`` (counted in ``attempts``)."""

    def __init__(self, rollout: Obj, error: Any, *, on: str = "create") -> None:
        super().__init__(rollout)
        self.error = error
        self.on = on
        self.attempts = 0
        self.event_messages: list[tuple[str, str, str]] = []

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        if self.on == "create" and self.error is not None:
            self.attempts += 1
            raise self.error(body["metadata"]["name"])
        return super().create(res, namespace, body)

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **kw: Any) -> Obj:
        if self.on == "patch" and self.error is not None:
            self.attempts += 1
            raise self.error(name)
        return super().patch(res, namespace, name, patch, **kw)

    def event(self, involved: Obj, type_: str, reason: str, message: str, component: str) -> None:
        super().event(involved, type_, reason, message, component)
        self.event_messages.append((type_, reason, message))


def first_revision() -> tuple[Obj, str]:
    """A new Rollout (no status, no ReplicaSet yet) and its revision."""
    doc = example("canary")
    doc["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    return doc, pod_template_hash(parse_rollout(doc).spec.template.wire())


def reconciler_for(access: FakeAccess, router: FakeRouter, sets: list[Obj]) -> Reconciler:
    return Reconciler(
        access,  # type: ignore[arg-type]
        router,
        lambda namespace, name: access.rollout,  # the cache is up to date
        lambda namespace, uid: sets,
        Metrics(),
        lambda: NOW,
    )


def condition(status: Obj, type_: str) -> Obj:
    [found] = [c for c in status.get("conditions") or [] if c["type"] == type_]
    return dict(found)


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        pytest.param(invalid, LABEL_MESSAGE, id="422-invalid"),
        pytest.param(forbidden, RBAC_MESSAGE, id="403-forbidden"),
        pytest.param(
            bad_request, "the body of the request was in an unknown format", id="400-bad-request"
        ),
    ],
)
def test_a_replica_set_the_api_refuses_is_a_condition_and_one_warning(
    error: Any, detail: str
) -> None:
    doc, revision = first_revision()
    access = Refusing(doc, error)
    router = FakeRouter(RouteState(None, None))
    reconciler = reconciler_for(access, router, [])

    outcome = reconciler.reconcile("shop/reviews")

    name = f"reviews-{revision}"
    message = f"creating ReplicaSet shop/{name}: {detail.format(name=name)}"
    status = access.rollout["status"]
    assert status["phase"] == "Degraded"
    assert status["message"] == f"ApiRejected: {message}"
    invalid_spec = condition(status, "InvalidSpec")
    assert (invalid_spec["status"], invalid_spec["reason"]) == ("True", "ApiRejected")
    assert invalid_spec["message"] == message
    progressing = condition(status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ApiRejected")
    assert access.event_messages == [("Warning", "ApiRejected", message)]
    assert router.applied == []  # no traffic change
    assert "stableRevision" not in status  # nothing the plan decided was recorded
    assert outcome.requeue_after == REJECTED_REQUEUE_SECONDS

    # Its own status write brings it back: the same refusal writes nothing, sends nothing.
    version = access.rollout["metadata"]["resourceVersion"]
    again = reconciler.reconcile("shop/reviews")
    assert access.attempts == 2
    assert access.rollout["metadata"]["resourceVersion"] == version
    assert access.event_messages == [("Warning", "ApiRejected", message)]
    assert again == Outcome(REJECTED_REQUEUE_SECONDS, 0, False)

    # Once the API accepts it (RBAC fixed, ...), the rollout goes on and the condition clears.
    access.error = None
    reconciler.reconcile("shop/reviews")
    status = access.rollout["status"]
    assert status["stableRevision"] == revision
    assert status["phase"] != "Degraded"
    assert condition(status, "InvalidSpec")["status"] == "False"
    assert ("replicasets", name) in access.writes


def test_a_new_message_is_a_new_warning() -> None:
    doc, revision = first_revision()
    access = Refusing(doc, invalid)
    reconciler = reconciler_for(access, FakeRouter(RouteState(None, None)), [])
    reconciler.reconcile("shop/reviews")
    access.error = forbidden
    reconciler.reconcile("shop/reviews")
    reconciler.reconcile("shop/reviews")
    assert [reason for _, reason, _ in access.event_messages] == ["ApiRejected", "ApiRejected"]
    assert RBAC_MESSAGE in access.rollout["status"]["message"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lambda name: Unavailable("503", code=503), id="503"),
        pytest.param(lambda name: ClusterError("429", code=429), id="429-throttled"),
        pytest.param(lambda name: ClusterError("401", code=401), id="401-credentials"),
        pytest.param(lambda name: Unavailable("connection refused"), id="transport"),
    ],
)
def test_transient_failures_stay_errors_for_the_backoff(error: Any) -> None:
    doc, _ = first_revision()
    access = Refusing(doc, error)
    reconciler = reconciler_for(access, FakeRouter(RouteState(None, None)), [])
    with pytest.raises(ClusterError):
        reconciler.reconcile("shop/reviews")
    assert "status" not in access.rollout
    assert access.events == []


def test_a_scale_of_a_replica_set_gone_meanwhile_is_retried_not_reported() -> None:
    # The cache still lists the ReplicaSet; the patch finds it gone (404): the next reconcile,
    # brought by its deletion, creates it. Not a rejection.
    doc, new = ready_to_promote()
    access = Refusing(doc, lambda name: NotFound(f"{name} not found", code=404), on="patch")
    sets = [replica_set(OLD, "u-1", 4), replica_set(new, "u-1", 1)]
    reconciler = reconciler_for(access, FakeRouter(RouteState(OLD, new, 100)), sets)
    with pytest.raises(NotFound):
        reconciler.reconcile("shop/reviews")
    assert access.events == []


def test_a_create_that_conflicts_still_scales_the_existing_replica_set() -> None:
    doc, revision = first_revision()
    access = Refusing(doc, lambda name: Conflict("exists", code=409))
    reconciler_for(access, FakeRouter(RouteState(None, None)), []).reconcile("shop/reviews")
    assert ("replicasets", f"reviews-{revision}") in access.writes  # the patch
    assert access.rollout["status"]["stableRevision"] == revision


class RefusingRouter(FakeRouter):
    def apply(self, rollout: Any, desired: RouteState) -> bool:
        raise Forbidden(
            "PATCH /apis/networking.istio.io/v1beta1/namespaces/shop/virtualservices/reviews: "
            'virtualservices.networking.istio.io "reviews" is forbidden',
            code=403,
            reason="Forbidden",
            detail='virtualservices.networking.istio.io "reviews" is forbidden',
        )


def test_a_route_write_the_api_refuses_is_reported_and_the_step_is_not_recorded() -> None:
    doc, new = ready_to_promote()  # this reconcile would promote: a route change
    access = FakeAccess(doc)
    router = RefusingRouter(RouteState(OLD, new, 100))
    sets = [replica_set(OLD, "u-1", 4), replica_set(new, "u-1", 4)]
    outcome = reconciler_for(access, router, sets).reconcile("shop/reviews")
    status = access.rollout["status"]
    assert status["stableRevision"] == OLD  # the promotion did not happen
    message = condition(status, "InvalidSpec")["message"]
    assert message.startswith("routing traffic: PATCH /apis/networking.istio.io/")
    assert message.endswith('virtualservices.networking.istio.io "reviews" is forbidden')
    assert access.events == ["ApiRejected"]
    assert outcome.requeue_after == REJECTED_REQUEUE_SECONDS


class RefusingStatus(FakeAccess):
    def patch_status(self, res: Resource, namespace: str | None, name: str, patch: Any) -> Obj:
        self.writes.append(("status", name))
        detail = 'Rollout.rollout.dev "reviews" is invalid: <nil>: Invalid value: a Rollout name'
        raise Invalid(f"PATCH .../status: {detail}", detail=detail)


def test_a_status_write_the_api_refuses_is_one_warning_and_no_loop() -> None:
    doc, _ = first_revision()
    access = RefusingStatus(doc)
    reconciler = reconciler_for(access, FakeRouter(RouteState(None, None)), [])
    outcomes = [reconciler.reconcile("shop/reviews") for _ in range(3)]
    assert access.events == ["ApiRejected"]
    assert {o.requeue_after for o in outcomes} == {REJECTED_REQUEUE_SECONDS}
    assert access.writes.count(("status", "reviews")) == 3  # one per reconcile, none retried
