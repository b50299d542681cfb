"""The CRDs' field descriptions are for people (issue 15 item 7).

``kubectl explain``, Lens and Argo CD show them: every field has one, in plain sentences, with no
reStructuredText and no notes about our modules. They come from the fields' docstrings in
``rollout/api`` through ``rollout.api.crdgen``; a class docstring never reaches the CRD.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from rollout.api.crdgen import CRDS, build, openapi_schema
from rollout.api.gate import Analysis
from rollout.api.manifest import InvalidManifest, parse_rollout
from rollout.api.semantics import spec_problems

# Developer text: reStructuredText roles and literals, our module paths, the language.
FORBIDDEN = re.compile(
    r"``|:class:|:func:|:meth:|:mod:|\brollout\.(api|domain|controller|cluster|"
    r"routers|sandbox|lint|cli)\b|\banalysis\.\w+\.py|Python|pydantic"
)


def _fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every field of a schema (a property of an object at any depth), with its path."""
    for name, prop in (node.get("properties") or {}).items():
        yield f"{path}.{name}", prop
        yield from _fields(prop, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield from _fields(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _fields(node["additionalProperties"], f"{path}.*")


def _descriptions(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every description anywhere under ``node``."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield path, value
            else:
                yield from _descriptions(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _descriptions(value, f"{path}[{i}]")


@pytest.mark.parametrize("crd", CRDS, ids=lambda c: c.kind)
def test_descriptions_are_plain_text_for_people(crd: Any) -> None:
    found = list(_descriptions(build(crd), crd.kind))
    assert len(found) > 10
    bad = [f"{path}: {text!r}" for path, text in found if FORBIDDEN.search(text)]
    assert not bad, "\n".join(bad)
    for path, text in found:
        assert "\n" not in text and "  " not in text, path
        assert text[0].isupper() or text[0] in "{0123456789", f"{path}: {text!r}"
        assert text.endswith("."), f"{path}: {text!r}"


@pytest.mark.parametrize("crd", CRDS, ids=lambda c: c.kind)
def test_every_field_has_a_description(crd: Any) -> None:
    schema = openapi_schema(crd)
    undocumented = [
        path
        for path, node in _fields(schema, crd.kind)
        # metadata is Kubernetes' own, documented by the API server.
        if path != f"{crd.kind}.metadata" and not node.get("description")
    ]
    assert not undocumented, undocumented


def _field(schema: Mapping[str, Any], dotted: str) -> Mapping[str, Any]:
    node = schema
    for name in dotted.split("."):
        node = node["properties"][name]
    return node


def test_defaults_that_matter_are_in_the_text() -> None:
    [rollout_crd] = [c for c in CRDS if c.kind == "Rollout"]
    schema = openapi_schema(rollout_crd)
    timeout = _field(schema, "spec.analysis.prometheus.timeout")["description"]
    assert "Default: 10s, or the gate's interval when that is shorter" in timeout
    assert "Default 30s" in _field(schema, "spec.analysis.interval")["description"]
    assert "Default 600" in _field(schema, "spec.progressDeadlineSeconds")["description"]
    assert (
        "milliseconds"
        in _field(schema, "spec.analysis.checks")["items"]["properties"]["latencyP99"][
            "properties"
        ]["maxMs"]["description"]
    )


def _gate(**fields: Any) -> dict[str, Any]:
    return {"checks": [{"name": "errors", "errorRate": {"max": 0.01}}], **fields}


@pytest.mark.parametrize(
    ("fields", "timeout"),
    [
        pytest.param({"interval": "5s"}, 5, id="interval-5s-shorter-than-10s"),
        pytest.param({"interval": 1}, 1, id="interval-1s"),
        pytest.param({"interval": "30s"}, 10, id="interval-30s"),
        pytest.param({}, 10, id="default-interval"),
        pytest.param({"interval": "5s", "prometheus": {"timeout": "3s"}}, 3, id="explicit"),
        pytest.param(
            {"interval": "5s", "prometheus": {"address": "http://p:9090"}}, 5, id="other-fields"
        ),
    ],
)
def test_prometheus_timeout_defaults_to_the_smaller_of_10s_and_the_interval(
    fields: dict[str, Any], timeout: int
) -> None:
    assert Analysis.model_validate(_gate(**fields)).prometheus.timeout == timeout


def _rollout(analysis: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rollout.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "reviews"},
        "spec": {
            "selector": {"matchLabels": {"app": "reviews"}},
            "template": {
                "metadata": {"labels": {"app": "reviews"}},
                "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]},
            },
            "trafficRouting": {
                "istio": {
                    "virtualServices": [{"name": "reviews"}],
                    "stableService": "reviews-stable",
                    "canaryService": "reviews-canary",
                }
            },
            "analysis": analysis,
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"analysis": {}}]}},
        },
    }


def test_a_5s_gate_without_a_timeout_is_valid_and_an_explicit_longer_one_is_not() -> None:
    rollout = parse_rollout(_rollout(_gate(interval="5s")))
    assert spec_problems(rollout.spec) == []
    assert rollout.spec.analysis is not None
    assert rollout.spec.analysis.prometheus.timeout == 5
    with pytest.raises(InvalidManifest) as refused:
        parse_rollout(_rollout(_gate(interval="5s", prometheus={"timeout": "10s"})))
    assert [p.path for p in refused.value.problems] == ["spec.analysis.prometheus.timeout"]
