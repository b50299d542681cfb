"""The operator CLI's pure helpers: merge patches, ages, image pairs, revision templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollout.domain.revision import HASH_LABEL
from rollout.ops import age, merge_diff, parse_images, revision_of, step_of, table, template_of


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
    assert step_of({"status": {"currentStepIndex": 1, "stepCount": 3}}) == "1/3"
    assert step_of({"status": {}}) == "-"
    assert table([["A", "BB"], ["ccc", "d"]]) == "A    BB\nccc  d"
