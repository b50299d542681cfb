"""The sandbox apiserver's pruning and validation of custom resources, on the real CRDs in crds/.

Expected messages are the apiserver's (apiextensions-apiserver + kube-openapi + apimachinery's
``field.Error``), as ``rollout/sandbox/schema.py`` documents them.
"""

from __future__ import annotations

import copy
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollout.sandbox.schema import Cause, compiled_rule_count, prune, validate

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"

NOT_CHECKED = Cause(
    "<nil>",
    "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation",
)


@cache
def _schemas() -> dict[str, dict[str, Any]]:
    """kind -> the v1alpha1 openAPIV3Schema (one object per kind, as the sandbox keeps it)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def schema_of(kind: str) -> dict[str, Any]:
    return _schemas()[kind]


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((CRD_DIR / "examples").glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            out.append((f"{path.name}[{i}]", doc))
    return out


EXAMPLES = _examples()


def example(filename: str, kind: str = "Rollout") -> dict[str, Any]:
    for name, doc in EXAMPLES:
        if name.startswith(f"{filename}[") and doc["kind"] == kind:
            return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} in crds/examples/{filename}")


def admit(doc: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
    """What the sandbox does on a write: prune, then validate the pruned body."""
    schema = schema_of(doc["kind"])
    return validate(prune(doc, schema), schema, old)


# --- examples -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_example_is_accepted(name: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == "rollout.dev/v1alpha1"
    assert prune(doc, schema_of(doc["kind"])) == doc, f"{name}: pruning changed a valid example"
    assert admit(doc) == []


# --- pruning --------------------------------------------------------------------------------------


def test_prune_drops_unknown_fields_and_keeps_preserved_ones_and_metadata() -> None:
    doc = example("canary.yaml")
    doc["spec"]["stratgey"] = {"canary": {}}
    doc["status"] = {"phase": "Healthy", "bogus": 1}
    doc["spec"]["template"]["spec"]["whatever"] = {"nested": [1, {"deep": True}]}
    doc["metadata"]["annotations"] = {"a": "b"}
    doc["metadata"]["somethingTheServerOwns"] = "kept"
    before = copy.deepcopy(doc)

    pruned = prune(doc, schema_of("Rollout"))

    assert doc == before, "prune must not modify its argument"
    assert "stratgey" not in pruned["spec"]
    assert pruned["status"] == {"phase": "Healthy"}
    assert pruned["spec"]["template"]["spec"]["whatever"] == {"nested": [1, {"deep": True}]}
    assert (
        pruned["spec"]["template"]["spec"]["containers"]
        == before["spec"]["template"]["spec"]["containers"]
    )
    assert pruned["metadata"] == before["metadata"]
    assert (pruned["apiVersion"], pruned["kind"]) == ("rollout.dev/v1alpha1", "Rollout")


def test_prune_drops_unknown_fields_inside_array_items_and_maps() -> None:
    doc = example("canary.yaml")
    doc["spec"]["strategy"]["canary"]["steps"][0]["typo"] = 5
    match = doc["spec"]["strategy"]["canary"]["steps"][3]["setHeaderRoute"]["match"][0]
    match["headers"]["end-user"]["suffix"] = "x"

    pruned = prune(doc, schema_of("Rollout"))

    assert pruned["spec"]["strategy"]["canary"]["steps"][0] == {"setWeight": 10}
    assert pruned["spec"]["strategy"]["canary"]["steps"][3]["setHeaderRoute"]["match"][0] == {
        "headers": {"end-user": {"exact": "jason"}}
    }


def test_prune_drops_non_nullable_nulls_so_a_null_required_field_is_missing() -> None:
    doc = example("canary.yaml")
    doc["spec"]["replicas"] = None
    doc["spec"]["selector"] = None

    pruned = prune(doc, schema_of("Rollout"))

    assert "replicas" not in pruned["spec"] and "selector" not in pruned["spec"]
    assert validate(pruned, schema_of("Rollout")) == [
        Cause("spec.selector", "Required value", "FieldValueRequired"),
        NOT_CHECKED,
    ]


def test_a_null_array_item_is_kept_and_refused() -> None:
    doc = example("canary.yaml")
    doc["spec"]["trafficRouting"]["istio"]["virtualServices"][0]["routes"] = [None]

    assert admit(doc) == [
        Cause(
            "spec.trafficRouting.istio.virtualServices[0].routes[0]",
            'Invalid value: "null": spec.trafficRouting.istio.virtualServices[0].routes[0] in body '
            'must be of type string: "null"',
            "FieldValueTypeInvalid",
        ),
        NOT_CHECKED,
    ]


# --- OpenAPI keywords -----------------------------------------------------------------------------


def test_weight_above_100_is_invalid_at_its_path() -> None:
    doc = example("canary.yaml")
    doc["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150

    assert admit(doc) == [
        Cause(
            "spec.strategy.canary.steps[0].setWeight",
            "Invalid value: 150: spec.strategy.canary.steps[0].setWeight in body should be less "
            "than or equal to 100",
        )
    ]


def test_missing_selector_is_required_and_blocks_the_cel_rules() -> None:
    doc = example("canary.yaml")
    del doc["spec"]["selector"]
    doc["spec"]["strategy"]["mirror"] = {"percent": 100}  # a CEL violation that goes unreported

    assert admit(doc) == [
        Cause("spec.selector", "Required value", "FieldValueRequired"),
        NOT_CHECKED,
    ]


def test_phase_outside_the_enum_is_an_unsupported_value() -> None:
    doc = example("canary.yaml")
    doc["status"] = {"phase": "Bogus"}

    assert admit(doc) == [
        Cause(
            "status.phase",
            'Unsupported value: "Bogus": supported values: "Healthy", "Progressing", "Paused", '
            '"Degraded"',
            "FieldValueNotSupported",
        ),
        NOT_CHECKED,
    ]


def test_wrong_types_lengths_and_counts() -> None:
    doc = example("canary.yaml")
    doc["spec"]["replicas"] = "4"
    doc["spec"]["selector"]["matchLabels"]["app"] = "x" * 64
    doc["spec"]["template"]["metadata"]["labels"]["app"] = "x" * 64
    doc["spec"]["analysis"]["checks"] = []
    doc["status"] = {"stepStartedAt": "yesterday", "weights": {"mirror": 100.5}}

    assert admit(doc) == [
        Cause(
            "spec.replicas",
            'Invalid value: "string": spec.replicas in body must be of type integer: "string"',
            "FieldValueTypeInvalid",
        ),
        Cause(
            "spec.selector.matchLabels.app",
            "Too long: may not be more than 63 bytes",
            "FieldValueTooLong",
        ),
        Cause(
            "spec.analysis.checks",
            "Invalid value: 0: spec.analysis.checks in body should have at least 1 items",
        ),
        Cause(
            "status.stepStartedAt",
            'Invalid value: "yesterday": status.stepStartedAt in body must be of type date-time: '
            '"yesterday"',
            "FieldValueTypeInvalid",
        ),
        Cause(
            "status.weights.mirror",
            "Invalid value: 100.5: status.weights.mirror in body should be less than or equal to "
            "100",
        ),
        NOT_CHECKED,
    ]


def test_too_many_steps() -> None:
    doc = example("canary.yaml")
    doc["spec"]["strategy"]["canary"]["steps"] = [{"setWeight": 1}] * 101

    assert admit(doc) == [
        Cause(
            "spec.strategy.canary.steps",
            "Too many: 101: must have at most 100 items",
            "FieldValueTooMany",
        ),
        NOT_CHECKED,
    ]


def test_int_or_string_accepts_both_and_refuses_a_boolean() -> None:
    doc = example("canary.yaml")
    doc["spec"]["analysis"]["interval"] = 30
    assert admit(doc) == []

    doc["spec"]["analysis"]["interval"] = True
    assert admit(doc) == [
        Cause(
            "spec.analysis.interval",
            'Invalid value: "boolean": spec.analysis.interval in body must be of type '
            'integer,string: "boolean"',
            "FieldValueTypeInvalid",
        ),
        Cause(
            "<nil>",
            'Invalid value: "": "spec.analysis.interval" must validate at least one schema (anyOf)',
        ),
        Cause(
            "spec.analysis.interval",
            'Invalid value: "boolean": spec.analysis.interval in body must be of type integer: '
            '"boolean"',
            "FieldValueTypeInvalid",
        ),
        NOT_CHECKED,
    ]


def test_duration_strings() -> None:
    doc = example("canary.yaml")
    doc["spec"]["analysis"]["interval"] = "1h30m"
    assert admit(doc) == []

    doc["spec"]["analysis"]["interval"] = "0s"  # matches the pattern; the CEL rule refuses it
    assert admit(doc) == [
        Cause("spec.analysis.interval", 'Invalid value: "0s": must be at least 1s'),
    ]

    doc["spec"]["analysis"]["interval"] = "30"  # no unit: the pattern refuses it
    [pattern, *rule_errors] = admit(doc)
    assert pattern == Cause(
        "spec.analysis.interval",
        'Invalid value: "30": spec.analysis.interval in body should match \'^([0-9]+h([0-9]+m)?('
        "[0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$'",
    )
    # A pattern error does not block CEL, and duration("30") errors at runtime.
    [rule_error] = rule_errors
    assert rule_error.field == "spec.analysis.interval"
    assert rule_error.message.startswith('Invalid value: "": ')
    assert rule_error.message.endswith(" evaluating rule: must be at least 1s")


# --- CEL rules ------------------------------------------------------------------------------------


def test_two_strategies_fail_the_cel_rule_with_its_message() -> None:
    doc = example("canary.yaml")
    doc["spec"]["strategy"]["mirror"] = {"percent": 100}

    message = "set exactly one strategy: canary, blueGreen or mirror"
    assert admit(doc) == [Cause("spec.strategy", f"Invalid value: {message}")]


def test_rules_run_at_every_array_item_and_map_value() -> None:
    doc = example("canary.yaml")
    steps = doc["spec"]["strategy"]["canary"]["steps"]
    steps[1] = {"setWeight": 20, "pause": {}}
    steps[3]["setHeaderRoute"]["match"][0]["headers"]["end-user"] = {"exact": "a", "prefix": "b"}

    message = "a step has exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror"
    assert admit(doc) == [
        Cause("spec.strategy.canary.steps[1]", f"Invalid value: {message}"),
        Cause(
            "spec.strategy.canary.steps[3].setHeaderRoute.match[0].headers[end-user]",
            "Invalid value: set exactly one of exact, prefix, regex",
        ),
    ]


def test_a_root_rule_reads_metadata_name_and_nothing_else_of_metadata() -> None:
    # The Rollout CRD bounds the name at its root (the pods' canonical-name label value).
    message = (
        "a Rollout name has at most 63 characters: it is the value of its pods' "
        "service.istio.io/canonical-name label, and a Kubernetes label value has at most 63 "
        "characters"
    )
    doc = example("canary.yaml")
    doc["metadata"]["name"] = "r" * 64
    assert admit(doc) == [Cause("<nil>", f"Invalid value: {message}")]
    doc["metadata"]["name"] = "r" * 63
    assert admit(doc) == []

    # CEL sees metadata.name and generateName only, as in Kubernetes: a rule reading labels
    # fails to evaluate rather than passing.
    schema = copy.deepcopy(schema_of("Rollout"))
    schema["x-kubernetes-validations"] = [
        {"rule": "self.metadata.generateName.size() <= 5", "message": "short prefix"},
        {"rule": "has(self.metadata.labels)", "message": "labels are not visible"},
    ]
    doc["metadata"] = {"generateName": "reviews-", "name": "x", "labels": {"a": "b"}}
    assert validate(prune(doc, schema), schema) == [
        Cause("<nil>", "Invalid value: short prefix"),
        Cause("<nil>", "Invalid value: labels are not visible"),
    ]


def test_selector_transition_rule() -> None:
    old = prune(example("canary.yaml"), schema_of("Rollout"))
    changed = copy.deepcopy(old)
    changed["spec"]["selector"]["matchLabels"]["track"] = "stable"
    changed["spec"]["template"]["metadata"]["labels"]["track"] = "stable"

    assert admit(changed, old) == [Cause("spec.selector", "Invalid value: selector is immutable")]
    assert admit(changed) == []  # a create has no old object: transition rules do not run

    unchanged = copy.deepcopy(old)
    unchanged["spec"]["replicas"] = 9
    assert admit(unchanged, old) == []


def test_an_update_ratchets_errors_in_unchanged_parts() -> None:
    # An object stored before a rule tightened (here: built by hand) keeps updating, as long as
    # the update leaves the invalid part alone (CRDValidationRatcheting, on since 1.30).
    old = prune(example("canary.yaml"), schema_of("Rollout"))
    old["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 9

    assert admit(old) != []
    assert admit(new, old) == []

    new["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 160
    assert [c.field for c in admit(new, old)] == ["spec.strategy.canary.steps[0].setWeight"]


def test_programs_are_compiled_once_per_rule_text() -> None:
    doc = example("canary.yaml")
    admit(doc)
    compiled = compiled_rule_count()
    assert compiled > 0

    admit(doc)
    variant = copy.deepcopy(doc)
    variant["spec"]["replicas"] = 7
    variant["spec"]["strategy"]["canary"]["steps"].append({"setWeight": 90})
    admit(variant)

    assert compiled_rule_count() == compiled


def test_validation_speed_is_reported() -> None:
    # Measured and printed (pytest -s), never asserted: timing depends on the machine.
    schema = schema_of("Rollout")
    doc = prune(example("canary.yaml"), schema)

    start = time.perf_counter()
    for _ in range(200):
        assert validate(doc, schema) == []
    same = time.perf_counter() - start

    variants = []
    for replicas in range(1000, 1020):
        variant = copy.deepcopy(doc)
        variant["spec"]["replicas"] = replicas
        variant["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = replicas % 100
        variants.append(variant)
    start = time.perf_counter()
    for variant in variants:
        assert validate(variant, schema) == []
    fresh = (time.perf_counter() - start) / len(variants)

    print(
        f"\nvalidate(canary) x200: {same * 1000:.0f} ms ({same / 200 * 1000:.2f} ms each); "
        f"a spec not seen before: {fresh * 1000:.1f} ms each"
    )


# --- pruning rules, on small schemas (the apiserver's pruning.go) ---------------------------------

OBJ = {"type": "object"}
PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
PRUNING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "known": {"type": "string"},
                "free": {
                    **PRESERVE,
                    "properties": {"typed": {**OBJ, "properties": {"a": {"type": "string"}}}},
                },
                "freeList": {"type": "array", "items": PRESERVE},
                "listUnderFree": {
                    **PRESERVE,
                    "properties": {
                        "rows": {
                            "type": "array",
                            "items": {**OBJ, "properties": {"a": {"type": "string"}}},
                        }
                    },
                },
                "keptRows": {
                    "type": "array",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "items": {**OBJ, "properties": {"a": {"type": "string"}}},
                },
                "port": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "byName": {
                    "type": "object",
                    "additionalProperties": {**OBJ, "properties": {"a": {"type": "string"}}},
                },
                "embedded": {
                    **OBJ,
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {**OBJ, "properties": {"a": {"type": "string"}}}},
                },
                "nullable": {"type": "string", "nullable": True},
                "defaulted": {"type": "string", "default": "x"},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"known": "k", "unknown": 1}, {"known": "k"}),
        # preserve-unknown keeps unknown keys, but a known field is pruned by its own schema
        (
            {"free": {"anything": {"deep": 1}, "typed": {"a": "1", "b": 2}}},
            {"free": {"anything": {"deep": 1}, "typed": {"a": "1"}}},
        ),
        ({"freeList": [{"x": 1}, {"y": [2]}]}, {"freeList": [{"x": 1}, {"y": [2]}]}),
        # below preserve-unknown a known field is pruned by its schema, array items included
        (
            {"listUnderFree": {"rows": [{"a": "1", "b": 2}], "other": 3}},
            {"listUnderFree": {"rows": [{"a": "1"}], "other": 3}},
        ),
        # preserve-unknown on an array reaches into its items (skipPrune walks them)
        ({"keptRows": [{"a": "1", "b": 2}]}, {"keptRows": [{"a": "1", "b": 2}]}),
        ({"port": "http"}, {"port": "http"}),
        ({"port": 8080}, {"port": 8080}),
        ({"labels": {"app": "x"}}, {"labels": {"app": "x"}}),
        ({"byName": {"one": {"a": "1", "b": 2}}}, {"byName": {"one": {"a": "1"}}}),
        # an embedded resource keeps apiVersion, kind and metadata whole
        (
            {
                "embedded": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "m", "labels": {"a": "b"}},
                    "spec": {"a": "1", "b": 2},
                    "extra": 1,
                }
            },
            {
                "embedded": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "m", "labels": {"a": "b"}},
                    "spec": {"a": "1"},
                }
            },
        ),
        # non-nullable nulls without a default are dropped; nullable or defaulted ones stay
        (
            {"known": None, "nullable": None, "defaulted": None},
            {"nullable": None, "defaulted": None},
        ),
    ],
)
def test_pruning_follows_the_apiserver(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}
    before = copy.deepcopy(obj)
    pruned = prune(obj, PRUNING_SCHEMA)
    assert pruned == {**before, "spec": expected}
    assert obj == before  # a new object; the input is untouched
