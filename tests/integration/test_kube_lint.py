"""``rollout lint`` against a real kube-apiserver: lint refuses every manifest the server refuses.

The corpus is ``tests/unit/test_lint.py``'s: the examples (clean), each single mistake of
``MISTAKES``, the unusable names, the foreign headers, a few combined mistakes, and each document
of ``docs/examples/broken-rollout.yaml``. Each manifest is applied with ``kubectl apply
--dry-run=server`` (kubectl's default strict field validation: as a user applies it) into a test
namespace, and linted by the ``rollout lint`` command; the verdicts are compared.

A manifest the server refuses and lint accepts is a lint bug. Lint may be stricter than the
server (it checks what the controller needs beyond the schema): every such manifest is listed in
``LINT_STRICTER`` with the reason, so that the list is the documentation of the difference.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROLLOUT
from tests.integration.kube_helpers import ROOT, Kubectl
from tests.unit.test_lint import (
    CANARY_STEPS,
    FOREIGN_HEADERS,
    MISTAKES,
    REF,
    SERVER_ACCEPTS,
    UNUSABLE_NAMES,
    canary_docs,
    mutate,
)

pytestmark = [pytest.mark.integration, pytest.mark.kube_only]

EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))
BROKEN = ROOT / "docs" / "examples" / "broken-rollout.yaml"


def _unnamespaced(doc: Any) -> Any:
    """``doc`` without ``metadata.namespace``: kubectl applies it into the test namespace."""
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        doc = {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "namespace"}}
    return doc


def _canary(changes: dict[str, Any]) -> str:
    rollout, template = canary_docs()
    return yaml.safe_dump_all([_unnamespaced(mutate(rollout, changes)), _unnamespaced(template)])


def corpus() -> Iterator[tuple[str, str]]:
    """(id, YAML text) of every manifest of the lint tests."""
    for path in EXAMPLES:
        docs = [_unnamespaced(d) for d in yaml.safe_load_all(path.read_text()) if d]
        yield f"example-{path.stem}", yaml.safe_dump_all(docs)
    yield "unchanged", _canary({})
    for param in MISTAKES:
        changes, _ = param.values
        assert isinstance(changes, dict)
        yield f"mistake-{param.id}", _canary(changes)
    for name in UNUSABLE_NAMES:
        yield f"name-{len(name)}-{name[:8]}", _canary({"metadata.name": name})
    for param in SERVER_ACCEPTS:
        (changes,) = param.values
        assert isinstance(changes, dict)
        if param.id != "annotations-256KiB":  # kubectl apply adds last-applied: over the limit
            yield f"accepted-{param.id}", _canary(changes)
    yield "name-63", _canary({"metadata.name": "r" * 63})
    yield "replicas-negative", _canary({"spec.replicas": -1})
    yield "no-template-args", _canary({f"{REF}.args": {}})
    yield (
        "three-mistakes",
        _canary({"spec.stratgey": {}, f"{CANARY_STEPS}[0].setWeight": 120, f"{REF}.args": {}}),
    )
    for i, (header, _) in enumerate(FOREIGN_HEADERS):
        yield f"header-{i}", header + "metadata: {name: x}\nspec: {}\n"
    for i, doc in enumerate(d for d in yaml.safe_load_all(BROKEN.read_text()) if d):
        yield f"broken-{i + 1}-{doc['metadata']['name']}", yaml.safe_dump(_unnamespaced(doc))


CORPUS = dict(corpus())

# Manifests lint refuses and the apiserver accepts, and why (the controller needs more than the
# schema can say, or the problem spans documents).
LINT_STRICTER = {
    # The server cannot see the AnalysisTemplate from the Rollout: a templateRef without an arg
    # the template requires (and has no default for) would be an InvalidSpec at run time.
    "no-template-args": "templateRef.args: missing arg 'service'",
}


@pytest.fixture(scope="module")
def kubectl(sandbox_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(sandbox_kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


def lint_verdict(path: Path) -> tuple[bool, str]:
    """(accepted, output) of ``rollout lint PATH``; exit 2 (unreadable input) fails the test."""
    result = subprocess.run(
        [ROLLOUT, "lint", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode == 0, result.stdout


def server_verdict(kubectl: Kubectl, namespace: str, path: Path) -> tuple[bool, str]:
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path))
    return result.returncode == 0, result.stderr.strip()


def test_lint_refuses_every_manifest_the_apiserver_refuses(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    server_only: list[str] = []
    lint_only: dict[str, str] = {}
    refused_by_both = 0
    for case, text in CORPUS.items():
        path = tmp_path / f"{case}.yaml"
        path.write_text(text)
        linted, lint_out = lint_verdict(path)
        served, server_out = server_verdict(kubectl, namespace, path)
        if not served and linted:
            server_only.append(f"{case}: {server_out}")
        elif served and not linted:
            lint_only[case] = re.sub(r"^\S+: ", "", lint_out.strip())
        elif not served:
            refused_by_both += 1
    assert server_only == [], "LINT BUGS (the apiserver refuses, lint accepts):\n" + "\n".join(
        server_only
    )
    assert refused_by_both > 10  # the corpus is not vacuous
    assert set(lint_only) == set(LINT_STRICTER), lint_only
