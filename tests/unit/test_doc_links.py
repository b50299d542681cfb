"""Every relative link in README.md and docs/*.md resolves inside the repository.

A link ``[text](target)`` (or an image) whose target is not a URL must name an existing file or
directory, relative to the document as GitHub resolves it, without leaving the repository; a
``#fragment`` must be a heading of the target (GitHub's anchor rules). A path in backticks that
starts with one of the repository's top-level directories must exist too, so that "see
``rollout/domain/steps.py``" does not outlive a move. Every kubectl command that names our
Rollouts spells out ``rollouts.rollout.dev`` (or our short name), since Argo Rollouts' CRD is
kind ``Rollout`` too (docs/argo-coexistence.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_PATH = re.compile(r"`((?:\.\./)*[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]*)`")
_TOP = (
    "rollout/",
    "analysis/",
    "tests/",
    "docs/",
    "crds/",
    "charts/",
    "bench/",
    "scripts/",
    "hack/",
    "argocd/",
    "../",
)


def _prose(text: str) -> str:
    """The document without its fenced code blocks (their brackets are code, not links)."""
    return _FENCE.sub("", text)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in _prose(text).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            out.add(title.replace(" ", "-"))
    return out


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in _LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        where = (doc.parent / path_part) if path_part else doc
        if not _inside(where) or not where.exists():
            broken.append(f"{target}: no such file in the repository")
            continue
        if fragment and where.suffix == ".md" and fragment not in anchors(where.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {where.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_in_backticks_exist(doc: Path) -> None:
    missing = []
    for path in _CODE_PATH.findall(doc.read_text()):
        if not path.startswith(_TOP) or any(c in path for c in "*{<"):
            continue
        candidates = [ROOT / path, doc.parent / path]
        if not any(_inside(c) and c.exists() for c in candidates):
            missing.append(path)
    assert not missing, f"{doc.relative_to(ROOT)}: {missing}"


# argo-coexistence.md shows the ambiguous names on purpose, to explain them.
@pytest.mark.parametrize(
    "doc",
    [d for d in DOCS if d.name != "argo-coexistence.md"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_kubectl_names_our_rollouts_unambiguously(doc: Path) -> None:
    ambiguous = re.compile(
        r"kubectl\s+(?:-n\s+\S+\s+)?(?:get|describe|delete|patch|edit|explain|wait)\s+"
        r"(?:rollouts?|ro|analysistemplates?)(?=[\s/`]|$)",
        re.M,
    )
    found = [m.group(0) for m in ambiguous.finditer(doc.read_text())]
    assert not found, f"{doc.relative_to(ROOT)}: {found}"


def test_the_readme_links_the_quick_start() -> None:
    assert "(docs/quickstart.md)" in (ROOT / "README.md").read_text()
