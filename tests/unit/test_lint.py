"""``rollout lint``: field paths of every class of mistake, cross-document checks, exit codes.

Fixtures are the canary example (crds/examples/canary.yaml) mutated one mistake at a time.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

import rollout.lint
from rollout.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "crds" / "examples"
CANARY = EXAMPLES / "canary.yaml"
BROKEN = ROOT / "docs" / "examples" / "broken-rollout.yaml"
DELETE = object()
REF = "spec.analysis.checks[3].templateRef"


def canary_docs() -> list[dict[str, Any]]:
    """The canary example: a Rollout (shop/reviews) and its AnalysisTemplate (checkout-errors)."""
    docs = list(yaml.safe_load_all(CANARY.read_text()))
    assert [d["kind"] for d in docs] == ["Rollout", "AnalysisTemplate"]
    return docs


def _parent(doc: Any, path: str) -> tuple[Any, str | int]:
    """The container holding the last part of ``path`` (``a.b[2].c``) and that part."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    for part in parts[:-1]:
        doc = doc[part]
    return doc, parts[-1]


def mutate(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with each ``path: value`` set, or removed when the value is DELETE."""
    doc = copy.deepcopy(doc)
    for path, value in changes.items():
        parent, key = _parent(doc, path)
        if value is DELETE:
            del parent[key]
        else:
            parent[key] = value
    return doc


def write(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def lint(*args: str | Path, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(app, ["lint", *map(str, args)], input=stdin)


def lint_rollout(tmp_path: Path, changes: dict[str, Any]) -> Result:
    rollout, template = canary_docs()
    return lint(write(tmp_path / "rollout.yaml", mutate(rollout, changes), template))


def test_examples_are_clean() -> None:
    result = lint(EXAMPLES)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert re.fullmatch(r"\d+ manifests, no problems\n", result.stderr)


def test_the_unchanged_fixture_is_clean(tmp_path: Path) -> None:
    result = lint_rollout(tmp_path, {})
    assert result.exit_code == 0, result.output
    assert result.stderr == "2 manifests, no problems\n"


def test_valid_metadata_is_clean(tmp_path: Path) -> None:
    metadata = {
        "labels": {"app.kubernetes.io/name": "reviews", "empty": "", "a_b.c-d": "X_1.y-2"},
        # Annotation keys are checked lowercased by the server: an uppercase prefix is valid.
        "annotations": {"example.com/note": "any text at all", "note": "", "Example.com/N": ""},
        "finalizers": ["example.com/cleanup"],
        "generateName": "reviews-",
    }
    changes = {f"metadata.{k}": v for k, v in metadata.items()}
    result = lint_rollout(tmp_path, {**changes, "spec.analysis.prometheus.timeout": 5})
    assert result.exit_code == 0, result.output


CANARY_STEPS = "spec.strategy.canary.steps"
NO_ANALYSIS = {"spec.analysis": DELETE}


# One mistake each, with lint's report. tests/integration/test_kube_lint.py applies each to a
# real apiserver too: whatever the apiserver refuses, lint must refuse.
MISTAKES = [
    pytest.param({"spec.stratgey": {}}, "spec.stratgey: unknown field", id="typo"),
    pytest.param(
        {f"{CANARY_STEPS}[0].setWieght": 10},
        f"{CANARY_STEPS}[0].setWieght: unknown field",
        id="nested-typo",
    ),
    pytest.param(
        {"spec.strategy.blueGreen": {}},
        "spec.strategy: set exactly one strategy: canary, blueGreen or mirror",
        id="two-strategies",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[0].pause": {}},
        f"{CANARY_STEPS}[0]: a step has exactly one of setWeight, pause",
        id="two-actions",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[0].setWeight": 120},
        f"{CANARY_STEPS}[0].setWeight: must be <= 100, not 120",
        id="weight-over-100",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[5].setWeight": -1},
        f"{CANARY_STEPS}[5].setWeight: must be >= 0, not -1",
        id="weight-negative",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[1].pause.duration": "2x"},
        f"{CANARY_STEPS}[1].pause.duration: invalid duration '2x'",
        id="bad-duration",
    ),
    pytest.param(
        {"spec.analysis.interval": "30 s"},
        "spec.analysis.interval: invalid duration '30 s'",
        id="bad-interval",
    ),
    pytest.param(
        {"spec.selector.matchLabels": {"app": "ratings"}},
        "spec.selector: does not match template.metadata.labels",
        id="selector",
    ),
    pytest.param(
        NO_ANALYSIS,
        f"{CANARY_STEPS}[2].analysis: needs spec.analysis",
        id="analysis-step-without-gate",
    ),
    pytest.param(
        {**NO_ANALYSIS, "spec.strategy": {"blueGreen": {"prePromotionAnalysis": {}}}},
        "spec.strategy.blueGreen.prePromotionAnalysis: needs spec.analysis",
        id="blue-green-without-gate",
    ),
    pytest.param(
        {**NO_ANALYSIS, "spec.strategy": {"mirror": {"percent": 50}}},
        "spec.strategy.mirror: analyses the mirrored traffic, so it needs spec.analysis",
        id="mirror-without-gate",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[3].setHeaderRoute.match": []},
        f"{CANARY_STEPS}[3].setHeaderRoute.match: needs at least 1 item(s)",
        id="header-route-empty-match",
    ),
    pytest.param(
        {"spec.analysis.checks[1].name": "error-rate"},
        "spec.analysis: check names must be unique: error-rate repeated",
        id="duplicate-check-names",
    ),
    pytest.param(
        {"spec.trafficRouting.istio.virtualServices[0].name": "Reviews_1"},
        "spec.trafficRouting.istio.virtualServices[0].name: 'Reviews_1' does not match",
        id="vs-name-invalid",
    ),
    pytest.param(
        {"spec.trafficRouting.istio.virtualServices[1].name": "a.b.c"},
        "spec.trafficRouting.istio.virtualServices[1].name: 'a.b.c' does not match",
        id="vs-name-two-dots",
    ),
    pytest.param(
        {"metadata.name": DELETE},
        "Rollout/?: metadata.name: required field is missing",
        id="no-name",
    ),
]


# Found by applying the corpus to a real kube-apiserver (tests/integration/test_kube_lint.py):
# the server refused each of these and lint used to accept it.
SERVER_REFUSES = [
    pytest.param(
        {"spec.replicas": "3"},
        "spec.replicas: Input should be a valid integer",
        id="replicas-as-string",
    ),
    pytest.param(
        {f"{CANARY_STEPS}[0].setWeight": "10"},
        f"{CANARY_STEPS}[0].setWeight: Input should be a valid integer",
        id="weight-as-string",
    ),
    pytest.param(
        {"spec.analysis.prometheus.insecureSkipVerify": "true"},
        "spec.analysis.prometheus.insecureSkipVerify: Input should be a valid boolean",
        id="bool-as-string",
    ),
    pytest.param({"metadata.nmae": "x"}, "metadata.nmae: unknown field", id="metadata-typo"),
    pytest.param(
        {"metadata.labels": {"bad key!": "x"}},
        "metadata.labels.bad key!: 'bad key!' is not a qualified name",
        id="label-key",
    ),
    pytest.param(
        {"metadata.labels": {"team": "shop floor"}},
        "metadata.labels.team: 'shop floor' is not a label value",
        id="label-value",
    ),
    pytest.param(
        {"metadata.labels": {"team": "x" * 64}},
        "metadata.labels.team: '" + "x" * 64 + "' is not a label value",
        id="label-value-too-long",
    ),
    pytest.param(
        {"metadata.annotations": {"a/b/c": "x"}},
        "metadata.annotations.a/b/c: 'a/b/c' is not a qualified name: at most one '/'",
        id="annotation-key",
    ),
    pytest.param(
        {"metadata.annotations": {"example..com/x": "1"}},
        "metadata.annotations.example..com/x: 'example..com/x' is not a qualified name: the prefix",
        id="annotation-prefix",
    ),
    pytest.param(
        {"metadata.finalizers": ["bad finalizer!"]},
        "metadata.finalizers[0]: 'bad finalizer!' is not a qualified name",
        id="finalizer",
    ),
    pytest.param(
        {"metadata.ownerReferences": [{"apiVersion": "v1", "kind": "x", "name": "y"}]},
        "metadata.ownerReferences[0].uid: required field is missing",
        id="owner-reference",
    ),
    pytest.param(
        {"metadata.annotations": {"a": "x" * 256 * 1024}},
        "metadata.annotations: 262145 bytes: may not be more than 262144",
        id="annotations-over-256KiB",
    ),
]
MISTAKES += SERVER_REFUSES

# Valid manifests a real kube-apiserver accepts (``kubectl apply --dry-run=server``) that strict
# lint used to refuse: JSON has one number type (3.0 is an integer) and the server prunes a null
# field (``creationTimestamp: null`` is what ``kubectl create --dry-run -o yaml`` writes).
SERVER_ACCEPTS = [
    pytest.param({"spec.replicas": 3.0}, id="replicas-as-float"),
    pytest.param({"spec.replicas": 1e1}, id="replicas-exponent"),
    pytest.param({f"{CANARY_STEPS}[0].setWeight": 10.0}, id="weight-as-float"),
    pytest.param({f"{CANARY_STEPS}[1].pause.duration": 120.0}, id="duration-as-float"),
    pytest.param({"spec.template.metadata.creationTimestamp": None}, id="template-timestamp-null"),
    pytest.param({"spec.template.metadata.annotations": None}, id="template-annotations-null"),
    pytest.param({"spec.stratgey": None}, id="unknown-field-null"),
    pytest.param({"metadata.labels": None}, id="labels-null"),
    pytest.param({"metadata.annotations": {"a": None}}, id="annotation-value-null"),
    pytest.param({"metadata.labels": {"a": None}}, id="label-value-null"),
    pytest.param({"metadata.annotations": {"a": "x" * (256 * 1024 - 1)}}, id="annotations-256KiB"),
]


@pytest.mark.parametrize("changes", SERVER_ACCEPTS)
def test_what_the_server_accepts_is_clean(tmp_path: Path, changes: dict[str, Any]) -> None:
    result = lint_rollout(tmp_path, changes)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("changes", "expected"), MISTAKES)
def test_each_mistake_is_reported_with_its_field_path(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    result = lint_rollout(tmp_path, changes)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    prefix = f"{tmp_path / 'rollout.yaml'}: "
    assert lines[0].startswith(prefix)
    if "?" not in expected:
        expected = f"Rollout/reviews: {expected}"
    assert lines[0].removeprefix(prefix).startswith(expected), lines[0]
    assert result.stderr == "1 problem in 1 of 2 manifests\n"


def test_every_problem_of_a_manifest_is_reported(tmp_path: Path) -> None:
    result = lint_rollout(
        tmp_path, {"spec.stratgey": {}, f"{CANARY_STEPS}[0].setWeight": 120, REF + ".args": {}}
    )
    assert result.exit_code == 1
    paths = [line.split(": ")[2] for line in result.stdout.splitlines()]
    assert paths == ["spec.strategy.canary.steps[0].setWeight", "spec.stratgey", REF + ".args"]
    assert result.stderr == "3 problems in 1 of 2 manifests\n"


def test_a_missing_template_is_a_problem_unless_allowed(tmp_path: Path) -> None:
    rollout, _ = canary_docs()
    path = write(tmp_path / "rollout.yaml", rollout)
    result = lint(path)
    assert result.exit_code == 1
    assert result.stdout == (
        f"{path}: Rollout/reviews: {REF}.name: "
        "AnalysisTemplate shop/checkout-errors is not among the given files\n"
    )
    relaxed = lint("--allow-missing-templates", path)
    assert relaxed.exit_code == 0, relaxed.output


def test_a_template_in_another_namespace_does_not_count(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    elsewhere = mutate(template, {"metadata.namespace": "other"})
    result = lint(write(tmp_path / "r.yaml", rollout, elsewhere))
    assert result.exit_code == 1
    assert "AnalysisTemplate shop/checkout-errors is not among the given files" in result.stdout


def test_templates_resolve_across_files(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    write(tmp_path / "rollout.yaml", rollout)
    write(tmp_path / "templates" / "checkout.yml", template)
    result = lint(tmp_path)
    assert result.exit_code == 0, result.output


def test_a_missing_template_is_reported_even_when_the_rollout_has_other_problems(
    tmp_path: Path,
) -> None:
    rollout, _ = canary_docs()
    result = lint(write(tmp_path / "r.yaml", mutate(rollout, {"spec.stratgey": {}})))
    assert result.exit_code == 1
    assert f"{REF}.name: AnalysisTemplate shop/checkout-errors" in result.stdout
    assert "spec.stratgey: unknown field" in result.stdout


def test_a_required_template_arg_must_be_passed(tmp_path: Path) -> None:
    result = lint_rollout(tmp_path, {f"{REF}.args": {}})
    assert result.exit_code == 1
    assert result.stdout.endswith(
        f"Rollout/reviews: {REF}.args: missing arg 'service': "
        "AnalysisTemplate shop/checkout-errors gives it no default value\n"
    )


def test_an_arg_with_a_default_may_be_omitted(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    rollout = mutate(rollout, {f"{REF}.args": {}})
    template = mutate(template, {"spec.args[0].value": "reviews"})
    result = lint(write(tmp_path / "r.yaml", rollout, template))
    assert result.exit_code == 0, result.output


def test_an_undeclared_template_arg_is_a_problem(tmp_path: Path) -> None:
    result = lint_rollout(tmp_path, {f"{REF}.args.nope": "x"})
    assert result.exit_code == 1
    assert result.stdout.endswith(
        f"Rollout/reviews: {REF}.args.nope: unknown arg: "
        "AnalysisTemplate shop/checkout-errors declares no arg 'nope'\n"
    )


@pytest.mark.parametrize("variable", ["args.nope", "unknown"])
def test_a_template_may_use_only_known_variables(tmp_path: Path, variable: str) -> None:
    rollout, template = canary_docs()
    query = template["spec"]["query"] + "  * {{" + variable + "}}"
    template = mutate(template, {"spec.query": query})
    path = write(tmp_path / "t.yaml", rollout, template)
    result = lint(path)
    assert result.exit_code == 1
    assert result.stdout == (
        f"{path}: AnalysisTemplate/checkout-errors: spec.query: unknown template variables "
        f"{{{{{variable}}}}}: use declared args or built-ins\n"
    )


def test_duplicate_manifests_across_files(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    write(tmp_path / "a.yaml", rollout, template)
    second = write(tmp_path / "b.yaml", rollout)
    result = lint(tmp_path)
    assert result.exit_code == 1
    assert result.stdout == (
        f"{second}: Rollout/reviews: metadata.name: duplicate: Rollout shop/reviews "
        f"is also in {tmp_path / 'a.yaml'} (document 1)\n"
    )


def test_same_name_in_another_namespace_or_kind_is_no_duplicate(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    other = mutate(rollout, {"metadata.namespace": "staging", f"{REF}.name": "reviews"})
    named_alike = mutate(template, {"metadata.name": "reviews", "metadata.namespace": "staging"})
    result = lint(write(tmp_path / "r.yaml", rollout, template, other, named_alike))
    assert result.exit_code == 0, result.output


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", *canary_docs())
    result = lint(path, tmp_path, path)
    assert result.exit_code == 0, result.output
    assert result.stderr == "2 manifests, no problems\n"


def test_stdin(tmp_path: Path) -> None:
    assert lint("-", stdin=CANARY.read_text()).exit_code == 0
    rollout, template = canary_docs()
    broken = yaml.safe_dump_all([mutate(rollout, {"spec.stratgey": {}}), template])
    result = lint("-", stdin=broken)
    assert result.exit_code == 1
    assert result.stdout == "<stdin>: Rollout/reviews: spec.stratgey: unknown field\n"


def test_directories_are_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    write(tmp_path / "z.yaml", template)
    deep = write(tmp_path / "a" / "b" / "deep.yml", mutate(rollout, {"spec.stratgey": {}}))
    other = mutate(rollout, {"metadata.name": "ratings", "spec.replicas": -1})
    shallow = write(tmp_path / "a" / "shallow.yaml", other)
    (tmp_path / "a" / "notes.txt").write_text("not: [yaml")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "broken.yaml").write_text("not: [yaml")
    result = lint(tmp_path)
    assert result.exit_code == 1, result.output
    assert result.stdout == (
        f"{deep}: Rollout/reviews: spec.stratgey: unknown field\n"
        f"{shallow}: Rollout/ratings: spec.replicas: must be >= 0, not -1\n"
    )
    assert result.stderr == "2 problems in 2 of 3 manifests\n"


def test_output_is_sorted_by_file_then_document(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    bad = mutate(rollout, {"spec.stratgey": {}})
    first = write(tmp_path / "a.yaml", mutate(bad, {"metadata.name": "one"}))
    second = write(
        tmp_path / "b.yaml",
        mutate(bad, {"metadata.name": "three"}),
        mutate(bad, {"metadata.name": "two"}),
        template,
    )
    result = lint(second, first)
    assert result.exit_code == 1
    names = [line.split(": ")[1] for line in result.stdout.splitlines()]
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [
        str(first),
        str(second),
        str(second),
    ]
    assert names == ["Rollout/one", "Rollout/three", "Rollout/two"]
    assert result.stderr == "3 problems in 3 of 4 manifests\n"


def test_other_api_groups_and_empty_documents_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "---\n---\n"
        + CANARY.read_text()
        + "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: Reviews_1}\nspec: {hosts: [reviews], bogus: 1}\n"
        "---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\n"
        "spec: {stratgey: {}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: reviews}\n"
        "---\n"
    )
    result = lint(path)
    assert result.exit_code == 0, result.output
    assert result.stderr == "2 manifests, no problems\n"


FOREIGN_HEADERS = [
    ("apiVersion: rollout.dev/v1alpha1\nkind: Canary\n", "Canary/x: kind: must be Rollout"),
    ("apiVersion: rollout.dev/v1\nkind: Rollout\n", "Rollout/x: apiVersion: must be"),
    ("kind: Rollout\n", "Rollout/x: apiVersion: must be rollout.dev/v1alpha1, not None"),
]


@pytest.mark.parametrize(("header", "expected"), FOREIGN_HEADERS)
def test_an_unknown_kind_or_version_of_rollout_dev_is_a_problem(
    tmp_path: Path, header: str, expected: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(header + "metadata: {name: x}\nspec: {}\n")
    result = lint(path)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{path}: {expected}")


def test_list_items_are_checked(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    items = [mutate(rollout, {"spec.stratgey": {}}), template, {"apiVersion": "v1", "kind": "x"}]
    path = write(tmp_path / "list.yaml", {"apiVersion": "v1", "kind": "List", "items": items})
    result = lint(path)
    assert result.exit_code == 1
    assert result.stdout == f"{path}: Rollout/reviews: items[0].spec.stratgey: unknown field\n"


def test_a_document_that_is_not_a_mapping_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- apiVersion: rollout.dev/v1alpha1\n")
    result = lint(path)
    assert result.exit_code == 1
    assert result.stdout == f"{path}: ?/?: a manifest must be a mapping\n"


def test_invalid_yaml_is_exit_2_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: rollout.dev/v1alpha1\nkind: Rollout\nspec: {a: [1, 2}\n")
    result = lint(path)
    assert result.exit_code == 2
    assert re.fullmatch(rf"{re.escape(str(path))}:3:16: invalid YAML: .+\n", result.stdout)
    assert result.stderr == "0 manifests, no problems; 1 input was unreadable\n"


def test_a_duplicate_key_is_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("apiVersion: rollout.dev/v1alpha1\nkind: Rollout\nkind: Rollout\n")
    result = lint(path)
    assert result.exit_code == 2
    assert result.stdout == f"{path}:3:1: invalid YAML: duplicate key 'kind'\n"


def test_a_control_character_is_invalid_yaml_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bell.yaml"
    path.write_text('kind: Rollout\nmetadata: {name: "\u00e9\a"}\n')
    result = lint(path)
    assert result.exit_code == 2
    # libyaml says "control characters", PyYAML "special characters": the position is the same.
    prefix = f"{path}:2:20: invalid YAML: unacceptable character #x0007: "
    assert result.stdout.startswith(prefix)
    assert result.stdout.endswith(" characters are not allowed\n")


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + CANARY.read_bytes())
    result = lint(path)
    assert result.exit_code == 0, result.output


def test_unreadable_input_wins_over_problems(tmp_path: Path) -> None:
    rollout, template = canary_docs()
    broken = write(tmp_path / "a.yaml", mutate(rollout, {"spec.stratgey": {}}), template)
    missing = tmp_path / "nope.yaml"
    result = lint(broken, missing)
    assert result.exit_code == 2
    assert result.stdout == (
        f"{broken}: Rollout/reviews: spec.stratgey: unknown field\n"
        f"{missing}: no such file or directory\n"
    )
    assert result.stderr == "1 problem in 1 of 2 manifests; 1 input was unreadable\n"


def test_a_missing_path_is_exit_2(tmp_path: Path) -> None:
    result = lint(tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stdout == f"{tmp_path / 'nope.yaml'}: no such file or directory\n"


def test_non_utf8_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("kind: Rollout\nmetadata: {name: caf\u00e9}\n".encode("latin-1"))
    result = lint(path)
    assert result.exit_code == 2
    assert result.stdout == f"{path}:2:21: not UTF-8: byte 0xe9\n"
    assert lint("-", stdin=b"\xff\xfe").exit_code == 2


def test_an_unexpected_error_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(doc: Any, **options: Any) -> Any:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(rollout.lint, "parse_manifest", explode)
    result = lint(CANARY)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "rollout lint: error: RuntimeError: boom\\nsecond line\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _rollout_command() -> list[str]:
    """The installed ``rollout`` script; without one, the same entry point run by this Python."""
    script = Path(sys.executable).with_name("rollout")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rollout.cli import main; main()"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [*_rollout_command(), "lint", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)


def test_end_to_end_examples_are_clean() -> None:
    result = _run("crds/examples/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.endswith("manifests, no problems\n")


def test_end_to_end_broken_example() -> None:
    result = _run(str(BROKEN.relative_to(ROOT)))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    name = "docs/examples/broken-rollout.yaml"
    for expected in [
        "Rollout/reviews: spec.stratgey: unknown field",
        "Rollout/reviews: spec.strategy.canary.steps[1].pause.duration: invalid duration '2x'",
        "Rollout/ratings: spec.strategy.canary.steps[0].setWeight: ",
        "Rollout/ratings: spec.strategy.canary.steps[1].setHeaderRoute.match: ",
        "Rollout/ratings: spec.analysis.checks[1].templateRef.name: AnalysisTemplate shop-staging/",
        "Rollout/details: spec.selector: ",
        "Rollout/details: spec.strategy.canary.steps[1].analysis: needs spec.analysis",
    ]:
        assert f"{name}: {expected}" in result.stdout
    assert all(line.startswith(f"{name}: ") for line in result.stdout.splitlines())
    assert result.stderr == "7 problems in 3 of 3 manifests\n"


UNUSABLE_NAMES = ["r" * 64, "reviews-" * 8 + "v2", "a." * 40 + "b"]


@pytest.mark.parametrize("name", UNUSABLE_NAMES)
def test_a_rollout_name_the_controller_cannot_use_is_a_problem(tmp_path: Path, name: str) -> None:
    # Longer than a label value: the pods' service.istio.io/canonical-name would be invalid.
    result = lint_rollout(tmp_path, {"metadata.name": name})
    assert result.exit_code == 1, result.output
    [line] = result.stdout.splitlines()
    assert line == (
        f"{tmp_path / 'rollout.yaml'}: Rollout/{name}: metadata.name: a Rollout name has at "
        "most 63 characters: it is the value of its pods' service.istio.io/canonical-name "
        f"label, and a Kubernetes label value has at most 63 characters, not {len(name)}"
    )
    assert result.stderr == "1 problem in 1 of 2 manifests\n"


def test_a_rollout_name_of_63_characters_is_clean(tmp_path: Path) -> None:
    result = lint_rollout(tmp_path, {"metadata.name": "r" * 63})
    assert result.exit_code == 0, result.output


def test_an_alias_bomb_is_unreadable_not_a_hang() -> None:
    """Ten aliases of ten aliases ... nine deep: a 2 kB document that stands for 10^9 strings.
    Lint walked them all (hours of CPU in a CI job); it is now input that cannot be read."""
    lines = ["apiVersion: rollout.dev/v1alpha1", "kind: Rollout", "metadata: {name: x}"]
    lines.append("a0: &a0 [" + ", ".join(["x"] * 10) + "]")
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("spec: {template: {spec: {containers: [{name: a, image: b, args: *a8}]}}}")
    rollout_cli = str(Path(sys.executable).parent / "rollout")
    done = subprocess.run(
        [rollout_cli, "lint", "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "<stdin>:1:1: invalid YAML: its aliases expand to more than 1000000 nodes" in (
        done.stdout + done.stderr
    )
