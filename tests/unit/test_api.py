"""API models: durations, defaults, field paths in problems."""

from __future__ import annotations

from typing import Any

import pytest

from rollout.api.duration import format_duration, parse_duration
from rollout.api.manifest import InvalidManifest, parse_manifest, parse_rollout
from rollout.domain.revision import pod_template_hash
from tests.unit.world import example


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("1h", 3600), ("1m5s", 65), (45, 45), (0, 0)],
)
def test_durations_parse(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "2x", "1.5m", "m", "-1", -1, True, "1h 30m", " 30s"])
def test_bad_durations_are_rejected(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 61, 3600, 5400, 86399])
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_follow_the_api_sketch() -> None:
    rollout = parse_rollout(example("canary"))
    assert rollout.spec.revision_history_limit == 3
    assert rollout.spec.progress_deadline_seconds == 600
    assert rollout.spec.analysis is not None
    assert rollout.spec.analysis.consecutive_error_limit == 4
    assert rollout.spec.analysis.interval == 30


def problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidManifest) as caught:
        parse_manifest(doc)
    return [str(p) for p in caught.value.problems]


def test_problems_carry_the_field_path() -> None:
    doc = example("canary")
    doc["spec"]["strategy"]["canary"]["steps"][2] = {"analysis": {"count": 0}}
    doc["spec"]["stratgey"] = {}
    found = problems(doc)
    assert "spec.stratgey: unknown field" in found
    assert any(p.startswith("spec.strategy.canary.steps[2].analysis.count:") for p in found)


def test_wrong_kind_and_version_are_problems() -> None:
    doc = example("canary")
    doc["apiVersion"] = "rollout.dev/v1"
    assert problems(doc) == ["apiVersion: must be rollout.dev/v1alpha1, not 'rollout.dev/v1'"]
    doc["kind"] = "Deployment"
    assert problems(doc)[0].startswith("kind: must be Rollout or AnalysisTemplate")


def test_pod_template_hash_is_stable_and_sensitive() -> None:
    template = example("canary")["spec"]["template"]
    first = pod_template_hash(template)
    assert first == pod_template_hash(dict(reversed(list(template.items()))))
    template["spec"]["containers"][0]["image"] = "other"
    assert pod_template_hash(template) != first
    assert len(first) == 10 and first.isalnum()
