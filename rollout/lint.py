"""``rollout lint PATH...``: check Rollout and AnalysisTemplate manifests before a cluster does.

Input. Each PATH is a file, a directory (searched recursively for ``*.yaml`` and ``*.yml`` in
sorted order, hidden files and directories skipped) or ``-`` for standard input, reported as
``<stdin>``. A file given twice, or also found through a directory, is read once. A file may hold
several YAML documents. Empty documents are skipped, and so are documents of other API groups (a
VirtualService kept next to its Rollout); the items of a ``v1`` ``List`` are checked one by one.
A document of group ``rollout.dev`` is always checked, so an unknown kind or version there is a
problem, as is a document that is not a mapping.

Checks. Everything the models and the CRD reject (``parse_manifest(strict=True)``: JSON types
without coercion, ranges, unknown fields, cross-field rules) and what the API server refuses in
any object's ``metadata`` (``meta.metadata_problems``), so that lint refuses every manifest
``kubectl apply --dry-run=server`` refuses (``tests/integration/test_kube_lint.py``), plus what
only a view of all the given files shows:

- each ``spec.analysis.checks[i].templateRef`` names an AnalysisTemplate among the given files in
  the Rollout's namespace (``--allow-missing-templates`` waives this one rule);
- its ``args`` supply every arg of that template without a default ``value``, and no other;
- no two manifests share (kind, namespace, name); the namespace defaults to ``default``;
- a Rollout's pod template spec conforms to the Kubernetes PodSpec schema (``rollout.podspec``:
  the official schema of ``--kubernetes-version``, default the newest shipped; a field it does
  not declare, such as ``imagee``, is ``unknown field``), as the API server checks the
  ReplicaSets the controller makes from it.

Output. One line per problem on stdout, by file and then document order:
``FILE: Kind/name: field.path: message`` (``?`` for an unknown kind or name). Input that cannot
be read is also one line on stdout: ``FILE: message``, or ``FILE:LINE:COL: invalid YAML: problem``
(1-based; a duplicate mapping key is invalid YAML, as for kubectl). Last, a summary on stderr:
``3 problems in 2 of 5 manifests`` or ``5 manifests, no problems``.

Exit status. 0 when clean, 1 when problems were found, 2 when some input could not be read
(missing path, unreadable file, invalid YAML, not UTF-8) even if problems were found too. Anything
unexpected is one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rollout.api.gate import TemplateRef
from rollout.api.manifest import KINDS, InvalidManifest, Problem, parse_manifest
from rollout.api.rollout import GROUP, Rollout
from rollout.api.template import AnalysisTemplate

STDIN = "<stdin>"
EXTENSIONS = (".yaml", ".yml")
DEFAULT_NAMESPACE = "default"
UNKNOWN = "?"

EXIT_CLEAN = 0
EXIT_PROBLEMS = 1
EXIT_UNREADABLE = 2

_BaseLoader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


# Nodes a document may expand to through its aliases; a manifest has thousands. More is an
# alias bomb ("billion laughs": ten aliases of ten aliases of ...), which would otherwise keep
# lint busy for hours walking the same lists; kubectl's YAML decoder refuses those too.
MAX_EXPANDED_NODES = 1_000_000


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` stands for once every alias is expanded, counted up to just over
    ``limit`` (each shared node once per reference; a node that contains itself: over)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            return limit + 1
        open_.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        open_.discard(key)
        sizes[key] = min(total, limit + 1)
        return sizes[key]

    return size(root)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml when available) that also rejects duplicate mapping keys and
    documents whose aliases expand to more than ``MAX_EXPANDED_NODES`` nodes."""

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node, MAX_EXPANDED_NODES) > MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"its aliases expand to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?)",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key_node.value!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep)
        return mapping


@dataclass(frozen=True)
class Input:
    """A file to read: ``path`` None is standard input; ``error`` is set when it cannot be."""

    name: str
    path: Path | None
    error: str | None = None


@dataclass
class Manifest:
    """One rollout.dev document (or ``List`` item) and the problems found in it."""

    source: str
    document: int
    body: Any
    prefix: str = ""
    problems: list[Problem] = field(default_factory=list)
    parsed: Rollout | AnalysisTemplate | None = None

    @property
    def kind(self) -> str:
        kind = self.body.get("kind") if isinstance(self.body, Mapping) else None
        return kind if isinstance(kind, str) and kind else UNKNOWN

    @property
    def name(self) -> str:
        name = _metadata(self.body).get("name")
        return name if isinstance(name, str) and name else UNKNOWN

    @property
    def namespace(self) -> str:
        namespace = _metadata(self.body).get("namespace")
        return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(_join(self.prefix, path), message))

    def lines(self) -> Iterator[str]:
        for problem in self.problems:
            yield _one_line(f"{self.source}: {self.kind}/{self.name}: {problem}")


@dataclass
class Source:
    """What one input held: an error line if it could not be read, else its manifests."""

    name: str
    error: str | None = None
    manifests: list[Manifest] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        if self.error is not None:
            yield _one_line(self.error)
        for manifest in self.manifests:
            yield from manifest.lines()


@dataclass
class Report:
    sources: list[Source]

    @property
    def manifests(self) -> list[Manifest]:
        return [m for s in self.sources for m in s.manifests]

    @property
    def unreadable(self) -> int:
        return sum(s.error is not None for s in self.sources)

    def lines(self) -> Iterator[str]:
        for source in self.sources:
            yield from source.lines()

    def exit_code(self) -> int:
        if self.unreadable:
            return EXIT_UNREADABLE
        return EXIT_PROBLEMS if any(m.problems for m in self.manifests) else EXIT_CLEAN

    def summary(self) -> str:
        manifests = self.manifests
        problems = sum(len(m.problems) for m in manifests)
        total = _plural(len(manifests), "manifest")
        if problems:
            bad = sum(bool(m.problems) for m in manifests)
            text = f"{_plural(problems, 'problem')} in {bad} of {total}"
        else:
            text = f"{total}, no problems"
        if self.unreadable:
            verb = "was" if self.unreadable == 1 else "were"
            text += f"; {_plural(self.unreadable, 'input')} {verb} unreadable"
        return text


def run_lint(
    paths: Sequence[Path | str],
    *,
    allow_missing_templates: bool = False,
    kubernetes_version: str | None = None,
) -> int:
    """Lint ``paths``, print problems on stdout and a summary on stderr; return the exit code.
    ``kubernetes_version`` (``X.Y``) picks the PodSpec schema; an unknown one is exit 2."""
    try:
        if kubernetes_version is not None:
            from rollout.podspec import UnknownVersion, check_version

            try:
                kubernetes_version = check_version(kubernetes_version)
            except UnknownVersion as error:
                print(f"rollout lint: error: --kubernetes-version: {error}", file=sys.stderr)
                return EXIT_UNREADABLE
        report = lint_paths(
            paths,
            allow_missing_templates=allow_missing_templates,
            kubernetes_version=kubernetes_version,
        )
        for line in report.lines():
            print(line, file=sys.stdout)
        print(report.summary(), file=sys.stderr)
        return report.exit_code()
    except Exception as error:  # the contract: one line, never a traceback
        print(_one_line(f"rollout lint: error: {type(error).__name__}: {error}"), file=sys.stderr)
        return EXIT_UNREADABLE


def lint_paths(
    paths: Iterable[Path | str],
    *,
    allow_missing_templates: bool = False,
    kubernetes_version: str | None = None,
) -> Report:
    """Read and check every manifest under ``paths``, including the cross-document checks."""
    sources = [read_source(i) for i in expand_paths(paths)]
    report = Report(sources)
    check_all(
        report.manifests,
        allow_missing_templates=allow_missing_templates,
        kubernetes_version=kubernetes_version,
    )
    return report


def check_all(
    manifests: list[Manifest],
    *,
    allow_missing_templates: bool = False,
    kubernetes_version: str | None = None,
) -> None:
    """Add every problem to ``manifests``: each one alone, then across all of them."""
    for manifest in manifests:
        check_manifest(manifest)
        check_pod_spec(manifest, kubernetes_version)
    check_duplicates(manifests)
    check_template_refs(manifests, allow_missing=allow_missing_templates)


# --- finding and reading the input ------------------------------------------------------------


def expand_paths(paths: Iterable[Path | str]) -> list[Input]:
    """The inputs named by ``paths``, directories expanded, each file once, sorted by name."""
    found: dict[str, Input] = {}
    for raw in paths:
        for item in _expand(Path(raw)):
            key = "-" if item.path is None else os.path.realpath(item.path)
            found.setdefault(key, item)
    return sorted(found.values(), key=lambda i: i.name)


def _expand(path: Path) -> list[Input]:
    if str(path) == "-":
        return [Input(STDIN, None)]
    if path.is_dir():
        return _walk(path)
    if not path.exists():
        return [Input(str(path), path, f"{path}: no such file or directory")]
    return [Input(str(path), path)]


def _walk(root: Path) -> list[Input]:
    found: list[Input] = []

    def unreadable(error: OSError) -> None:
        name = str(error.filename or root)
        found.append(Input(name, Path(name), f"{name}: cannot read: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.endswith(EXTENSIONS) and not filename.startswith("."):
                found.append(Input(os.path.join(dirpath, filename), Path(dirpath, filename)))
    return found


class Unreadable(Exception):
    """An input that cannot be read; the message is its output line."""


def read_source(item: Input) -> Source:
    """The manifests in ``item``, or the reason it cannot be read."""
    try:
        documents = load_documents(item)
    except Unreadable as error:
        return Source(item.name, str(error))
    manifests = [m for n, doc in enumerate(documents, 1) for m in manifests_in(item.name, n, doc)]
    return Source(item.name, manifests=manifests)


def load_documents(item: Input) -> list[Any]:
    """Every YAML document in ``item``; raise Unreadable."""
    if item.error is not None:
        raise Unreadable(item.error)
    try:
        text = _decode(item.name, _read_bytes(item))
    except OSError as error:
        raise Unreadable(f"{item.name}: cannot read: {error.strerror or error}") from None
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        raise Unreadable(_yaml_error(item.name, text, error)) from None


def _read_bytes(item: Input) -> bytes:
    if item.path is not None:
        return item.path.read_bytes()
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read().encode()


def _decode(name: str, data: bytes) -> str:
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        valid = data[: error.start].decode("utf-8")
        line, column = _position(valid, len(valid))
        byte = data[error.start]
        raise Unreadable(f"{name}:{line}:{column}: not UTF-8: byte 0x{byte:02x}") from None


def _yaml_error(name: str, text: str, error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {error.problem}"
    if isinstance(error, yaml.reader.ReaderError) and isinstance(error.character, int):
        index = error.position
        if _BaseLoader is not yaml.SafeLoader:  # libyaml counts bytes of UTF-8
            index = len(text.encode()[:index].decode("utf-8", "ignore"))
        line, column = _position(text, index)
        problem = f"unacceptable character #x{error.character:04x}: {error.reason}"
        return f"{name}:{line}:{column}: invalid YAML: {problem}"
    return f"{name}: invalid YAML: {error}"


def _position(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of ``text[index]``, as YAML's marks count them."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def manifests_in(source: str, document: int, body: Any, prefix: str = "") -> list[Manifest]:
    """The rollout.dev manifests in one YAML document: none, one, or a ``List``'s items."""
    if body is None:
        return []
    if not isinstance(body, Mapping):
        return [Manifest(source, document, body, prefix)]
    items = body.get("items")
    if body.get("apiVersion") == "v1" and body.get("kind") == "List" and isinstance(items, list):
        nested = (
            manifests_in(source, document, b, _join(prefix, f"items[{i}]"))
            for i, b in enumerate(items)
        )
        return [m for ms in nested for m in ms]
    return [Manifest(source, document, body, prefix)] if _is_ours(body) else []


def _is_ours(body: Mapping[str, Any]) -> bool:
    """Whether ``body`` claims group rollout.dev, or is our kind with no apiVersion at all."""
    api_version = body.get("apiVersion")
    if isinstance(api_version, str):
        return api_version.split("/", 1)[0] == GROUP
    return api_version is None and body.get("kind") in KINDS


# --- checks ------------------------------------------------------------------------------------


def check_manifest(manifest: Manifest) -> None:
    """What the models reject in ``manifest`` alone."""
    try:
        manifest.parsed = parse_manifest(manifest.body, strict=True)
    except InvalidManifest as invalid:
        for problem in invalid.problems:
            manifest.add(problem.path, problem.message)


POD_SPEC_PATH = "spec.template.spec"


def check_pod_spec(manifest: Manifest, kubernetes_version: str | None = None) -> None:
    """A Rollout's ``spec.template.spec`` against the Kubernetes PodSpec schema of
    ``kubernetes_version`` (default: the newest shipped; ``rollout.podspec``), unknown fields
    included. Skipped when the models already found the pod spec itself unusable (no
    containers), so that one mistake is one line."""
    if manifest.kind != "Rollout" or not isinstance(manifest.body, Mapping):
        return
    spec = manifest.body.get("spec")
    template = spec.get("template") if isinstance(spec, Mapping) else None
    pod = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(pod, Mapping):
        return
    reported = _join(manifest.prefix, POD_SPEC_PATH)
    if any(p.path == reported for p in manifest.problems):
        return
    from rollout.podspec import problems

    for path, message in problems(pod, POD_SPEC_PATH, kubernetes_version):
        manifest.add(path, message)


def check_duplicates(manifests: Iterable[Manifest]) -> None:
    """Report each manifest whose (kind, namespace, name) an earlier one already has."""
    first: dict[tuple[str, str, str], Manifest] = {}
    for manifest in manifests:
        if UNKNOWN in (manifest.kind, manifest.name):
            continue
        key = (manifest.kind, manifest.namespace, manifest.name)
        original = first.setdefault(key, manifest)
        if original is not manifest:
            what = f"{manifest.kind} {manifest.namespace}/{manifest.name}"
            where = f"{original.source} (document {original.document})"
            manifest.add("metadata.name", f"duplicate: {what} is also in {where}")


def check_template_refs(manifests: Sequence[Manifest], *, allow_missing: bool) -> None:
    """Resolve every Rollout's templateRefs among ``manifests`` and check the args they pass."""
    templates: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        if manifest.kind == "AnalysisTemplate":
            templates.setdefault((manifest.namespace, manifest.name), manifest)
    for manifest in manifests:
        if manifest.kind == "Rollout":
            for path, ref in template_refs(manifest.body):
                _check_ref(manifest, path, ref, templates, allow_missing)


def template_refs(body: Any) -> Iterator[tuple[str, TemplateRef]]:
    """``(path, ref)`` for each well-formed templateRef in a Rollout, even an invalid Rollout.

    Read from the document rather than the model, so that a missing template is reported along
    with the Rollout's other problems; a malformed templateRef is already one of those.
    """
    spec = body.get("spec") if isinstance(body, Mapping) else None
    analysis = spec.get("analysis") if isinstance(spec, Mapping) else None
    checks = analysis.get("checks") if isinstance(analysis, Mapping) else None
    for i, check in enumerate(checks if isinstance(checks, list) else []):
        raw = check.get("templateRef") if isinstance(check, Mapping) else None
        if raw is None:
            continue
        try:
            ref = TemplateRef.model_validate(raw)
        except ValidationError:
            continue
        yield f"spec.analysis.checks[{i}].templateRef", ref


def _check_ref(
    manifest: Manifest,
    path: str,
    ref: TemplateRef,
    templates: Mapping[tuple[str, str], Manifest],
    allow_missing: bool,
) -> None:
    target = templates.get((manifest.namespace, ref.name))
    if target is None:
        if not allow_missing:
            where = f"{manifest.namespace}/{ref.name}"
            manifest.add(f"{path}.name", f"AnalysisTemplate {where} is not among the given files")
        return
    if isinstance(target.parsed, AnalysisTemplate):  # else its own problems are reported
        for arg_path, message in arg_problems(ref, target.parsed):
            manifest.add(_join(path, arg_path), message)


def arg_problems(ref: TemplateRef, template: AnalysisTemplate) -> list[tuple[str, str]]:
    """``(path under templateRef, message)`` for args missing from ``ref`` or unknown to it."""
    declared = {a.name: a for a in template.spec.args}
    where = f"AnalysisTemplate {template.metadata.namespace or DEFAULT_NAMESPACE}/{ref.name}"
    problems = [
        ("args", f"missing arg {name!r}: {where} gives it no default value")
        for name, arg in declared.items()
        if arg.value is None and name not in ref.args
    ]
    problems += [
        (f"args.{name}", f"unknown arg: {where} declares no arg {name!r}")
        for name in ref.args
        if name not in declared
    ]
    return problems


# --- helpers -----------------------------------------------------------------------------------


def _metadata(body: Any) -> Mapping[str, Any]:
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    return metadata if isinstance(metadata, Mapping) else {}


def _join(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
