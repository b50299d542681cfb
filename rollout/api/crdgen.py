"""Generate the CRDs in ``crds/`` from the pydantic models, so that the two cannot drift.

Contract:

* ``python -m rollout.api.crdgen`` writes ``crds/rollout.dev_rollouts.yaml`` and
  ``crds/rollout.dev_analysistemplates.yaml`` (apiextensions.k8s.io/v1); ``--check`` writes
  nothing and exits 1, with one line per stale file, when a file differs from what the models
  produce now. Output is deterministic: same models, same bytes.
* Each ``openAPIV3Schema`` is the models' ``model_json_schema(by_alias=True, mode="validation")``
  turned into a *structural* schema, as the API server requires: every ``$ref`` inlined, every node
  typed (except int-or-string nodes, which keep exactly ``anyOf: [{type: integer}, {type:
  string}]``, and ``x-kubernetes-preserve-unknown-fields`` nodes, which are ``type: object``),
  ``Optional[X]`` written as plain ``X`` (omitted means unset; nothing is ``nullable``), no
  ``title``, and ``additionalProperties`` only for maps (``dict[str, X]``). Unknown fields are
  pruned by the API server rather than rejected (``additionalProperties: false`` is not allowed
  next to ``properties``); the models and ``rollout lint`` reject them.
* Defaults are left out of the CRDs on purpose: the models apply them when they parse a manifest.
  API-server defaulting would write them into the stored object (and into every GitOps diff), and
  the controller must not depend on it.
* ``description`` is the field's docstring (the string literal under the field, pydantic's
  ``use_attribute_docstrings``), with its line breaks joined: what ``kubectl explain``, Lens and
  Argo CD show, so plain sentences with units and defaults (``tests/unit/test_crd_text.py``
  holds them to that). A model's class docstring is for developers and never reaches the CRD.
  Field constraints (minimum, maximum, lengths,
  pattern, item and property counts), enums, ``format: date-time`` and the models' CEL rules
  (``x-kubernetes-validations``) are carried onto the node they belong to; a top-level model's
  rules go to the schema's root, where Kubernetes lets them read ``self.metadata.name``. A
  JSON-schema keyword this module does not know is an error, never silently dropped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from rollout.api.rollout import GROUP, VERSION, Rollout
from rollout.api.template import AnalysisTemplate

HEADER = (
    "# Generated from the models in rollout/api by `python -m rollout.api.crdgen`: do not edit.\n"
    "# Change the models and run it again: tests/unit/test_crds.py fails while this is stale.\n"
)
REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"

# The order of the keys of a schema node in the output; also the keywords we know how to convert.
_NODE_KEYS = (
    "description",
    "type",
    "format",
    "enum",
    "x-kubernetes-int-or-string",
    "anyOf",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
)
_DROPPED_KEYS = ("title", "default")
_NULL = {"type": "null"}
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]

_API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values."
)
_KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. In CamelCase."
)


class CrdGenError(ValueError):
    """A model's JSON schema has something a structural CRD schema cannot express."""


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str

    def wire(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "jsonPath": self.json_path}


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class CrdSpec:
    """What a CRD says besides its schema."""

    model: type[BaseModel]
    kind: str
    plural: str
    singular: str
    description: str
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: Mapping[str, Any] = field(default_factory=dict)
    printer_columns: tuple[PrinterColumn, ...] = (AGE,)

    @property
    def filename(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


# Names that do not clash with Argo Rollouts (rollouts.argoproj.io: kind Rollout, plural rollouts,
# short name ro; analysistemplates.argoproj.io: kind AnalysisTemplate) nor Flagger (canaries,
# canary): during a migration both CRDs are installed, and kubectl resolves a short name to one
# group only. "rdro" and "rdat" read as "rollout.dev Rollout / AnalysisTemplate". Not "ro", and
# no "all" category: `kubectl get all` lists built-in workloads only, as with Argo's CRDs.
# docs/argo-coexistence.md says how to address each side.
SHORT_NAMES: Mapping[str, tuple[str, ...]] = {
    "Rollout": ("rdro",),
    "AnalysisTemplate": ("rdat",),
}
# `kubectl get rollout-dev` lists every resource of ours at once.
CATEGORIES: tuple[str, ...] = ("rollout-dev",)

CRDS: tuple[CrdSpec, ...] = (
    CrdSpec(
        model=Rollout,
        kind="Rollout",
        plural="rollouts",
        singular="rollout",
        short_names=SHORT_NAMES["Rollout"],
        categories=CATEGORIES,
        description=(
            "A Rollout runs a workload and moves its new versions to users step by step, "
            "shifting Istio traffic and gating each step on Prometheus checks."
        ),
        subresources={
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            },
        },
        printer_columns=(
            PrinterColumn("Phase", "string", ".status.phase"),
            PrinterColumn("Strategy", "string", ".status.strategy"),
            PrinterColumn("Step", "string", ".status.step"),
            PrinterColumn("Canary Weight", "integer", ".status.weights.canary"),
            AGE,
        ),
    ),
    CrdSpec(
        model=AnalysisTemplate,
        kind="AnalysisTemplate",
        plural="analysistemplates",
        singular="analysistemplate",
        short_names=SHORT_NAMES["AnalysisTemplate"],
        categories=CATEGORIES,
        description=(
            "An AnalysisTemplate is a named PromQL check with bounds and arguments that a "
            "Rollout's analysis gate refers to with templateRef."
        ),
    ),
)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` replaced by the definition, the node's own keys on top."""
    ref = node["$ref"]
    prefix = "#/$defs/"
    if not isinstance(ref, str) or not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise CrdGenError(f"cannot resolve $ref {ref!r}")
    definition = {k: v for k, v in defs[ref[len(prefix) :]].items() if k != "description"}
    return _overlay(definition, node, "$ref")


def _unwrap_optional(node: Mapping[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` (an Optional field) -> X with the node's own keys on top."""
    branches = [b for b in node["anyOf"] if b != _NULL]
    if len(branches) != 1 or len(node["anyOf"]) != 2:
        raise CrdGenError(f"a union other than Optional[X] has no structural schema: {node!r}")
    return _overlay(branches[0], node, "anyOf")


def _overlay(base: Mapping[str, Any], node: Mapping[str, Any], drop: str) -> dict[str, Any]:
    """``base`` with ``node``'s keys (but ``drop``) on top; CEL rules of both are kept."""
    merged = dict(base)
    for key, value in node.items():
        if key == drop:
            continue
        if key == "x-kubernetes-validations":
            merged[key] = [*merged.get(key, []), *value]
        else:
            merged[key] = value
    return merged


def structural(node: Mapping[str, Any], defs: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """The structural-schema form of one JSON-schema node (see the module docstring)."""
    where = path or "<root>"
    if "$ref" in node:
        return structural(_resolve(node, defs), defs, path)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        return structural(_unwrap_optional(node), defs, path)

    unknown = set(node) - set(_NODE_KEYS) - set(_DROPPED_KEYS) - {"const", "$defs"}
    if unknown:
        raise CrdGenError(f"{where}: unsupported JSON-schema keywords {sorted(unknown)}")

    out: dict[str, Any] = {}
    for key in _NODE_KEYS:
        if key in node:
            out[key] = node[key]
    if "description" in out:
        out["description"] = " ".join(str(out["description"]).split())
    if "const" in node:
        out["enum"] = [node["const"]]
    # JSON Schema 2020-12 spells an exclusive bound as a number; OpenAPI v3 (and Kubernetes)
    # as a boolean next to minimum / maximum.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if exclusive in node and not isinstance(node[exclusive], bool):
            if bound in node:
                raise CrdGenError(f"{where}: both {bound} and {exclusive}")
            out[bound] = node[exclusive]
            out[exclusive] = True

    if out.get("x-kubernetes-int-or-string"):
        if out.get("anyOf") != _INT_OR_STRING_ANY_OF or "type" in out:
            raise CrdGenError(
                f"{where}: an int-or-string node needs exactly anyOf: [{{type: integer}}, "
                "{type: string}] and its bounds on the node itself"
            )
    elif "anyOf" in out:
        raise CrdGenError(f"{where}: anyOf is only allowed on int-or-string nodes")

    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        if out.get("additionalProperties") is True:
            del out["additionalProperties"]

    if "properties" in node:
        out["properties"] = {
            name: structural(prop, defs, f"{path}.{name}")
            for name, prop in node["properties"].items()
        }
    if "additionalProperties" in out:
        extra = out["additionalProperties"]
        if extra is False and "properties" in out:
            del out["additionalProperties"]  # pruning, not rejection (see the module docstring)
        elif isinstance(extra, Mapping) and "properties" not in out:
            out["additionalProperties"] = structural(extra, defs, f"{path}.*")
        else:
            raise CrdGenError(f"{where}: additionalProperties {extra!r} is not structural")
    if "items" in out:
        out["items"] = structural(out["items"], defs, f"{path}[]")

    if "type" not in out and not out.get("x-kubernetes-int-or-string"):
        raise CrdGenError(f"{where}: no type")
    if out.get("type") == "array" and "items" not in out:
        raise CrdGenError(f"{where}: an array needs items")
    if out.get("type") == "object" and not (
        "properties" in out
        or "additionalProperties" in out
        or out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise CrdGenError(f"{where}: an object needs properties or additionalProperties")
    return {key: out[key] for key in _NODE_KEYS if key in out}


def openapi_schema(crd: CrdSpec) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of ``crd``: apiVersion, kind, metadata, spec and maybe status."""
    raw = crd.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    props = raw["properties"]
    properties: dict[str, Any] = {
        "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
        "kind": {"description": _KIND_DOC, "type": "string"},
        # At the root, Kubernetes validates metadata itself and lets a CRD say nothing more.
        "metadata": {"type": "object"},
        "spec": structural(props["spec"], defs, ".spec"),
    }
    if "status" in props:
        properties["status"] = structural(props["status"], defs, ".status")
    unexpected = set(props) - set(properties)
    if unexpected:
        raise CrdGenError(f"{crd.kind}: unexpected top-level fields {sorted(unexpected)}")
    schema: dict[str, Any] = {
        "description": crd.description,
        "type": "object",
        "properties": properties,
        "required": ["spec"],
    }
    # Rules on the model itself sit at the root, where Kubernetes gives them self.metadata with
    # name and generateName (e.g. a bound on the Rollout's name).
    if raw.get("x-kubernetes-validations"):
        schema["x-kubernetes-validations"] = raw["x-kubernetes-validations"]
    return schema


def build(crd: CrdSpec) -> dict[str, Any]:
    """The CustomResourceDefinition document for ``crd``."""
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if crd.subresources:
        version["subresources"] = dict(crd.subresources)
    version["additionalPrinterColumns"] = [c.wire() for c in crd.printer_columns]
    version["schema"] = {"openAPIV3Schema": openapi_schema(crd)}
    names: dict[str, Any] = {
        "kind": crd.kind,
        "listKind": f"{crd.kind}List",
        "plural": crd.plural,
        "singular": crd.singular,
    }
    if crd.short_names:
        names["shortNames"] = list(crd.short_names)
    if crd.categories:
        names["categories"] = list(crd.categories)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{crd.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def render(document: Mapping[str, Any]) -> str:
    """``document`` as the YAML text of a generated file, header included."""
    return HEADER + yaml.safe_dump(
        dict(document), sort_keys=False, default_flow_style=False, width=100, allow_unicode=True
    )


def generated() -> dict[str, str]:
    """File name (in ``crds/``) -> the text the models produce now."""
    return {crd.filename: render(build(crd)) for crd in CRDS}


def stale(directory: Path = CRD_DIR) -> list[str]:
    """The file names in ``directory`` whose text differs from ``generated()`` (or are missing)."""
    out = []
    for name, text in generated().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def write(directory: Path = CRD_DIR) -> list[Path]:
    """Write every CRD into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generated().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rollout.api.crdgen",
        description="Generate the CRDs in crds/ from the pydantic models in rollout/api.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a CRD file is out of date with the models",
    )
    parser.add_argument("--dir", type=Path, default=CRD_DIR, help="the CRD directory (crds/)")
    args = parser.parse_args(argv)
    directory: Path = args.dir
    if args.check:
        outdated = stale(directory)
        for name in outdated:
            print(
                f"{_shown(directory / name)} is out of date with the models: "
                "run python -m rollout.api.crdgen",
                file=sys.stderr,
            )
        return 1 if outdated else 0
    for path in write(directory):
        print(f"wrote {_shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
