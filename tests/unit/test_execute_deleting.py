"""No ReplicaSet is created for a Rollout that the API says is gone or being deleted.

Seen on a real kube-apiserver (tests/integration/test_kube_deletion.py): in a foreground
deletion the garbage collector deleted the Rollout's ReplicaSet, its DELETED event reached the
controller before the Rollout's own update, and a reconcile from the stale cached Rollout
created the ReplicaSet again for the dying owner.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from rollout.api.manifest import parse_rollout
from rollout.cluster.access import NotFound, Obj, Resource
from rollout.controller.execute import Executor
from rollout.domain.plan import ScaleReplicaSet
from tests.unit.world import example


class Api:
    """The API as the executor sees it: the live Rollout (or none) and the creates made."""

    def __init__(self, rollout: Obj | None) -> None:
        self.rollout = rollout
        self.created: list[str] = []
        self.patched: list[str] = []

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        if res.kind != "Rollout" or self.rollout is None:
            raise NotFound(f"{res.kind} {name}")
        return copy.deepcopy(self.rollout)

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        self.created.append(body["metadata"]["name"])
        return body

    def patch(self, res: Resource, namespace: str | None, name: str, patch: Any, **_: Any) -> Obj:
        self.patched.append(name)
        return {}


def cached() -> Obj:
    obj = example("canary")
    obj["metadata"].update(uid="u-1", resourceVersion="7")
    return obj


@pytest.mark.parametrize(
    ("live", "creates"),
    [
        ("same", 1),  # alive: the ReplicaSet is created
        ("deleting", 0),  # deletionTimestamp set: the garbage collector's turn
        ("gone", 0),  # deleted already
    ],
)
def test_a_replica_set_is_created_only_for_a_rollout_the_api_says_is_alive(
    live: str, creates: int
) -> None:
    obj = cached()
    live_obj: Obj | None = copy.deepcopy(obj)
    if live == "deleting":
        assert live_obj is not None
        live_obj["metadata"]["deletionTimestamp"] = "2026-12-01T04:00:00Z"
        live_obj["metadata"]["finalizers"] = ["foregroundDeletion"]
    elif live == "gone":
        live_obj = None
    api = Api(live_obj)
    rollout = parse_rollout(obj)
    wrote = Executor(api, router=None).run(  # type: ignore[arg-type]
        obj, rollout, (ScaleReplicaSet("abc123", 2),), existing=set()
    )
    assert len(api.created) == creates
    assert wrote == creates
    assert api.patched == []
