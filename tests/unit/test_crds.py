"""The CRDs in crds/: generated from the models, structural, and in agreement with the models.

Manifests are validated against each CRD's openAPIV3Schema with a real JSON Schema validator
(Draft 4, the dialect of OpenAPI v3.0 that Kubernetes speaks: ``exclusiveMinimum`` is a boolean;
``x-kubernetes-*`` keys are unknown keywords, hence no-ops) and every CEL rule is evaluated with a
real CEL runtime (celpy) at its node, as the API server would.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import celpy.celtypes
import jsonschema
import pytest
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from rollout.api import crdgen
from rollout.api.manifest import InvalidManifest, parse_manifest
from rollout.api.rollout import MAX_NAME, NAME_MESSAGE
from rollout.api.status import (
    PAUSE_CANARY_STEP,
    AnalysisStatus,
    CheckStatus,
    Condition,
    Measurement,
    PauseCondition,
    RolloutStatus,
    Weights,
)

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
EXAMPLE_FILES = sorted((CRD_DIR / "examples").glob("*.yaml"))
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


# --- loading -------------------------------------------------------------------------------------


@cache
def _crds() -> dict[str, dict[str, Any]]:
    """kind -> the committed CRD document."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        out[doc["spec"]["names"]["kind"]] = doc
    return out


def crd(kind: str) -> dict[str, Any]:
    return copy.deepcopy(_crds()[kind])


def schema_of(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def validation_errors(doc: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema_of(str(doc["kind"])))
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.validator}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in EXAMPLE_FILES:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            out.append((f"{path.name}[{i}]", doc))
    return out


def example(filename: str, kind: str) -> dict[str, Any]:
    for name, doc in example_docs():
        if name.startswith(f"{filename}[") and doc["kind"] == kind:
            return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} in crds/examples/{filename}")


# --- walking a schema and a document together -----------------------------------------------------


def schema_nodes(
    node: Mapping[str, Any], path: str = ""
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node under ``node`` (properties, additionalProperties, items)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from schema_nodes(extra, f"{path}.*")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")


def dict_keys(value: object) -> Iterator[str]:
    """Every key of every mapping anywhere in ``value``."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            yield str(key)
            yield from dict_keys(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from dict_keys(sub)


def _child_schema(schema: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    if key in schema.get("properties", {}):
        sub: Mapping[str, Any] = schema["properties"][key]
        return sub
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def as_kubernetes_sees_it(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` as the API server hands it to CEL: a ``type: number`` value is a double."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            child = _child_schema(schema, key)
            out[key] = as_kubernetes_sees_it(sub, child) if child is not None else sub
        return out
    if isinstance(value, list):
        return [as_kubernetes_sees_it(v, schema.get("items", {})) for v in value]
    return value


_ENV = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def evaluate(rule: str, activation: Mapping[str, Any]) -> str:
    """``pass``, ``fail`` or ``error: ...`` (an error rejects the object too, in Kubernetes)."""
    try:
        result = _program(rule).evaluate(dict(activation))
    except CELEvalError as error:
        return f"error: {error}"
    if not isinstance(result, celpy.celtypes.BoolType):
        return f"error: {rule!r} gave {result!r}, not a bool"
    return "pass" if bool(result) else "fail"


@dataclass(frozen=True)
class Outcome:
    path: str
    message: str
    result: str


def rule_outcomes(value: Any, schema: Mapping[str, Any], path: str = "") -> list[Outcome]:
    """Every CEL rule of ``schema`` and its descendants, at each node present in ``value``.

    Transition rules (those using ``oldSelf``) are skipped: a create has no old object.
    """
    outcomes = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        seen = as_kubernetes_sees_it(value, schema)
        if not path and isinstance(seen, Mapping):
            # At the resource's root, CEL sees only metadata's name and generateName.
            meta = seen.get("metadata") or {}
            kept = {k: meta[k] for k in ("name", "generateName") if k in meta}
            seen = {**seen, "metadata": kept}
        self_ = json_to_cel(seen)
        outcomes.append(Outcome(path, rule["message"], evaluate(rule["rule"], {"self": self_})))
    if isinstance(value, Mapping):
        for key, sub in value.items():
            child = _child_schema(schema, key)
            if child is not None:
                outcomes += rule_outcomes(sub, child, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            outcomes += rule_outcomes(item, schema["items"], f"{path}[{i}]")
    return outcomes


def failed_messages(doc: Mapping[str, Any]) -> set[str]:
    return {
        o.message for o in rule_outcomes(doc, schema_of(str(doc["kind"]))) if o.result == "fail"
    }


DELETE = object()


def edited(doc: Mapping[str, Any], edits: Mapping[str, object]) -> dict[str, Any]:
    """A copy of ``doc`` with ``{"spec.a.0.b": value}`` set (or removed, for ``DELETE``)."""
    out = copy.deepcopy(dict(doc))
    for dotted, value in edits.items():
        *parents, last = dotted.split(".")
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = copy.deepcopy(value)
    return out


# --- the files are what the models generate -------------------------------------------------------


def test_committed_crds_are_what_the_models_generate() -> None:
    generated = crdgen.generated()
    assert generated == crdgen.generated(), "generation is not deterministic"
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(generated)
    for name, text in generated.items():
        committed = (CRD_DIR / name).read_text(encoding="utf-8")
        assert committed == text, f"crds/{name} is stale: run python -m rollout.api.crdgen"


def test_check_flags_a_stale_file_and_passes_a_fresh_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--dir", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "rollout.dev_rollouts.yaml").write_text("stale: true\n", encoding="utf-8")
    capsys.readouterr()
    assert crdgen.main(["--check", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'rollout.dev_rollouts.yaml'} is out of date with the models: "
        "run python -m rollout.api.crdgen"
    ]


def test_files_say_they_are_generated() -> None:
    for name in crdgen.generated():
        text = (CRD_DIR / name).read_text(encoding="utf-8")
        assert text.startswith("# Generated from the models in rollout/api by ")
        assert "python -m rollout.api.crdgen" in text.splitlines()[0]


# --- the CRDs are structural and complete ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["Rollout", "AnalysisTemplate"])
def test_schema_is_structural(kind: str) -> None:
    schema = schema_of(kind)
    jsonschema.Draft4Validator.check_schema(schema)
    keys = set(dict_keys(schema))
    assert not keys & {"$ref", "$defs", "definitions", "title", "default", "nullable", "const"}
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    for path, node in schema_nodes(schema):
        where = path or "<root>"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, where
            assert node["anyOf"] == INT_OR_STRING, where
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}
            assert "anyOf" not in node, where
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert node["type"] == "object", where
        if node.get("type") == "array":
            assert "items" in node, where
        if node.get("type") == "object" and path != ".metadata":  # the API server's own
            assert not ("properties" in node and "additionalProperties" in node), where
            assert (
                "properties" in node
                or isinstance(node.get("additionalProperties"), Mapping)
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), where
        for name in node.get("required", []):
            assert name in node["properties"], f"{where}: required {name} is not a property"


_SELF_PATH = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@pytest.mark.parametrize("kind", ["Rollout", "AnalysisTemplate"])
def test_every_cel_rule_compiles_and_names_real_fields(kind: str) -> None:
    # Kubernetes type-checks rules when the CRD is applied; celpy does not, and has() on a
    # misspelt field is merely false. So check that every self.a.b path exists in the schema.
    rules = 0
    for path, node in schema_nodes(schema_of(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            assert rule["message"].strip() and "\n" not in rule["message"]
            _program(rule["rule"])
            for match in _SELF_PATH.finditer(rule["rule"]):
                current: Mapping[str, Any] = node
                for name in match.group(1).split(".")[1:]:
                    if "properties" not in current:
                        break  # a map, list or scalar: what follows is a macro or a function
                    assert name in current["properties"], f"{path}: {rule['rule']!r}: no {name}"
                    current = current["properties"][name]
    assert rules > 0


def test_short_names_and_categories_do_not_clash_with_argo_or_flagger() -> None:
    """Argo Rollouts' CRDs are kind Rollout/AnalysisTemplate with the short name ro, Flagger's
    Canary has canary/canaries: kubectl resolves a short name to one group only, so ours must
    differ; both our kinds share one category (not "all": `kubectl get all` stays built-in)."""
    taken = {"ro", "rollout", "rollouts", "canary", "canaries", "analysistemplate"}
    for kind, short in (("Rollout", ["rdro"]), ("AnalysisTemplate", ["rdat"])):
        names = crd(kind)["spec"]["names"]
        assert names["shortNames"] == short
        assert not taken & set(names["shortNames"])
        assert names["categories"] == ["rollout-dev"]


def test_rollout_crd_names_subresources_and_columns() -> None:
    doc = crd("Rollout")
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == "rollouts.rollout.dev"
    spec = doc["spec"]
    assert spec["group"] == "rollout.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "Rollout",
        "listKind": "RolloutList",
        "plural": "rollouts",
        "singular": "rollout",
        "shortNames": ["rdro"],
        "categories": ["rollout-dev"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        },
    }
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ("string", ".status.phase"),
        "Strategy": ("string", ".status.strategy"),
        "Step": ("string", ".status.step"),
        "Canary Weight": ("integer", ".status.weights.canary"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }
    schema = version["schema"]["openAPIV3Schema"]
    # Every path a column or the scale subresource reads exists in the schema.
    for json_path in [*(p for _, p in columns.values()), ".spec.replicas", ".status.selector"]:
        node = schema
        for name in json_path.strip(".").split("."):
            if name == "metadata":
                break
            node = node["properties"][name]


def test_analysis_template_crd_has_no_subresources() -> None:
    doc = crd("AnalysisTemplate")
    assert doc["metadata"]["name"] == "analysistemplates.rollout.dev"
    assert doc["spec"]["names"]["plural"] == "analysistemplates"
    assert doc["spec"]["scope"] == "Namespaced"
    [version] = doc["spec"]["versions"]
    assert "subresources" not in version
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Age"]
    assert "status" not in version["schema"]["openAPIV3Schema"]["properties"]


def test_selector_transition_rule_keeps_the_selector() -> None:
    selector_schema = schema_of("Rollout")["properties"]["spec"]["properties"]["selector"]
    [rule] = [r["rule"] for r in selector_schema["x-kubernetes-validations"]]
    old = json_to_cel({"matchLabels": {"app": "reviews"}})
    same = json_to_cel({"matchLabels": {"app": "reviews"}})
    changed = json_to_cel({"matchLabels": {"app": "reviews", "track": "x"}})
    assert evaluate(rule, {"self": same, "oldSelf": old}) == "pass"
    assert evaluate(rule, {"self": changed, "oldSelf": old}) == "fail"


# --- examples: valid for the CRD, its CEL rules and the models -----------------------------------


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=[n for n, _ in example_docs()])
def test_example_is_valid_for_crd_cel_and_models(name: str, doc: dict[str, Any]) -> None:
    assert validation_errors(doc) == []
    outcomes = rule_outcomes(doc, schema_of(doc["kind"]))
    assert outcomes, f"{name}: no CEL rule was evaluated"
    assert [o for o in outcomes if o.result != "pass"] == []
    parse_manifest(doc)


def test_examples_cover_every_strategy_and_split() -> None:
    rollouts = [d for _, d in example_docs() if d["kind"] == "Rollout"]
    assert {s for d in rollouts for s in d["spec"]["strategy"]} == {"canary", "blueGreen", "mirror"}
    istio = [d["spec"]["trafficRouting"]["istio"] for d in rollouts]
    assert any("destinationRule" in i for i in istio)
    assert any("stableService" in i for i in istio)


VALID_VARIANTS = [
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.analysis": DELETE, "spec.strategy.canary": {"scaleDownDelaySeconds": 10}},
        id="canary-without-steps-or-gate",
    ),
    pytest.param(
        "blue-green.yaml",
        "Rollout",
        {
            "spec.analysis": DELETE,
            "spec.strategy.blueGreen": {"previewReplicaCount": 1},
        },
        id="blue-green-without-gate",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.analysis.interval": 1, "spec.analysis.prometheus.timeout": 1},
        id="interval-one-second",
    ),
    pytest.param("canary.yaml", "AnalysisTemplate", {"spec.min": 0.5}, id="min-equals-max"),
    pytest.param("canary.yaml", "Rollout", {"metadata.name": "r" * 63}, id="name-of-63"),
    pytest.param("canary.yaml", "Rollout", {"metadata.name": "a." * 31 + "b"}, id="dotted-name"),
    pytest.param(
        "canary.yaml", "AnalysisTemplate", {"metadata.name": "t" * 200}, id="long-template-name"
    ),
]


@pytest.mark.parametrize(("filename", "kind", "edits"), VALID_VARIANTS)
def test_valid_variant_passes_every_check(
    filename: str, kind: str, edits: Mapping[str, object]
) -> None:
    doc = edited(example(filename, kind), edits)
    assert validation_errors(doc) == []
    assert [o for o in rule_outcomes(doc, schema_of(kind)) if o.result != "pass"] == []
    parse_manifest(doc)


# --- invalid manifests: rejected by a CEL rule AND by the models ----------------------------------

STEPS = "spec.strategy.canary.steps"
ISTIO = "spec.trafficRouting.istio"
CHECKS = "spec.analysis.checks"

INVALID_FOR_CEL = [
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"metadata.name": "r" * 64},
        NAME_MESSAGE,
        id="name-of-64",
    ),
    pytest.param(
        "blue-green.yaml",
        "Rollout",
        {"metadata.name": "a" * 100 + ".b"},
        NAME_MESSAGE,
        id="long-dotted-name",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.strategy.mirror": {"percent": 100}},
        "set exactly one strategy: canary, blueGreen or mirror",
        id="two-strategies",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{STEPS}.0": {"setWeight": 10, "pause": {}}},
        "a step has exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror",
        id="step-with-two-actions",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{STEPS}.0": {}},
        "a step has exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror",
        id="step-with-no-action",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{CHECKS}.0.latencyP99": {"maxMs": 500}},
        "a check has exactly one of errorRate, latencyP99, templateRef",
        id="check-with-two-kinds",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{CHECKS}.0": {"name": "error-rate"}},
        "a check has exactly one of errorRate, latencyP99, templateRef",
        id="check-with-no-kind",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{CHECKS}.0.errorRate": {"minRequests": 10}},
        "errorRate needs max or maxIncreaseOverStable",
        id="error-rate-without-threshold",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{CHECKS}.1.latencyP99": {"minRequests": 10}},
        "latencyP99 needs maxMs or maxRatioToStable",
        id="latency-without-threshold",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{ISTIO}.stableService": "reviews-stable", f"{ISTIO}.canaryService": "reviews-canary"},
        "set either destinationRule (subset-level split) or stableService and canaryService "
        "(host-level split)",
        id="destination-rule-and-services",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{ISTIO}.destinationRule": DELETE},
        "set either destinationRule (subset-level split) or stableService and canaryService "
        "(host-level split)",
        id="no-split",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{ISTIO}.destinationRule": DELETE, f"{ISTIO}.stableService": "reviews-stable"},
        "stableService and canaryService go together",
        id="stable-service-without-canary-service",
    ),
    pytest.param(
        "blue-green.yaml",
        "Rollout",
        {f"{ISTIO}.canaryService": "ratings-stable"},
        "stableService and canaryService must differ",
        id="same-stable-and-canary-service",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{ISTIO}.destinationRule.canarySubset": "stable"},
        "stableSubset and canarySubset must differ",
        id="same-stable-and-canary-subset",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.analysis": DELETE},
        "analysis steps need spec.analysis",
        id="analysis-step-without-gate",
    ),
    pytest.param(
        "mirror.yaml",
        "Rollout",
        {"spec.analysis": DELETE},
        "blueGreen promotion analysis and the mirror strategy need spec.analysis",
        id="mirror-without-gate",
    ),
    pytest.param(
        "blue-green.yaml",
        "Rollout",
        {"spec.analysis": DELETE, "spec.strategy.blueGreen.postPromotionAnalysis": DELETE},
        "blueGreen promotion analysis and the mirror strategy need spec.analysis",
        id="blue-green-pre-promotion-analysis-without-gate",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.template.metadata.labels": {"app": "ratings"}},
        "selector.matchLabels must match template.metadata.labels",
        id="selector-does-not-match-template",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.template.metadata": {}},
        "selector.matchLabels must match template.metadata.labels",
        id="template-without-labels",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{CHECKS}.1.name": "error-rate"},
        "check names must be unique",
        id="duplicate-check-names",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{STEPS}.3.setHeaderRoute.match.0.headers.end-user": {"exact": "jason", "prefix": "j"}},
        "set exactly one of exact, prefix, regex",
        id="string-match-with-two-keys",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {f"{STEPS}.3.setHeaderRoute.match.0.headers.end-user": {}},
        "set exactly one of exact, prefix, regex",
        id="string-match-with-no-key",
    ),
    pytest.param(
        "canary.yaml",
        "Rollout",
        {"spec.analysis.interval": "0s"},
        "must be at least 1s",
        id="zero-interval-as-string",
    ),
    pytest.param(
        "mirror.yaml",
        "Rollout",
        {"spec.strategy.mirror.duration": "0m0s"},
        "must be at least 1s",
        id="zero-mirror-duration-as-string",
    ),
    pytest.param(
        "canary.yaml",
        "AnalysisTemplate",
        {"spec.max": DELETE},
        "set min, max or both",
        id="template-without-bounds",
    ),
    pytest.param(
        "canary.yaml",
        "AnalysisTemplate",
        {"spec.min": 1, "spec.max": 0.5},
        "min must be <= max",
        id="template-min-above-max",
    ),
    pytest.param(
        "canary.yaml",
        "AnalysisTemplate",
        {"spec.args": [{"name": "service"}, {"name": "service"}]},
        "arg names must be unique",
        id="template-duplicate-args",
    ),
]


@pytest.mark.parametrize(("filename", "kind", "edits", "message"), INVALID_FOR_CEL)
def test_invalid_manifest_is_rejected_by_cel_and_by_the_models(
    filename: str, kind: str, edits: Mapping[str, object], message: str
) -> None:
    doc = edited(example(filename, kind), edits)
    assert message in failed_messages(doc)
    with pytest.raises(InvalidManifest):
        parse_manifest(doc)


INVALID_FOR_SCHEMA = [
    pytest.param({f"{STEPS}.0.setWeight": 101}, "maximum", id="weight-above-100"),
    pytest.param({f"{STEPS}.0.setWeight": -1}, "minimum", id="weight-below-0"),
    pytest.param({f"{STEPS}.4.setMirror.percent": 100.5}, "maximum", id="mirror-above-100"),
    pytest.param({"spec.analysis.interval": 0}, "minimum", id="zero-interval"),
    pytest.param({"spec.analysis.interval": "30"}, "pattern", id="interval-without-unit"),
    pytest.param({"spec.analysis.interval": " 30s"}, "pattern", id="interval-with-blank"),
    pytest.param({f"{STEPS}.2.analysis.count": 0}, "minimum", id="zero-analysis-count"),
    pytest.param({"spec.strategy": {"mirror": {"percent": 0}}}, "minimum", id="mirror-zero"),
    pytest.param({f"{CHECKS}.0.errorRate.max": 1.5}, "maximum", id="error-rate-above-1"),
    pytest.param({f"{CHECKS}.1.latencyP99.maxMs": 0}, "minimum", id="latency-zero"),
    pytest.param({f"{CHECKS}.0.name": "Error_Rate"}, "pattern", id="check-name-not-dns"),
    pytest.param({f"{CHECKS}": []}, "minItems", id="no-checks"),
    pytest.param({"spec.strategy.canary.steps": [{"setWeight": 1}] * 101}, "maxItems", id="steps"),
    pytest.param({"spec.selector.matchLabels.app": "x" * 64}, "maxLength", id="long-label"),
    pytest.param({"spec.analysis.prometheus.address": "prometheus:9090"}, "pattern", id="url"),
    pytest.param({"spec.template": DELETE}, "required", id="no-template"),
]


@pytest.mark.parametrize(("edits", "keyword"), INVALID_FOR_SCHEMA)
def test_invalid_value_is_rejected_by_the_schema_and_by_the_models(
    edits: Mapping[str, object], keyword: str
) -> None:
    doc = edited(example("canary.yaml", "Rollout"), edits)
    errors = validation_errors(doc)
    assert any(f": {keyword}: " in e for e in errors), errors
    with pytest.raises(InvalidManifest):
        parse_manifest(doc)


# --- status: the schema accepts everything the controller writes ----------------------------------


def test_status_schema_accepts_a_fully_populated_status() -> None:
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    status = RolloutStatus(
        observed_generation=7,
        phase="Progressing",
        message="step 2/6: weight 10%, gate 3/5 passed",
        strategy="canary",
        stable_revision="6d4f9c",
        canary_revision="8b1e22",
        current_step_index=2,
        step_count=7,
        step="3/7",
        step_started_at=now,
        waiting_for_replicas_since=now,
        weights=Weights(stable=90, canary=10, mirror=50.0),
        pause_conditions=[PauseCondition(reason=PAUSE_CANARY_STEP, start_time=now)],
        abort=True,
        promote_full=True,
        paused_by_user=True,
        aborted_at=now,
        abort_reason="gate failed: error-rate",
        analysis=AnalysisStatus(
            phase="Running",
            started_at=now,
            count=5,
            message="3/5",
            checks=[
                CheckStatus(
                    name="error-rate",
                    phase="Successful",
                    successful=3,
                    failed=1,
                    inconclusive=1,
                    errors=1,
                    consecutive_errors=1,
                    dry_run=True,
                    measurements=[
                        Measurement(at=now, phase="Successful", value=0.002, message="ok"),
                        Measurement(at=now, phase="Error", message="prometheus: timeout"),
                    ],
                )
            ],
        ),
        replicas=5,
        ready_replicas=5,
        available_replicas=4,
        selector="app=reviews",
        conditions=[
            Condition(
                type="Progressing",
                status="True",
                reason="NewRevision",
                message="updating to 8b1e22",
                last_transition_time=now,
                observed_generation=7,
            )
        ],
    )
    wire = status.wire()
    status_schema = schema_of("Rollout")["properties"]["status"]
    assert set(wire) == set(status_schema["properties"]), "set every status field in this test"
    doc = {**example("canary.yaml", "Rollout"), "status": wire}
    assert validation_errors(doc) == []
    parsed = parse_manifest(doc)
    assert getattr(parsed, "status", None) == status
    # And the schema does constrain status: a phase the controller never writes is rejected.
    assert validation_errors(edited(doc, {"status.phase": "Running"}))


# --- the Rollout's name: a rule at the root, which reads metadata.name ----------------------------


def test_the_root_rule_bounds_the_rollout_name_by_what_the_controller_derives_from_it() -> None:
    schema = schema_of("Rollout")
    assert schema["x-kubernetes-validations"] == [
        {"rule": f"self.metadata.name.size() <= {MAX_NAME}", "message": NAME_MESSAGE}
    ]
    doc = example("canary.yaml", "Rollout")
    for length, result in ((1, "pass"), (MAX_NAME, "pass"), (MAX_NAME + 1, "fail")):
        named = edited(doc, {"metadata.name": "r" * length})
        [root] = [o for o in rule_outcomes(named, schema) if o.path == ""]
        assert (root.message, root.result) == (NAME_MESSAGE, result), length
    # The canonical-name label value is the binding limit (63); a ReplicaSet name
    # <rollout>-<hash> stays a valid DNS-1123 subdomain (<= 253) far below it.
    assert MAX_NAME == 63
    assert "rule" not in str(schema_of("AnalysisTemplate").get("x-kubernetes-validations", ""))


def test_a_long_rollout_name_is_refused_by_the_models_at_metadata_name() -> None:
    doc = edited(example("canary.yaml", "Rollout"), {"metadata.name": "r" * (MAX_NAME + 1)})
    with pytest.raises(InvalidManifest) as raised:
        parse_manifest(doc)
    [problem] = raised.value.problems
    assert problem.path == "metadata.name"
    assert problem.message == f"{NAME_MESSAGE}, not {MAX_NAME + 1}"
