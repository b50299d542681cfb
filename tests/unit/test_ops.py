"""The operator CLI's pure helpers: merge patches, ages, image pairs, revision templates."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from rollout.api.manifest import parse_rollout
from rollout.cluster.access import Obj
from rollout.controller.execute import replica_set_for
from rollout.domain.revision import (
    HASH_LABEL,
    MAX_RECORDED_TEMPLATE,
    TEMPLATE_ANNOTATION,
    pod_template_hash,
    record_template,
    recorded_template,
)
from rollout.ops import age, merge_diff, parse_images, revision_of, step_of, table, template_of
from tests.unit.world import example


def test_merge_diff_turns_old_into_new() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    new = {"a": 1, "b": {"c": 5}, "l": [2], "e": 4}
    assert merge_diff(old, new) == {"b": {"c": 5, "d": None}, "l": [2], "e": 4}
    assert merge_diff(old, old) == {}


def test_age_is_kubectl_style() -> None:
    now = datetime(2026, 1, 2, 0, 0, 0, tzinfo=UTC)
    assert age("2026-01-01T23:59:30Z", now) == "30s"
    assert age("2026-01-01T23:50:00Z", now) == "10m"
    assert age("2026-01-01T20:00:00Z", now) == "4h"
    assert age("2025-12-20T00:00:00Z", now) == "13d"
    assert age(None, now) == "-"


def test_parse_images() -> None:
    assert parse_images(["app=x:1", "side=y:2"]) == {"app": "x:1", "side": "y:2"}
    with pytest.raises(ValueError, match="CONTAINER=IMAGE"):
        parse_images(["app"])


def test_template_of_a_replica_set_hashes_to_its_revision() -> None:
    template = {
        "metadata": {"labels": {"app": "web"}, "annotations": {}},
        "spec": {"containers": [{"name": "app", "image": "x:1"}]},
    }
    revision = revision_of(template)
    stamped = {
        "metadata": {
            "labels": {
                "app": "web",
                HASH_LABEL: revision,
                "service.istio.io/canonical-name": "web",
                "service.istio.io/canonical-revision": revision,
            },
            "annotations": {},
        },
        "spec": template["spec"],
    }
    back = template_of({"spec": {"template": stamped}}, "web")
    assert back == template and revision_of(back) == revision


def test_step_and_table() -> None:
    # 1-based, of the step being executed (rollout.domain.steps.step_number); status.step wins
    assert step_of({"status": {"currentStepIndex": 1, "stepCount": 3}}) == "2/3"
    assert step_of({"status": {"currentStepIndex": 3, "stepCount": 3}}) == "3/3"
    assert step_of({"status": {"currentStepIndex": 1, "stepCount": 3, "step": "2/3"}}) == "2/3"
    assert step_of({"status": {}}) == "-"
    assert table([["A", "BB"], ["ccc", "d"]]) == "A    BB\nccc  d"


# What a real kube-apiserver fills in on a ReplicaSet's pod template as it stores it (pkg/apis/
# core/v1/defaults.go); the Rollout's own template, a custom resource's, is stored as written.
POD_DEFAULTS = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "securityContext": {},
    "schedulerName": "default-scheduler",
}
CONTAINER_DEFAULTS = {
    "resources": {},
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
    "imagePullPolicy": "IfNotPresent",
}


def as_the_apiserver_stores_it(rs: Obj) -> Obj:
    """``rs`` as kube-apiserver returns it: pod defaults applied to its template."""
    stored = copy.deepcopy(rs)
    pod = stored["spec"]["template"]["spec"]
    for key, value in POD_DEFAULTS.items():
        pod.setdefault(key, value)
    for container in pod["containers"]:
        for key, value in CONTAINER_DEFAULTS.items():
            container.setdefault(key, value)
    return stored


def test_template_of_a_replica_set_the_apiserver_defaulted_hashes_to_its_revision() -> None:
    # `rollout undo` on a real cluster: the template taken back from the old ReplicaSet must be
    # the one its revision was hashed from, or the "rollback" is a brand new revision.
    doc = example("canary")
    doc["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    rollout = parse_rollout(doc)
    revision = pod_template_hash(rollout.spec.template.wire())
    rs = as_the_apiserver_stores_it(replica_set_for(doc, rollout, revision, 3))
    assert rs["metadata"]["labels"][HASH_LABEL] == revision

    back = template_of(rs, rollout.metadata.name)
    assert revision_of(back) == revision
    assert back == rollout.spec.template.wire()


def test_an_edited_or_missing_template_record_falls_back_to_the_stored_template() -> None:
    doc = example("canary")
    doc["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    rollout = parse_rollout(doc)
    revision = pod_template_hash(rollout.spec.template.wire())
    rs = replica_set_for(doc, rollout, revision, 3)
    expected = template_of({"spec": rs["spec"], "metadata": {}}, rollout.metadata.name)
    assert revision_of(expected) == revision  # not defaulted: the stored one hashes right

    edited = copy.deepcopy(rs)
    other = copy.deepcopy(rollout.spec.template.wire())
    other["spec"]["containers"][0]["image"] = "evil:1"
    edited["metadata"]["annotations"][TEMPLATE_ANNOTATION] = json.dumps(other)
    assert template_of(edited, rollout.metadata.name) == expected
    for broken in ("{not json", "[1]"):
        edited["metadata"]["annotations"][TEMPLATE_ANNOTATION] = broken
        assert template_of(edited, rollout.metadata.name) == expected
    del edited["metadata"]["annotations"][TEMPLATE_ANNOTATION]
    assert template_of(edited, rollout.metadata.name) == expected


def test_a_huge_template_is_not_recorded() -> None:
    template = {"metadata": {"annotations": {"big": "x" * MAX_RECORDED_TEMPLATE}}}
    assert record_template(template) is None
    small = {"spec": {"containers": [{"name": "app", "image": "x:1"}]}}
    recorded = record_template(small)
    assert recorded is not None
    assert recorded_template({TEMPLATE_ANNOTATION: recorded}, pod_template_hash(small)) == small
