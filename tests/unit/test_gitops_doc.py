"""docs/gitops.md: every ```yaml block parses, and the Lua embedded in the argo-cd chart values
is exactly the Lua in argocd/resource_customizations (which test_argocd_lua.py tests)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "gitops.md"
ROLLOUT = ROOT / "argocd" / "resource_customizations" / "rollout.dev" / "Rollout"
HEALTH_KEY = "resource.customizations.health.rollout.dev_Rollout"
ACTIONS_KEY = "resource.customizations.actions.rollout.dev_Rollout"


def _yaml_blocks() -> list[Any]:
    blocks = re.findall(r"^```yaml\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)
    return [yaml.safe_load(block) for block in blocks]


def test_every_yaml_block_parses() -> None:
    blocks = _yaml_blocks()
    assert len(blocks) >= 3
    assert all(isinstance(block, dict) for block in blocks)


def _argocd_cm() -> dict[str, Any]:
    (cm,) = [b["configs"]["cm"] for b in _yaml_blocks() if "configs" in b]
    return cm  # type: ignore[no-any-return]


def test_embedded_health_is_the_tested_lua() -> None:
    assert _argocd_cm()[HEALTH_KEY] == (ROLLOUT / "health.lua").read_text()


def test_embedded_actions_are_the_tested_lua() -> None:
    actions = yaml.safe_load(_argocd_cm()[ACTIONS_KEY])
    assert actions["discovery.lua"] == (ROLLOUT / "actions" / "discovery.lua").read_text()
    names = sorted(p.parent.name for p in (ROLLOUT / "actions").glob("*/action.lua"))
    assert sorted(d["name"] for d in actions["definitions"]) == names
    for definition in actions["definitions"]:
        script = ROLLOUT / "actions" / definition["name"] / "action.lua"
        assert definition["action.lua"] == script.read_text(), definition["name"]


def test_workload_application_respects_ignored_differences() -> None:
    apps = [
        b
        for b in _yaml_blocks()
        if b.get("kind") == "Application" and "ignoreDifferences" in b["spec"]
    ]
    (app,) = apps
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    kinds = {d["kind"] for d in app["spec"]["ignoreDifferences"]}
    assert kinds == {"VirtualService", "DestinationRule", "Service", "Rollout"}
    paths = " ".join(p for d in app["spec"]["ignoreDifferences"] for p in d["jqPathExpressions"])
    fields = ("weight", "mirror", "mirrorPercentage", "rollout.dev/pod-template-hash")
    for field in (*fields, "rollout.dev/restartedAt"):  # the restart action's annotation
        assert field in paths


def test_the_minimum_argocd_version_and_every_action_are_stated() -> None:
    """The page names the minimum Argo CD version, the releases whose array bug the actions
    avoid, and has a table row for every action script."""
    text = DOC.read_text()
    assert "**Argo CD 2.1 or later**" in text
    assert "3.0.13 and 3.1.1" in text
    names = sorted(p.parent.name for p in (ROLLOUT / "actions").glob("*/action.lua"))
    rows = re.findall(r"^  \| ([a-z-]+) \| `rollout ", text, re.MULTILINE)
    assert sorted(rows) == names
